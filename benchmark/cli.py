"""``python -m benchmark {run,status,list,report,reconstruct}``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

from benchmark import plugins
from benchmark.calibration import PROTOCOLS, RULES, trial_table, tune_suite, write_calibrated_preset
from benchmark.config import ConfigError, check_devices_here, parse_overrides
from benchmark.executors import Context, Job, make_executor, plan_runs, redo_states
from benchmark.interrupts import Interrupted, handle_interrupts
from benchmark.locks import live_holder
from benchmark.plan import print_plan
from benchmark.plugins import hint
from benchmark.progress import GridReporter
from benchmark.quiet import quiet_lightning
from benchmark.reconstruct import reconstruct
from benchmark.status import as_json, render, suite_status
from benchmark.store import RunStore, StoreError
from benchmark.suites import available_suites, check_suite_name, load_suite
from core import keys
from core.registry import REGISTRIES
from core.results import MethodKind, Outcome, RunState
from datamodules.registry import DATASETS
from methods.registry import METHODS
from scoring.stopping import STOPPING_RULES


def cmd_run(args) -> int:
    return run_suite(load_suite(args.suite, parse_overrides(args.set)), args)


def run_suite(suite, args) -> int:
    """Run a loaded suite's missing runs with ``args.executor`` into ``args.results`` (the
    path shared by ``run`` and ``tune``); returns the exit code."""
    if getattr(args, "dry_run", False):
        return print_plan(suite, RunStore(args.results), getattr(args, "data_check", True))
    if args.executor == "local":
        check_devices_here(suite.runs)
    not_before = time.time()
    executor = make_executor(args.executor, _executor_options(args, suite.raw.get("resources")))  # checked first
    store = RunStore(args.results)
    store.check_writable(suite.name)
    for path in store.clean_temporaries(suite.name):
        print(f"removed leftover temporary folder {path}")
    steps = {r.run_id: METHODS[r.method].cls.iterations(r.method_cfg, r.run.max_steps) for r in suite.runs}
    plan = plan_runs(suite.runs, suite.name, store, args.force, args.retry_failed, not_before)
    todo = sorted(plan.todo, key=lambda r: METHODS[r.method].kind != MethodKind.BASELINE)  # cheap reference rows first
    for method, dataset, reason in suite.skipped:
        print(f"skipped {method} on {dataset} (incompatible, nothing stored): {reason}")
    for _, state in plan.damaged:
        print(f"damaged run {state.path.name}: {state.problem}; not counted as finished, it will be rerun", file=sys.stderr)
    for run, holder in plan.held:
        print(f"{run.run_id} is being run by {holder.describe()}: waited for (taken over if its holder stops)")
    parts = [f"{len(plan.finished)} already finished"]
    if plan.failed:
        parts.append(f"{len(plan.failed)} failed before (left alone; --retry-failed reruns them)")
    if plan.held:
        parts.append(f"{len(plan.held)} running elsewhere")
    print(f"suite {suite.name}: {len(suite.runs)} runs, {', '.join(parts)}, {len(todo)} to run "
          f"→ {store.root / suite.name}" + (f" (executor {args.executor})" if todo else ""))
    store.write_suite_info(suite.name, {**{k: suite.raw.get(k) for k in ("name", "description", "experiment", "tune")},
                                        "runs": steps, "oracle_runs": getattr(suite, "oracle", [])})
    failed = [run.run_id for run, _ in plan.failed]
    files = tuple(p.target for p in plugins.PLUGINS.values() if p.kind == "file" and p.ok)
    waiting = [run for run, _ in plan.held]  # planned as held by another invocation: waited for or taken over
    said_waiting = False
    while todo or waiting:
        if todo:
            jobs = [Job(run, steps[run.run_id]) for run in todo]
            reporter = GridReporter(suite.name, jobs, store.suite_dir(suite.name), _outcome_line,
                                    parallel=args.executor != "local")
            ctx = Context(suite.name, str(store.root.resolve()), redo_states(args.force, args.retry_failed), not_before,
                          reporter, files, batch=suite.raw.get("batch") or None)
            try:
                with handle_interrupts(), reporter:
                    outcomes = executor.execute(jobs, ctx)
            except Interrupted as exc:
                left = [job.run_id for job in jobs if not store.inspect(suite.name, job.run_id).state.stored]
                stored = len(jobs) - len(left)
                left += [run.run_id for run in waiting if not store.inspect(suite.name, run.run_id).state.stored]
                print(f"interrupted by {exc.name}: {stored} of {len(jobs)} runs stored; a run going on was "
                      f"abandoned and left nothing behind; not done: {len(left)} ({', '.join(left)}). "
                      "Run the same command to resume.", file=sys.stderr)
                return exc.exit_code
            failed += [o.run_id for o in outcomes if o.status == RunState.FAILED]
            others = [o for o in outcomes if o.status == RunState.SKIPPED]
            if others:
                print(f"{len(others)} run(s) were taken over or stored by another invocation meanwhile "
                      "(`python -m benchmark status` shows them)")
                by_id = {run.run_id: run for run in todo}
                waiting += [by_id[o.run_id] for o in others if o.run_id in by_id]
        todo = []
        try:
            with handle_interrupts():
                while waiting and not todo:  # every planned run ends stored, here or by its holder
                    states = {run.run_id: store.inspect(suite.name, run.run_id).state for run in waiting}
                    failed += [run.run_id for run in waiting if states[run.run_id] == RunState.FAILED]
                    waiting = [run for run in waiting if not states[run.run_id].stored]
                    todo = [run for run in waiting if live_holder(store.suite_dir(suite.name), run.run_id) is None]
                    waiting = [run for run in waiting if run not in todo]
                    if todo:
                        print(f"taking over {len(todo)} run(s) whose holder stopped without storing them")
                    elif waiting:
                        if not said_waiting:
                            print(f"waiting for {len(waiting)} run(s) held by other invocations (they store them, or "
                                  "their claims expire and this one takes them over)")
                            said_waiting = True
                        time.sleep(WAIT_POLL_S)
        except Interrupted as exc:
            left = [run.run_id for run in waiting if not store.inspect(suite.name, run.run_id).state.stored]
            print(f"interrupted by {exc.name} while waiting for runs held by other invocations; not done here: "
                  f"{len(left)} ({', '.join(left)}). Run the same command to resume.", file=sys.stderr)
            return exc.exit_code
    if failed:
        print(f"{len(failed)} run(s) of suite {suite.name} failed; their errors are in "
              f"{store.root / suite.name}/<run_id>/metrics.json (`python -m benchmark status {suite.name}` lists them); "
              "plain reruns leave them alone, `--retry-failed` reruns them.", file=sys.stderr)
        return 1
    return 0


WAIT_POLL_S = 1.0  # how often a run waiting for other invocations' runs looks at them

EXECUTOR_OPTIONS = ("address", "gpus_per_run", "cpus_per_run", "max_retries", "mem_gb", "time_min", "array_parallelism",
                    "partition", "cluster", "detach")


def _executor_options(args, resources) -> dict:
    """Executor options: the suite's ``resources:`` mapping, overridden by the command line."""
    resources = resources or {}
    if not isinstance(resources, dict) or set(resources) - set(EXECUTOR_OPTIONS):
        raise ConfigError(f"suite key resources must be a mapping of {', '.join(EXECUTOR_OPTIONS)}; got {resources!r}")
    cli = {k: getattr(args, k, None) for k in EXECUTOR_OPTIONS}
    given = {k: v for k, v in cli.items() if v is not None and v is not False}  # 0 is a value (0 == False)
    options = {**resources, **given}
    for key, (minimum, kind) in _OPTION_MINIMA.items():
        value = options.get(key)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and value >= minimum and (kind is float or float(value).is_integer())
        if not ok:
            where = f"--{key.replace('_', '-')}" if key in given else f"suite resources: {key}"
            raise ConfigError(f"{where} {value!r}: must be {'a number' if kind is float else 'an integer'} >= {minimum}")
    return options


