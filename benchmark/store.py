"""The run store: one folder per run, the single source of truth for reports.

Layout: ``<results>/<suite>/<run_id>/`` with ``config.json`` (resolved config),
``metrics.json`` (final metrics + status, written last), ``trace.parquet`` and
``images.npz`` (+ PNG previews). A run is written into a temporary sibling folder
and moved into place with one atomic rename, so a killed process never leaves a
half-written run that looks finished; failed runs are stored with status "failed"
and their traceback, and are retried on the next invocation.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.config import RunConfig

DEFAULT_RESULTS = Path(os.environ.get("DIPBENCH_RESULTS", "results"))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


class RunStore:
    def __init__(self, root: Path | str = DEFAULT_RESULTS):
        self.root = Path(root)

    def run_dir(self, suite: str, run: RunConfig) -> Path:
        return self.root / suite / run.run_id

    def status(self, suite: str, run: RunConfig) -> str | None:
        path = self.run_dir(suite, run) / "metrics.json"
        if not path.exists():
            return None
        return json.loads(path.read_text()).get("status")

    def is_finished(self, suite: str, run: RunConfig) -> bool:
        return self.status(suite, run) == "finished"

    def write(self, suite: str, run: RunConfig, metrics: dict, trace: pd.DataFrame | None,
              images: dict[str, np.ndarray], previews: dict[str, np.ndarray] | None = None) -> Path:
        """Write one run atomically (temporary folder, then rename)."""
        final = self.run_dir(suite, run)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{run.run_id}.", dir=final.parent))
        try:
            (tmp / "config.json").write_text(
                json.dumps({"suite": suite, "run_id": run.run_id, **run.to_dict()}, indent=2, default=str))
            if trace is not None and len(trace):
                trace.to_parquet(tmp / "trace.parquet", index=False)
            if images:
                np.savez_compressed(tmp / "images.npz", **images)
            for name, img in (previews or {}).items():
                _save_png(tmp / f"{name}.png", img)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def write_suite_info(self, suite: str, info: dict) -> None:
        """Suite metadata (description, experiment ids) for the report."""
        folder = self.root / suite
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".suite.json.tmp"
        tmp.write_text(json.dumps(info, indent=2, default=str))
        os.replace(tmp, folder / "suite.json")

    def suite_info(self, suite: str) -> dict:
        path = self.root / suite / "suite.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def runs(self, suite: str | None = None) -> list[Path]:
        """Folders of stored runs (finished or failed), of one suite or all."""
        suites = [self.root / suite] if suite else [p for p in self.root.glob("*") if p.is_dir()]
        return sorted(p for s in suites for p in s.glob("*")
                      if p.is_dir() and not p.name.startswith(".") and (p / "metrics.json").exists())


def _save_png(path: Path, img: np.ndarray) -> None:
    """Preview of an image ``(C, H, W)`` scaled to its own range."""
    import imageio.v3 as iio

    img = np.asarray(img, dtype=np.float32)
    img = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    img = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) if (lo < 0 or hi > 1) else np.clip(img, 0, 1)
    iio.imwrite(path, (img * 255).round().astype(np.uint8))
