"""The CI regression on small crops: ``ci_small`` runs every registered method (at its
registered smoke size, on a tiny network) on one small instance of every task family —
natural-image denoising, inpainting, a Gaussian deblur, CT (a real head CT,
simulated fan beam), multi-coil MRI, a 1-D signal, and a user's degraded-image file written here — for 100
iterations at one learning rate (0.01), deterministically, through the normal executor path.
Its results are compared with the committed golden file (``tests/golden/ci_small.json``):
per run the peak PSNR and its iteration, the running-variance pick's PSNR and iteration, the
final PSNR and the final data residual, within the tolerances of :data:`TOLERANCES` (not
bitwise: CPUs differ). A changed default, a lost preset, a dropped penalty term or a
rescaled operator moves them; ``make golden`` rewrites the file on purpose (explain the
change in the commit message).

    python -m benchmark.golden check [--results DIR]   # run ci_small, compare, exit 1 on drift
    python -m benchmark.golden write [--results DIR]   # run ci_small, rewrite the golden file
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from benchmark import plugins
from benchmark.cli import run_suite
from benchmark.quiet import quiet_lightning
from benchmark.store import RunStore, inspect_folder
from benchmark.suites import Suite, expand
from core import keys
from core.results import MethodKind, RunState
from methods.registry import METHODS

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "ci_small.json"
SUITE = "ci_small"
TINY_NET = {"scales": 2, "channels": 8, "skip_channels": [0, 4]}
STEPS = 100
ES = "running_variance"
# what is compared, and by how much it may differ (absolute): dB, iterations, relative residual
TOLERANCES = {keys.PEAK_PSNR: 0.1, keys.PEAK_STEP: 2, keys.es(ES, "psnr"): 0.1, keys.es(ES, "step"): 2,
              keys.FINAL_PSNR: 0.1, keys.FINAL_RESIDUAL: 0.01}
RELATIVE = {keys.FINAL_RESIDUAL}
# an iteration may move further on a flat curve (two iterates within rounding): it counts as a drift when its PSNR
# moved too, or when it moved by more than a quarter of the run
STEP_OF = {keys.PEAK_STEP: keys.PEAK_PSNR, keys.es(ES, "step"): keys.es(ES, "psnr")}
DATASETS = [
    {"name": "denoising", "crop": 16, "sigma": 50},
    {"name": "inpainting", "crop": 16},
    {"name": "deblur_gaussian", "crop": 16, "kernel_size": 5},
    {"name": "ct_calibration", "image_size": 32, "n_angles": 8, "noise": 0.05},
    {"name": "fastmri_knee", "crop": 32, "coils": 4},
    {"name": "signal_1d", "length": 32},  # 1-D: runs the 1-D methods (ntk_filter) and baselines; 2-D nets are skipped
]


def method_entry(name: str) -> dict:
    spec = METHODS[name]
    entry = {"name": name, **spec.smoke_config}
    if "net" in {f.name for f in dataclasses.fields(spec.config)}:
        entry.setdefault("net", TINY_NET)
    return entry


def user_file(folder: Path) -> dict:
    """A user's degraded image with its forward model, as ``measurement_image`` reads it:
    a deterministic noisy 16² grey ramp-and-disk image and its ground truth (NPY)."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    gt = (0.2 + 0.5 * xx + 0.3 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.1)).astype(np.float32)[None]
    noisy = gt + np.random.default_rng(0).normal(0, 0.1, gt.shape).astype(np.float32)
    np.save(folder / "noisy.npy", noisy)
    np.save(folder / "gt.npy", gt)
    return {"name": "measurement_image", "file": str(folder / "noisy.npy"), "gt": str(folder / "gt.npy"),
            "forward": "denoising", "sigma": 25.5}


def ci_small(results: Path) -> Suite:
    """Every built-in and plugin method × the tiny tasks (pairs that cannot run are skipped
    with their reasons)."""
    raw = {"name": SUITE, "experiment": "regression",
           "description": "CI regression: every method at its smoke size on one small task of every family",
           "methods": [method_entry(name) for name, spec in sorted(METHODS.items()) if spec.origin.startswith("built-in")],
           "datasets": [*DATASETS, user_file(Path(results) / ".ci_small_data")], "seeds": [0],
           "set": {"method.lr": 0.01, "run.max_steps": STEPS, "run.trace_every": 1, "run.ssim_every": 10,
                   "run.save_images": False, "run.stopping": {ES: {"window": 5, "patience": 10}}}}
    skipped: list = []
    runs = expand(raw, {}, SUITE, skipped)
    return Suite(SUITE, raw["description"], runs, raw, skipped)