# least value of the numeric executor options (cpus: a run needs one)
_OPTION_MINIMA = {"gpus_per_run": (0, float), "cpus_per_run": (1, int), "max_retries": (0, int), "mem_gb": (1, int),
                  "time_min": (1, int), "array_parallelism": (1, int)}


def _outcome_line(job, outcome: Outcome) -> str:
    from rich.markup import escape

    if outcome.status == RunState.SKIPPED:
        return f"run {job.run_id} skipped: {escape(outcome.reason)}"
    if outcome.status != RunState.FINISHED:
        failure = (outcome.metrics or {}).get("failure") or {}
        where = f" at iteration {failure['step']}" if failure.get("step") is not None else ""
        return f"[red]run {job.run_id} failed{where}:[/red] {escape(str(outcome.message))}"
    try:
        return escape(_summary_line(job.run, outcome.metrics))
    except (KeyError, TypeError, ValueError):
        return f"{job.run_id}: finished"


def _time_spent(m: dict) -> str:
    """A run's wall time; a batched member's own time is only its storing, so the batch's (§19)."""
    batch = m.get("batch") or {}
    if batch.get("mode") == "vmap" and "wall_time_s" in batch:
        return f"{batch['wall_time_s']:.0f} s for the batch of {batch['size']}"
    return f"{m['wall_time_s']:.0f} s"


