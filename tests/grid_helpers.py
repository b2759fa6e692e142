"""Helpers of the orchestrator tests (executors, crash safety, concurrency, failures): tiny
suites on 16² crops, running the CLI in a subprocess, and fingerprints of stored runs."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NET = "{name: unet, scales: 3, channels: 8, skip_channels: [0, 4, 4]}"


def suite_file(folder: Path, name: str = "grid", images=("coffee", "astronaut"), max_steps: int = 20,
               methods: str = "[vanilla_dip, degraded]", extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmethods: {methods}\ndatasets: [denoising]\nseeds: [0]\n"
        f"set:\n  dataset.crop: 16\n  method.net: {NET}\n  run.max_steps: {max_steps}\n  run.trace_every: 5\n"
        f"  run.stopping.running_variance.window: 5\n{extra}"
        f"grid:\n  dataset.image: [{', '.join(images)}]\n")
    return path


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``python -m benchmark ARGS`` in a fresh process (its own process group)."""
    return subprocess.Popen([sys.executable, "-m", "benchmark", *args], cwd=PROJECT_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
                            start_new_session=True, **kwargs)


def fingerprints(suite_dir: Path) -> dict[str, dict[str, tuple[int, str]]]:
    """``{run_id: {file: (mtime_ns, sha256)}}`` of every stored run folder."""
    out = {}
    for run in sorted(p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[run.name] = {f.name: (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
                         for f in sorted(run.iterdir())}
    return out


def hidden_run_folders(suite_dir: Path) -> list[str]:
    """Temporary / set-aside run folders (``.<run_id>.tmp.*``, ``.old.*``)."""
    return sorted(p.name for p in suite_dir.iterdir() if p.name.startswith(".") and "__" in p.name)


def no_claims(suite_dir: Path) -> bool:
    """No run is claimed (the store removes the empty ``.claims`` folder)."""
    claims = suite_dir / ".claims"
    return not claims.exists() or not any(claims.iterdir())


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended (status {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def progress_of(suite_dir: Path, prefix: str) -> int:
    """Highest iteration reported by a running run whose id starts with ``prefix`` (0 if none)."""
    from benchmark.locks import read_progress

    claims = suite_dir / ".claims"
    if not claims.is_dir():
        return 0
    steps = [(read_progress(suite_dir, p.stem) or {}).get("step", 0) for p in claims.glob(f"{prefix}*.lock")]
    return max(steps, default=0)
