"""``python -m benchmark {run,list,report}``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

from benchmark.config import ConfigError, parse_value


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value (e.g. run.max_steps=100), got {pair!r}")
        key, value = pair.split("=", 1)
        if key.split(".")[0] not in ("method", "dataset", "run"):
            raise ConfigError(f"--set key {key!r} must start with method., dataset. or run.")
        out[key] = parse_value(value)
    return out


def cmd_run(args) -> int:
    from benchmark.progress import StepProgress, suite_progress
    from benchmark.runner import execute
    from benchmark.store import RunStore
    from benchmark.suites import load_suite
    from methods.registry import load_all as load_methods

    suite = load_suite(args.suite, _overrides(args.set))
    store = RunStore(args.results)
    todo = [r for r in suite.runs if args.force or not store.is_finished(suite.name, r)]
    kinds = {name: spec.kind for name, spec in load_methods().items()}
    todo.sort(key=lambda r: kinds[r.method] != "baseline")  # cheap reference rows first
    steps = {r.run_id: (r.run.max_steps if kinds[r.method] == "dip" else 0) for r in todo}
    for method, dataset, reason in suite.skipped:
        print(f"skipped {method} on {dataset} (incompatible, nothing stored): {reason}")
    print(f"suite {suite.name}: {len(suite.runs)} runs, {len(suite.runs) - len(todo)} already finished, {len(todo)} to run "
          f"→ {store.root / suite.name}")
    if not todo:
        return 0
    store.write_suite_info(suite.name, {k: suite.raw.get(k) for k in ("name", "description", "experiment")})
    failed = []
    with suite_progress() as progress:
        bar = progress.add_task(suite.name, total=sum(steps.values()) or 1)
        for i, run in enumerate(todo, 1):
            progress.update(bar, description=f"{suite.name} [{i}/{len(todo)}] {run.method} on {run.dataset} seed {run.run.seed}")
            done_before = progress.tasks[bar].completed
            metrics = execute(run, suite.name, store, extra_callbacks=[StepProgress(progress, bar)])
            progress.update(bar, completed=done_before + steps[run.run_id])
            if metrics["status"] != "finished":
                failed.append((run, metrics))
                progress.console.print(f"[red]run {run.run_id} failed:[/red] {metrics['error']}")
            else:
                progress.console.print(_summary_line(run, metrics))
    if failed:
        print(f"{len(failed)} run(s) failed; their errors are in {store.root / suite.name}/<run_id>/metrics.json; "
              "rerun the same command to retry them.", file=sys.stderr)
        return 1
    return 0


def _summary_line(run, m: dict) -> str:
    from methods import keys

    if m["kind"] == "baseline":
        return f"{run.run_id}: {m[keys.FINAL_PSNR]:.2f} dB"
    stops = "".join(f", ES[{rule}] {m[keys.es(rule, 'psnr')]:.2f} dB @ {m[keys.es(rule, 'step')]}"
                    for rule in keys.es_rules(m) if m.get(keys.es(rule, "step")) is not None)
    return (f"{run.run_id} (seed {run.run.seed}): peak {m[keys.PEAK_PSNR]:.2f} dB @ {m[keys.PEAK_STEP]}{stops}, "
            f"final {m[keys.FINAL_PSNR]:.2f} dB (degraded {m[keys.DEGRADED_PSNR]:.2f} dB, {m['wall_time_s']:.0f} s)")


def _quiet_lightning() -> None:
    import logging

    import lightning.pytorch  # noqa: F401  (it sets its loggers' levels on import; override after)

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")
    warnings.filterwarnings("ignore", message=".*IterableDataset.*")


def cmd_list(args) -> int:
    from benchmark.suites import available_suites, load_suite
    from datamodules.registry import BROKEN as BROKEN_DATASETS
    from datamodules.registry import load_all as load_datasets
    from methods.registry import BROKEN as BROKEN_METHODS
    from methods.registry import load_all as load_methods
    from methods.stopping import STOPPING_RULES

    def fields(cls):
        return {f.name: _plain(f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(cls)}

    methods, datasets = load_methods(), load_datasets()
    listing = {
        "methods": {n: {"kind": s.kind, "description": s.description, "paper": s.paper, "source": s.source_file,
                        "requires": sorted(s.requirements(s.config())), "config": fields(s.config)}
                    for n, s in sorted(methods.items())},
        "datasets": {n: {"description": s.description, "source": s.module,
                         "capabilities": sorted(s.capabilities_for(s.config())) if not callable(s.capabilities) else "per config",
                         "config": fields(s.config)} for n, s in sorted(datasets.items())},
        "stopping_rules": {n: {"description": s.description, "paper": s.paper, "config": fields(s.config)}
                           for n, s in sorted(STOPPING_RULES.items())},
        "suites": {},
        "broken": {name: {"error": error} for name, error in {**BROKEN_METHODS, **BROKEN_DATASETS}.items()},
    }
    for name, path in available_suites().items():
        try:
            suite = load_suite(name)
            listing["suites"][name] = {"description": suite.description, "runs": len(suite.runs), "path": str(path)}
        except Exception as exc:  # a broken suite file is listed with its error
            listing["suites"][name] = {"error": str(exc), "path": str(path)}
    if args.json:
        print(json.dumps(listing, indent=2, default=str))
    else:
        for section in ("methods", "datasets", "stopping_rules", "suites", "broken"):
            if not listing[section]:
                continue
            print(f"{section}:" if section != "broken"
                  else "broken plugin files (not loaded; fix them to use their methods/datasets):")
            for name, info in listing[section].items():
                print(f"  {name:24s} "
                      f"{info.get('description', info.get('error', '').splitlines()[0] if info.get('error') else '')}")
    return 0


def _plain(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def cmd_report(args) -> int:
    from reports.build import build_reports

    written = build_reports(Path(args.results), Path(args.out), suites=args.suite or None)
    for path in written:
        print(path)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description="dipbench: Deep Image Prior benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a suite (skips finished runs)")
    p_run.add_argument("suite", help="suite name (see `list`) or path to a suite .yaml")
    p_run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. run.max_steps=100")
    p_run.add_argument("--results", default="results", help="run store folder (default: results/)")
    p_run.add_argument("--force", action="store_true", help="rerun finished runs too")
    p_list = sub.add_parser("list", help="registered methods, datasets and suites")
    p_list.add_argument("--json", action="store_true")
    p_rep = sub.add_parser("report", help="tables and figures from stored runs (no recomputation)")
    p_rep.add_argument("--results", default="results")
    p_rep.add_argument("--out", default="reports/out")
    p_rep.add_argument("--suite", action="append", help="only these suites")
    args = parser.parse_args(argv)
    _quiet_lightning()
    try:
        return {"run": cmd_run, "list": cmd_list, "report": cmd_report}[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