def _summary_line(run, m: dict) -> str:
    if not m.get(keys.HAS_GT, True):  # no ground truth: no PSNR (docs/conventions.md §11)
        stops = "".join(f", ES[{rule}] @ {m[keys.es(rule, 'step')]}" for rule in keys.es_rules(m)
                        if m.get(keys.es(rule, "step")) is not None)
        residual = m.get(keys.FINAL_RESIDUAL)
        return (f"{run.run_id} (seed {run.run.seed}, no ground truth){stops}, final ‖Ax−y‖ "
                f"{'–' if residual is None else f'{residual:.4g}'} ({_time_spent(m)})")
    if m["kind"] == MethodKind.BASELINE:
        warning = f" (warning: {m['tv_warning']})" if m.get("tv_warning") else ""
        return f"{run.run_id}: {m[keys.FINAL_PSNR]:.2f} dB{warning}"
    stops = "".join(f", ES[{rule}] {m[keys.es(rule, 'psnr')]:.2f} dB @ {m[keys.es(rule, 'step')]}"
                    for rule in keys.es_rules(m) if m.get(keys.es(rule, "step")) is not None)
    return (f"{run.run_id} (seed {run.run.seed}): peak {m[keys.PEAK_PSNR]:.2f} dB @ {m[keys.PEAK_STEP]}{stops}, "
            f"final {m[keys.FINAL_PSNR]:.2f} dB (degraded {m[keys.DEGRADED_PSNR]:.2f} dB, {_time_spent(m)})")


def cmd_tune(args) -> int:
    """Tune a method's declared settings for a task family and write its preset."""
    suite = tune_suite(args.method, args.family, args.points, parse_overrides(args.set), args.tunables)
    code = run_suite(suite, args)
    store = RunStore(args.results)
    table = trial_table(store, suite)
    if (table["status"] == RunState.MISSING).any():
        print(f"{int((table['status'] == RunState.MISSING).sum())} trial(s) not stored; no preset written "
              "(run the same command to resume)", file=sys.stderr)
        return code or 1
    root = Path(args.presets_dir) if args.presets_dir else None
    path = write_calibrated_preset(suite, table, args.rule, root)
    print(f"preset written: {path} (trials: {path.with_suffix('.table.csv')})")
    print(path.read_text())
    return 0


