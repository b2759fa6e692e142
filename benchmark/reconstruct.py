"""``python -m benchmark reconstruct``: one method on one measurement, the stopped image out.

    python -m benchmark reconstruct --dataset measurement_ct --set dataset.file=sino.npy \\
        --method vanilla_dip --out recon.png

runs one run (a suite of one, stored like any other under ``<results>/reconstruct/``, so
``benchmark report --suite reconstruct`` shows its curves) and writes

* ``recon.png`` / ``recon.npy``: the image chosen by the first configured stopping rule
  (``run.stopping``; default ``running_variance``), or a baseline's reconstruction;
* ``recon_final.png`` / ``recon_final.npy``: the last iterate.

The ``.npy`` holds the reconstruction ``(C, H, W)`` in the task's reconstruction space
(complex MR images as 2 real channels), the ``.png`` the displayed image scaled to its
range. Works with or without a ground truth. A finished run with the same resolved config
is reused (``--force`` recomputes it).
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from benchmark.config import ConfigError, check_devices_here, resolve, set_dotted
from benchmark.executors.worker import ClaimProgress
from benchmark.locks import Claim, try_claim
from benchmark.plugins import check_conflicts
from benchmark.progress import StepProgress, suite_progress
from benchmark.runner import execute
from benchmark.store import RunStore, _save_png
from core import keys
from core.results import MethodKind, RunState
from methods.registry import METHODS

SUITE = "reconstruct"


def _outputs(out: str) -> tuple[Path, Path]:
    path = Path(out).expanduser()
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".npy") else path
    return stem, stem.with_name(stem.name + "_final")


def reconstruct(method: str, dataset: str, overrides: dict, out: str, results: str = "results",
                force: bool = False) -> int:
    """Run ``method`` on ``dataset`` (``overrides``: dotted ``--set`` keys) and write the
    stopped and final images next to ``out``. Returns the exit code."""
    check_conflicts()
    config = {"method": {"name": method}, "dataset": {"name": dataset}, "run": {}}
    for key, value in overrides.items():
        set_dotted(config, key, value)
    run = resolve(config)
    check_devices_here([run])
    if not run.run.save_images:
        raise ConfigError("reconstruct writes the run's images: drop run.save_images=false")
    store = RunStore(results)
    store.check_writable(SUITE)
    store.clean_temporaries(SUITE)  # left by a killed reconstruct
    run_dir = store.run_dir(SUITE, run)

    def stored() -> bool:
        return store.is_finished(SUITE, run) and (run_dir / "images.npz").exists()

    claim = None if (stored() and not force) else _claim(store, run, stored)
    if claim is not None:  # compute it (the claim keeps a second identical call from computing it too)
        try:
            print(f"reconstructing with {method} on {dataset} → {run_dir}", file=sys.stderr)
            metrics = _execute(run, store, claim)
        finally:
            claim.release()
        if metrics["status"] != RunState.FINISHED:
            print(f"error: the run failed: {metrics['error']}\n(traceback in {run_dir / 'metrics.json'})", file=sys.stderr)
            return 1
    else:
        print(f"reusing the finished run {run_dir} (--force recomputes it)", file=sys.stderr)
    images = np.load(run_dir / "images.npz")
    stopped, final = _outputs(out)
    stopped.parent.mkdir(parents=True, exist_ok=True)
    written = _write(run_dir, images, "final", final)
    rules = list(run.run.stopping)
    if METHODS[run.method].kind == MethodKind.BASELINE:
        source, chosen = "final", "the baseline's reconstruction (no iterations to stop)"
    elif rules and keys.es_image(rules[0]) in images:
        source, chosen = keys.es_image(rules[0]), f"the pick of stopping rule {rules[0]}"
    else:
        what = f"stopping rule {rules[0]}" if rules else "no stopping rule (run.stopping is empty)"
        print(f"error: {what} picked no image in {run.run.max_steps} iterations (a window longer than the run?); only "
              f"the final iterate was written ({final}.png). Raise run.max_steps or shorten the rule's window, e.g. "
              "--set run.stopping.running_variance.window=50", file=sys.stderr)
        for path in written:
            print(path)
        return 1
    written = _write(run_dir, images, source, stopped) + written
    print(f"stopped image = {chosen}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def _claim(store, run, stored, poll_s: float = 1.0) -> Claim | None:
    """Claim the run; while another process holds it, wait for it (None once it has stored
    the run: reuse it; a claim whose holder died is taken over)."""
    said = False
    while True:
        claim = try_claim(store.suite_dir(SUITE), run.run_id, "reconstruct")
        if isinstance(claim, Claim):
            return claim
        if not said:
            print(f"the same reconstruction is being computed by {claim.describe()}: waiting for it", file=sys.stderr)
            said = True
        time.sleep(poll_s)
        if stored():
            return None


def _execute(run, store, claim) -> dict:
    total = METHODS[run.method].cls.iterations(run.method_cfg, run.run.max_steps)
    claim.report_progress(0, total)
    reported = ClaimProgress(claim, total)  # for `status` and a second identical call
    if not sys.stderr.isatty():
        return execute(run, SUITE, store, extra_callbacks=[reported], claim=claim)
    with suite_progress() as progress:
        bar = progress.add_task(f"{run.method} on {run.dataset}", total=total or 1)
        return execute(run, SUITE, store, extra_callbacks=[reported, StepProgress(progress, bar)], claim=claim)


def _write(run_dir: Path, images, name: str, stem: Path) -> list[Path]:
    np.save(stem.with_name(stem.name + ".npy"), images[name])
    png = stem.with_name(stem.name + ".png")
    preview = run_dir / f"{name}.png"  # the store's preview: the displayed image (task.to_image), scaled
    if preview.exists():
        shutil.copyfile(preview, png)
    else:
        _save_png(png, images[name])
    return [png, stem.with_name(stem.name + ".npy")]
