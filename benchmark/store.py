"""The run store: one folder per run, the single source of truth for runs, status and reports.

Layout of ``<results>/<suite>/``:

- ``<run_id>/``: ``config.json`` (resolved config), ``trace.parquet``, ``images.npz`` (+ PNG
  previews) and ``metrics.json`` (metrics, status, and a manifest ``files`` with the size and
  SHA-256 of every other file of the folder), written last;
- ``suite.json``: the suite's description, experiment ids and the run ids it had when it was
  last launched (for ``benchmark status``);
- ``.claims/<run_id>.lock`` and ``.progress``: who is running a run now (benchmark/locks.py);
- ``.<run_id>.tmp.<token>`` / ``.<run_id>.old.<token>``: folders being written or replaced.

**Atomic writes.** A run is written into ``.<run_id>.tmp.<token>``, every file is flushed to
disk, and the folder is moved into place with one ``os.replace``; an earlier record of the run
is first renamed aside (``.old``) and deleted after. A killed process therefore leaves either
the complete old record, the complete new one, or no record plus a hidden temporary folder:
never a run folder that looks finished and is not. Hidden folders older than the lease whose
run nobody holds are deleted by :meth:`RunStore.clean_temporaries` (every ``benchmark run``
calls it); every reader ignores hidden entries.

**Complete or detectably damaged.** A run folder counts as *finished* only if its
``metrics.json`` parses, says ``"status": "finished"``, its ``config.json`` parses and names
the run, and every file in the manifest has its recorded size and SHA-256. Anything else
(truncated JSON, a corrupt or missing trace or image file, a missing config) makes it
*damaged*: reported by path with what is wrong, treated as not finished (``benchmark run``
redoes it) and left out of reports. Runs stored before the manifest existed are checked by
opening their files.

**Claims.** Whoever executes a run holds its claim (benchmark/locks.py: an ``O_EXCL`` lock
file with the holder's host, pid and a heartbeat mtime; the lease expires when the heartbeat
is older than ``DIPBENCH_LEASE_S`` seconds (default 120) or the holder's pid is dead on the
same host). :meth:`RunStore.write` checks that the claim is still held right before the
rename, so a run is never written by two processes.

**Strict JSON.** ``metrics.json``, ``config.json`` and ``suite.json`` are strict JSON
(RFC 8259): a NaN or ±inf float is written as ``null``; readers get ``None`` back (a NaN in
a pandas column). Failed runs are stored with status ``"failed"``, the error, its traceback
and, for a diverged run, the iteration and reason (``failure``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.config import ConfigError, RunConfig
from benchmark.interrupts import critical
from benchmark.locks import HOST, Claim, break_stale, claims_dir, default_lease, live_holder, pid_alive, read_holder
from core.results import RunState

DEFAULT_RESULTS = Path(os.environ.get("DIPBENCH_RESULTS", "results"))
CLAIMS = ".claims"
WRITER = f"{hashlib.sha1(HOST.encode()).hexdigest()[:8]}-{os.getpid()}"  # host and pid in temporary names
_RUN_TEMP = re.compile(r"^\.(?P<run>[^.]+__[^.]+__[0-9a-f]{10})\.(?:(?:tmp|old)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.)?")


class StoreError(ConfigError):
    """The results folder cannot be used (read-only, a file, disk full): one line naming the path."""


class LostClaim(RuntimeError):
    """Our claim on a run expired and another process took it over: our results are discarded."""


def to_strict_json(value):
    """``value`` with NaN/±inf floats replaced by None and numpy scalars/arrays made plain."""
    if isinstance(value, dict):
        return {str(k): to_strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_strict_json(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def dumps(value) -> str:
    """Strict JSON text (see the module doc)."""
    return json.dumps(to_strict_json(value), indent=2, allow_nan=False)


class DamagedFile(ValueError):
    """A stored file cannot be read; the message names it."""


def read_json(path: Path) -> dict:
    """A stored JSON object; :class:`DamagedFile` naming ``path`` if missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DamagedFile(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DamagedFile(f"{path} is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DamagedFile(f"{path} does not hold a JSON object")
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class StoredRun:
    """What the store holds for one run: ``state`` is finished, failed, damaged or missing;
    ``problem`` says what is wrong with a damaged folder."""

    path: Path
    state: RunState
    problem: str = ""
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def ended_at(self) -> float:
        return float(self.metrics.get("ended_at") or 0.0)


class RunStore:
    def __init__(self, root: Path | str = DEFAULT_RESULTS):
        self.root = Path(root)

    # -- paths --------------------------------------------------------------------------------
    def suite_dir(self, suite: str) -> Path:
        return self.root / suite

    def run_dir(self, suite: str, run: RunConfig | str) -> Path:
        return self.root / suite / (run if isinstance(run, str) else run.run_id)

    def check_writable(self, suite: str | None = None) -> None:
        """Raise :class:`StoreError` (one line naming the path) unless runs can be written."""
        for path in (self.root, *((self.root / suite,) if suite else ())):
            if path.exists() and not path.is_dir():
                raise StoreError(f"results path {path} is a file, not a folder; pass a folder with --results DIR")
        target = self.root / suite if suite else self.root
        try:
            target.mkdir(parents=True, exist_ok=True)
            probe = target / f".write-test.{uuid.uuid4().hex}"
            probe.mkdir()
            probe.rmdir()
        except OSError as exc:
            raise StoreError(f"results folder {target} is not writable ({exc.strerror or exc}); "
                             "choose another with --results DIR") from None

    # -- reading ------------------------------------------------------------------------------
    def inspect(self, suite: str, run: RunConfig | str) -> StoredRun:
        """The stored state of one run (see the module doc for what counts as finished)."""
        return inspect_folder(self.run_dir(suite, run))

    def status(self, suite: str, run: RunConfig | str) -> RunState | None:
        """``finished``, ``failed``, ``damaged``, or None when nothing is stored."""
        state = self.inspect(suite, run).state
        return None if state == RunState.MISSING else state

    def is_finished(self, suite: str, run: RunConfig | str) -> bool:
        return self.inspect(suite, run).state == RunState.FINISHED

    def runs(self, suite: str | None = None) -> list[Path]:
        """Folders of stored runs (finished, failed or damaged), of one suite or all."""
        if not self.root.is_dir():
            return []
        suites = [self.root / suite] if suite else [p for p in self.root.iterdir() if p.is_dir()]
        return sorted(p for s in suites if s.is_dir() for p in s.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def suites(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def write_suite_info(self, suite: str, info: dict) -> None:
        """Suite metadata (description, experiment ids, run ids) for reports and status."""
        folder = self.root / suite
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".suite.json.{uuid.uuid4().hex}"
        try:
            tmp.write_text(dumps(info))
            os.replace(tmp, folder / "suite.json")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {folder / 'suite.json'} ({exc.strerror or exc})") from None

    def suite_info(self, suite: str) -> dict:
        path = self.root / suite / "suite.json"
        if not path.exists():
            return {}
        try:
            return read_json(path)
        except DamagedFile:
            return {}

    # -- writing ------------------------------------------------------------------------------
    def write(self, suite: str, run: RunConfig, metrics: dict, trace: pd.DataFrame | None,
              images: dict[str, np.ndarray], previews: dict[str, np.ndarray] | None = None,
              claim: Claim | None = None) -> Path:
        """Write one run atomically (temporary folder, flushed, then renamed into place). With
        ``claim``, the rename happens only while the claim is still held (else :class:`LostClaim`)."""

        final = self.run_dir(suite, run)
        token = f"{WRITER}.{uuid.uuid4().hex[:8]}"
        tmp = final.parent / f".{run.run_id}.tmp.{token}"
        old = final.parent / f".{run.run_id}.old.{token}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            try:
                self._fill(tmp, suite, run, metrics, trace, images, previews)
                if claim is not None and not claim.holds():
                    raise LostClaim(f"the claim on {final} expired and another process took the run over; "
                                    "this process's results are discarded")
                with critical():  # a SIGTERM here waits until the run is in place
                    if final.exists():
                        os.replace(final, old)
                    os.replace(tmp, final)
                _fsync_dir(final.parent)
            finally:
                for leftover in (tmp, old):
                    if leftover.exists():
                        shutil.rmtree(leftover, ignore_errors=True)
        except OSError as exc:
            raise StoreError(f"cannot write run folder {final} ({exc.strerror or exc}); "
                             "check the results folder (--results DIR)") from None
        return final

    def _fill(self, tmp: Path, suite, run, metrics, trace, images, previews) -> None:
        (tmp / "config.json").write_text(dumps({"suite": suite, "run_id": run.run_id, **run.to_dict()}))
        if trace is not None and len(trace):
            trace.to_parquet(tmp / "trace.parquet", index=False)
        if images:
            np.savez_compressed(tmp / "images.npz", **images)
        for name, img in (previews or {}).items():
            _save_png(tmp / f"{name}.png", img)
        files = sorted(p for p in tmp.iterdir() if p.is_file())
        manifest = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
        (tmp / "metrics.json").write_text(dumps({**metrics, "files": manifest}))
        for p in tmp.iterdir():
            _fsync_file(p)
        _fsync_dir(tmp)

    def clean_temporaries(self, suite: str, lease: float | None = None) -> list[Path]:
        """Delete hidden temporary folders of runs nobody holds whose writer is dead (same host)
        or that are older than the lease, and stale claim files; returns the folders removed."""
        lease = default_lease() if lease is None else lease
        folder, removed, now = self.root / suite, [], time.time()
        if not folder.is_dir():
            return removed
        writer_host = WRITER.split("-")[0]
        for path in folder.iterdir():
            match = _RUN_TEMP.match(path.name)
            if not match or not path.is_dir():
                continue
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            writer_dead = match["pid"] is not None and match["host"] == writer_host and not pid_alive(int(match["pid"]))
            if (age > lease or writer_dead) and live_holder(folder, match["run"], lease) is None:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        claims = claims_dir(folder)
        if claims.is_dir():
            for lock in claims.glob("*.lock"):
                holder = read_holder(lock)
                if holder is not None and holder.stale(lease) is not None:
                    break_stale(lock, holder, lease)
            for progress in claims.glob("*.progress"):
                if not progress.with_suffix(".lock").exists():
                    progress.unlink(missing_ok=True)
            for stray in claims.glob(".*"):  # a progress file being replaced when its writer died
                try:
                    if now - stray.stat().st_mtime > lease:
                        stray.unlink()
                except FileNotFoundError:
                    pass
        return removed


def inspect_folder(folder: Path) -> StoredRun:
    """The state of one run folder (see the module doc)."""
    if not folder.is_dir():
        return StoredRun(folder, RunState.MISSING)
    try:
        metrics = read_json(folder / "metrics.json")
    except DamagedFile as exc:
        return StoredRun(folder, RunState.DAMAGED, str(exc))
    status = metrics.get("status")
    if status not in (RunState.FINISHED, RunState.FAILED):
        return StoredRun(folder, RunState.DAMAGED, f"{folder / 'metrics.json'} has no valid status (got {status!r})", metrics)
    try:
        config = read_json(folder / "config.json")
    except DamagedFile as exc:
        return StoredRun(folder, RunState.DAMAGED, str(exc), metrics)
    if config.get("run_id") != folder.name:
        return StoredRun(folder, RunState.DAMAGED, f"{folder / 'config.json'} is for run {config.get('run_id')!r}, "
                                           f"not {folder.name}", metrics, config)
    problem = _check_files(folder, metrics)
    if problem:
        return StoredRun(folder, RunState.DAMAGED, problem, metrics, config)
    return StoredRun(folder, RunState(status), "", metrics, config)


def _check_files(folder: Path, metrics: dict) -> str:
    manifest = metrics.get("files")
    if isinstance(manifest, dict):
        for name, info in manifest.items():
            path = folder / name
            if not path.is_file():
                return f"{path} is missing"
            size = path.stat().st_size
            if not isinstance(info, dict) or size != info.get("bytes") or _sha256(path) != info.get("sha256"):
                return f"{path} is corrupt (its size or checksum differs from the one recorded in metrics.json)"
        return ""
    # written before the manifest existed: open what is there
    try:
        if (folder / "trace.parquet").exists():
            import pyarrow.parquet as pq

            pq.read_metadata(folder / "trace.parquet")
        if (folder / "images.npz").exists():
            import zipfile

            with zipfile.ZipFile(folder / "images.npz") as z:
                bad = z.testzip()
            if bad:
                return f"{folder / 'images.npz'} is corrupt (entry {bad})"
    except Exception as exc:  # noqa: BLE001 - any reader error means the file is damaged
        return f"a file in {folder} is corrupt ({type(exc).__name__}: {exc})"
    return ""


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:
        pass  # some file systems cannot fsync a directory


def _save_png(path: Path, img: np.ndarray) -> None:
    """Preview of an image ``(C, H, W)`` scaled to its own range."""
    import imageio.v3 as iio

    img = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    img = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
    lo, hi = float(np.min(img)), float(np.max(img))
    img = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) if (lo < 0 or hi > 1) else np.clip(img, 0, 1)
    iio.imwrite(path, (img * 255).round().astype(np.uint8))