def cmd_list(args) -> int:
    def fields(cls):
        return {f.name: _plain(f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(cls)}

    methods, datasets = METHODS, DATASETS
    listing = {
        "methods": {n: {"kind": s.kind, "description": s.description, "paper": s.paper, "origin": s.origin,
                        "source": s.source_file,
                        "requires": sorted(s.requirements(s.config())), "config": fields(s.config)}
                    for n, s in sorted(methods.items())},
        "datasets": {n: {"description": s.description, "origin": s.origin, "source": s.module,
                         "capabilities": sorted(s.capabilities_for(s.config())),  # of the default config
                         "capabilities_vary_with_config": callable(s.capabilities),
                         "config": fields(s.config)} for n, s in sorted(datasets.items())},
        "stopping_rules": {n: {"description": s.description, "paper": s.paper, "config": fields(s.config)}
                           for n, s in sorted(STOPPING_RULES.items())},
        "suites": {},
        "plugins": {o: {"kind": p.kind, "methods": p.methods, "datasets": p.datasets, "stopping_rules": p.stopping_rules,
                        **({"error": p.error} if p.error else {})} for o, p in plugins.PLUGINS.items()},
        "broken": {name: {"error": error} for name, error in {**METHODS.broken, **DATASETS.broken, **plugins.broken()}.items()},
        # every other plugin kind of the one registry (core/registry.py): networks, denoisers, samplers, loaders
        "components": {kind: {n: {"description": e.description, "origin": e.origin} for n, e in sorted(reg.items())}
                       for kind, reg in REGISTRIES.items() if reg not in (METHODS, DATASETS, STOPPING_RULES)},
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
        for kind, entries in listing["components"].items():
            print(f"{kind}s: {', '.join(entries) or '(none registered)'}")
        for section in ("methods", "datasets", "stopping_rules", "suites", "broken"):
            if not listing[section]:
                continue
            print(f"{section}:" if section != "broken"
                  else "broken plugin files (not loaded; fix them to use their methods/datasets):")
            for name, info in listing[section].items():
                origin = f"  [{info['origin']}]" if info.get("origin") else ""
                print(f"  {name:24s} "
                      f"{info.get('description', info.get('error', '').splitlines()[0] if info.get('error') else '')}{origin}")
    return 0


def _plain(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def cmd_report(args) -> int:
    from reports.build import build_reports
    from reports.snapshot import write_snapshot

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"report --out {out}: cannot write there ({exc.strerror or exc}); choose a writable folder")
    written = build_reports(Path(args.results), out, suites=args.suite or None)
    if args.snapshot:
        from benchmark.store import RunStore
        from reports.claims import NOT_EVIDENCE
        from reports.collect import suite_experiments

        store = RunStore(Path(args.results))
        leave_out = {suite for suite in store.suites()  # the CI regression and calibration suites
                     if set(suite_experiments(store, suite)) & NOT_EVIDENCE}
        written += write_snapshot(Path(args.out), Path(args.snapshot), args.suite or None, leave_out)
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
    p_run.add_argument("--force", action="store_true", help="rerun finished (and failed) runs too")
    p_run.add_argument("--retry-failed", action="store_true", help="rerun failed runs (plain reruns leave them alone)")
    p_run.add_argument("--dry-run", action="store_true",
                       help="print the plan (runs, skips and why, data found or missing, estimated time); store nothing")
    p_run.add_argument("--no-data-check", dest="data_check", action="store_false",
                       help="--dry-run: do not build the tasks to check their data")
    p_run.add_argument("--executor", choices=["local", "ray", "slurm"], default="local",
                       help="local: one after another in this process (default); ray: one run per GPU on this box or a "
                            "Ray cluster; slurm: a submitit job array")
    p_run.add_argument("--gpus-per-run", type=float, help="ray/slurm: GPUs per run (ray: fractions allowed; "
                                                          "default 1 if the Ray cluster has GPUs, else 0)")
    p_run.add_argument("--cpus-per-run", type=int, help="ray/slurm: CPUs per run (default 1)")
    p_run.add_argument("--address", help="ray: address of an existing Ray cluster (default: start Ray on this box)")
    p_run.add_argument("--max-retries", type=int, help="ray: retries of a run whose worker process died (default 1)")
    p_run.add_argument("--mem-gb", type=int, help="slurm: memory per run")
    p_run.add_argument("--time-min", type=int, help="slurm: time limit per run in minutes (default 1440)")
    p_run.add_argument("--array-parallelism", type=int, help="slurm: at most this many runs at once")
    p_run.add_argument("--partition", help="slurm: partition")
    p_run.add_argument("--slurm-cluster", dest="cluster", choices=["slurm", "local"],
                       help="slurm: 'local' runs the array as local processes (testing); default: slurm when sbatch exists")
    p_run.add_argument("--detach", action="store_true", help="slurm: exit after submitting (see `status`)")
    p_tune = sub.add_parser("tune", help="calibrate a method's tunable settings for a task family (writes its preset)",
                            description="Grid search over the method's declared tunables on the family's calibration "
                                        "measurements (benchmark/calibration.py); every trial is a stored run (resumable); "
                                        "writes methods/presets/<family>/<method>.yaml and its trial table.")
    p_tune.add_argument("method", help="method name (see `list`)")
    p_tune.add_argument("--family", required=True, choices=sorted(PROTOCOLS), help="task family")
    p_tune.add_argument("--rule", choices=sorted(RULES), default="peak",
                        help="peak: best mean oracle peak PSNR (the surveys); es: best mean early-stopped PSNR")
    p_tune.add_argument("--points", type=int, help="grid points per tunable (default: the protocol's)")
    p_tune.add_argument("--tunables", nargs="+", metavar="KEY", help="tune only these (default: every declared tunable)")
    p_tune.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a trial setting, e.g. run.max_steps=500")
    p_tune.add_argument("--presets-dir", help="write the preset here instead of methods/presets/ (tests)")
    for option in ("--results", "--executor", "--force", "--retry-failed", "--cpus-per-run", "--gpus-per-run", "--address",
                   "--max-retries"):
        action = next(a for a in p_run._actions if option in a.option_strings)
        p_tune._add_action(action)
    p_status = sub.add_parser("status", help="finished / failed / running / pending runs, time spent and left")
    p_status.add_argument("suite", nargs="?", help="suite name (default: every suite in the results folder)")
    p_status.add_argument("--results", default="results", help="run store folder (default: results/)")
    p_status.add_argument("--json", action="store_true")
    p_list = sub.add_parser("list", help="registered methods, datasets and suites")
    p_list.add_argument("--json", action="store_true")
    p_rep = sub.add_parser("report", help="tables and figures from stored runs (no recomputation)")
    p_rep.add_argument("--results", default="results")
    p_rep.add_argument("--out", default="reports/out")
    p_rep.add_argument("--suite", action="append", help="only these suites")
    p_rep.add_argument("--snapshot", metavar="DIR",
                       help="also copy each suite's table (and the sensitivity page) into DIR, e.g. docs/results: the "
                            "committed results the README points to")
    p_rec = sub.add_parser("reconstruct", help="run one method on one measurement and write the stopped image",
                           description="Run one method on one dataset (e.g. your own measurement) and write the image "
                                       "picked by the first stopping rule as OUT(.png/.npy) and the final iterate as "
                                       "OUT_final(.png/.npy); the run is stored under RESULTS/reconstruct/.")
    p_rec.add_argument("--method", required=True, help="method name (see `list`)")
    p_rec.add_argument("--dataset", required=True, help="dataset name (see `list`), e.g. measurement")
    p_rec.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. dataset.file=sino.npy")
    p_rec.add_argument("--out", required=True, help="output image, e.g. recon.png (also recon.npy, recon_final.*)")
    p_rec.add_argument("--results", default="results", help="run store folder (default: results/)")
    p_rec.add_argument("--force", action="store_true", help="recompute even if the same run is stored")
    for p in sub.choices.values():
        p.add_argument("--plugins", action="append", metavar="FILE.py", default=[],
                       help="import this file first: it may register methods/datasets (repeatable)")
    args = parser.parse_args(argv)
    quiet_lightning()
    commands = {"run": cmd_run, "tune": cmd_tune, "list": cmd_list, "report": cmd_report, "reconstruct": cmd_reconstruct,
                "status": cmd_status}
    try:
        _load_plugins(args)
        with handle_interrupts():
            return commands[args.command](args)
    except Interrupted as exc:  # `run` and `tune` say which runs were left; every command exits 128 + signal
        print(f"interrupted by {exc.name}: `{args.command}` stopped; nothing half-written was kept (a run going on "
              "was abandoned, stored runs are untouched). Run the same command to resume.", file=sys.stderr)
        return exc.exit_code
    except ConfigError as exc:
        print(f"error: {exc}{hint() if 'unknown' in str(exc) else ''}", file=sys.stderr)
        return 2


def _load_plugins(args) -> None:
    """``--plugins`` files, and for commands that run something, the installed plugins:
    a name registered twice is an error there, a plugin that fails to import a warning
    (``list`` shows both with the broken files; ``report`` and ``status`` only read the store)."""
    plugins.load_all(args.plugins)
    if args.command in ("run", "reconstruct", "tune"):
        plugins.check_conflicts()
        plugins.warn_broken()


def cmd_status(args) -> int:
    store = RunStore(args.results)
    if store.root.exists() and not store.root.is_dir():
        raise StoreError(f"results path {store.root} is a file, not a folder; pass a folder with --results DIR")
    name = Path(args.suite).stem if args.suite and args.suite.endswith((".yaml", ".yml")) else args.suite
    if name:
        check_suite_name(name)
    suites = [name] if name else store.suites()
    if not suites:
        print(f"no suites under {store.root}/ yet — start one with `python -m benchmark run SUITE`")
        return 0
    statuses = [suite_status(store, s) for s in suites]
    print(json.dumps(as_json(statuses), indent=2) if args.json else render(statuses))
    return 0


def cmd_reconstruct(args) -> int:
    return reconstruct(args.method, args.dataset, parse_overrides(args.set), args.out, args.results, args.force)