def label(run) -> str:
    return f"{run.method} @ {run.dataset}" + (f" ({run.dataset_cfg.forward})" if run.dataset == "measurement_image" else "")


def run_and_collect(results: Path, executor: str = "local") -> dict[str, dict]:
    """Run ci_small (finished runs are reused) and return the compared metrics per run."""
    quiet_lightning()
    plugins.load_all()
    suite = ci_small(results)
    args = SimpleNamespace(executor=executor, results=str(results), force=False, retry_failed=False)
    run_suite(suite, args)
    store, out = RunStore(results), {}
    for run in suite.runs:
        state = inspect_folder(store.run_dir(SUITE, run))
        metrics = state.metrics
        row = {"status": str(state.state)}
        if state.state == RunState.FINISHED:
            row.update({k: metrics.get(k) for k in TOLERANCES if METHODS[run.method].kind == MethodKind.DIP
                        or k in (keys.FINAL_PSNR, keys.FINAL_RESIDUAL)})
        else:
            row["error"] = (metrics.get("error") or "")[:200]
        out[label(run)] = row
    for method, dataset, reason in suite.skipped:
        out[f"{method} @ {dataset}"] = {"status": "skipped", "reason": reason}
    return out


def _environmental(entry: dict) -> bool:
    """A skip because something is not installed here (BART, weights), not because of the code."""
    return entry.get("status") == "skipped" and ("not installed here" in entry.get("reason", "")
                                                 or "pretrained diffusion weights" in entry.get("reason", ""))


def differences(golden: dict[str, dict], now: dict[str, dict]) -> pd.DataFrame:
    """Rows (run, metric, golden, now, difference, tolerance) for everything out of tolerance,
    runs gone or new, and status changes."""
    rows = []
    for name in sorted(set(golden) | set(now)):
        g, n = golden.get(name), now.get(name)
        if g is None or n is None:
            rows.append({"run": name, "metric": "run", "golden": "present" if g else "absent",
                         "now": "present" if n else "absent", "difference": "", "tolerance": ""})
            continue
        if g.get("status") != n.get("status") and (_environmental(g) or _environmental(n)):
            print(f"note: {name}: {g.get('status')} in the golden file, {n.get('status')} here "
                  f"({(g if _environmental(g) else n)['reason']})", file=sys.stderr)
            continue
        if g.get("status") != n.get("status"):
            rows.append({"run": name, "metric": "status", "golden": g.get("status"), "now": n.get("status"),
                         "difference": n.get("error", ""), "tolerance": ""})
            continue
        for metric, tolerance in TOLERANCES.items():
            a, b = g.get(metric), n.get(metric)
            if a is None and b is None:
                continue
            if a is None or b is None or (isinstance(a, float) and math.isnan(a)) != (isinstance(b, float) and math.isnan(b)):
                rows.append({"run": name, "metric": metric, "golden": a, "now": b, "difference": "", "tolerance": tolerance})
                continue
            diff = abs(b - a) / max(abs(a), 1e-12) if metric in RELATIVE else abs(b - a)
            if metric in STEP_OF and diff <= STEPS / 4:
                psnr_a, psnr_b = g.get(STEP_OF[metric]), n.get(STEP_OF[metric])
                if psnr_a is not None and psnr_b is not None and abs(psnr_b - psnr_a) <= TOLERANCES[STEP_OF[metric]]:
                    continue  # a flat curve: the same PSNR a few iterations apart
            if diff > tolerance:
                rows.append({"run": name, "metric": metric, "golden": a, "now": b,
                             "difference": f"{diff:.4g}" + (" (relative)" if metric in RELATIVE else ""),
                             "tolerance": tolerance})
    return pd.DataFrame(rows, columns=["run", "metric", "golden", "now", "difference", "tolerance"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["check", "write"])
    parser.add_argument("--results", default="results", help="run store (ci_small is reused when finished)")
    parser.add_argument("--golden", default=str(GOLDEN))
    args = parser.parse_args(argv)
    now = run_and_collect(Path(args.results))
    path = Path(args.golden)
    if args.action == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"tolerances": TOLERANCES, "runs": now}, indent=1, sort_keys=True) + "\n")
        print(f"golden file written: {path} ({len(now)} runs); explain the change in the commit message")
        return 0
    golden = json.loads(path.read_text())["runs"]
    drift = differences(golden, now)
    if len(drift):
        print(f"{len(drift)} difference(s) from {path}:\n" + drift.to_string(index=False), file=sys.stderr)
        return 1
    print(f"ci_small matches {path} ({len(now)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
