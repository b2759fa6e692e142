"""Per-run claims with a lease: two invocations on one results folder never run a run twice.

A claim is the file ``<results>/<suite>/.claims/<run_id>.lock``, created with
``O_CREAT | O_EXCL`` (atomic on local file systems and on NFSv3+). It holds who took it
(JSON: host, pid, token, start time, executor) and its **mtime is the heartbeat**: the
holder touches it every ``lease / 4`` seconds from a daemon thread while the run executes.
A claim is *live* unless

- its heartbeat is older than the lease (``DIPBENCH_LEASE_S``, default 120 s), or
- its holder ran on this host and that pid no longer exists (a killed process frees its
  runs at once on its own machine; on another host the lease has to run out).

A stale claim is broken under a second short-lived lock (``<run_id>.lock.break``, also
``O_EXCL``): the breaker re-reads the claim under it and removes it only if it is still the
stale one it judged, so two processes can never both take over the same run. The holder
checks its token before it moves its results into place (:meth:`Claim.holds`): a process
that was frozen past its lease (suspended laptop, stopped job) finds it has lost the run and
discards its results instead of overwriting the new holder's.

While a claim is held, ``<run_id>.progress`` (written atomically) carries the iteration the
run has reached, for ``benchmark status`` and the progress bars of every executor.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


def default_lease() -> float:
    """Lease in seconds: ``DIPBENCH_LEASE_S`` (read at each use), default 120."""
    return float(os.environ.get("DIPBENCH_LEASE_S", "120"))

BREAK_LOCK_STALE_S = 30.0  # a break lock is held for milliseconds; older ones are left by a crash
# a claim file is created and written in microseconds: one still empty or unreadable after this
# long was left by a writer that died in between (it blocked its run for the whole lease before)
UNREADABLE_CLAIM_STALE_S = 5.0
HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (dead, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


@dataclass
class Holder:
    """Who holds a claim, read from its file."""

    host: str
    pid: int
    token: str
    started: float
    heartbeat: float  # mtime of the claim file
    executor: str = ""
    unreadable: bool = False  # the file is empty or not a claim

    def stale(self, lease: float, now: float | None = None) -> str | None:
        """Why the claim no longer counts (None while it is live)."""
        now = time.time() if now is None else now
        if self.unreadable and now - self.heartbeat > min(lease, UNREADABLE_CLAIM_STALE_S):
            return f"its file is empty or unreadable and {now - self.heartbeat:.0f} s old (its writer died)"
        if self.host == HOST and not pid_alive(self.pid):
            return f"its holder (pid {self.pid} on {self.host}) is gone"
        if now - self.heartbeat > lease:
            return f"its heartbeat is {now - self.heartbeat:.0f} s old (lease {lease:.0f} s)"
        return None

    def describe(self) -> str:
        return f"{self.executor + ' ' if self.executor else ''}pid {self.pid} on {self.host}"


def read_holder(path: Path) -> Holder | None:
    """The holder of claim file ``path``; None if there is none. A claim file that cannot be
    parsed (its writer died between create and write) counts as a live anonymous holder for
    ``UNREADABLE_CLAIM_STALE_S`` seconds, then as stale."""
    try:
        stat = path.stat()
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
        return Holder(info["host"], int(info["pid"]), info["token"], float(info["started"]), stat.st_mtime,
                      info.get("executor", ""))
    except (ValueError, KeyError, TypeError):
        return Holder("?", -1, "", stat.st_mtime, stat.st_mtime, unreadable=True)


class Claim:
    """A held claim on one run. Use :func:`try_claim` to get one; ``release()`` when done
    (also a context manager). The heartbeat thread starts with the claim."""

    def __init__(self, path: Path, token: str, lease: float):
        self.path, self.token, self.lease = path, token, lease
        self.progress_path = path.with_suffix(".progress")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {path.stem}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(max(self.lease / 4, 0.05)):
            if self.holds():
                try:
                    os.utime(self.path)
                except FileNotFoundError:
                    pass

    def holds(self) -> bool:
        """Whether this process still holds the claim (its token is in the file)."""
        holder = read_holder(self.path)
        return holder is not None and holder.token == self.token

    def report_progress(self, step: int, total: int) -> None:
        """Iteration reached, for status and progress bars (best effort, atomic)."""
        tmp = self.progress_path.with_name(f".{self.progress_path.name}.{self.token}")
        try:
            tmp.write_text(json.dumps({"step": int(step), "total": int(total), "time": time.time()}))
            os.replace(tmp, self.progress_path)
        except OSError:
            pass

    def release(self) -> None:
        self._stop.set()
        if self.holds():
            for path in (self.progress_path, self.path):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
        try:
            self.path.parent.rmdir()  # no claims left: no .claims folder (a claimer racing this recreates it)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def claims_dir(suite_dir: Path) -> Path:
    return suite_dir / ".claims"


def claim_path(suite_dir: Path, run_id: str) -> Path:
    return claims_dir(suite_dir) / f"{run_id}.lock"


def try_claim(suite_dir: Path, run_id: str, executor: str = "", lease: float | None = None) -> Claim | Holder:
    """Claim run ``run_id``: a :class:`Claim` on success, else the live :class:`Holder`."""
    lease = default_lease() if lease is None else lease
    path = claim_path(suite_dir, run_id)
    for _ in range(5):
        token = uuid.uuid4().hex
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileNotFoundError:
            continue  # the empty .claims folder was removed between mkdir and open: again
        except FileExistsError:
            holder = read_holder(path)
            if holder is None:
                continue  # released meanwhile: try again
            if holder.stale(lease) is None:
                return holder
            break_stale(path, holder, lease)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"host": HOST, "pid": os.getpid(), "token": token, "started": time.time(),
                       "executor": executor}, f)
        return Claim(path, token, lease)
    holder = read_holder(path)
    if holder is not None:
        return holder
    raise RuntimeError(f"could not claim {path} (claims keep changing hands); try again")


def break_stale(path: Path, judged: Holder, lease: float) -> None:
    """Remove the stale claim ``judged`` under a break lock, only if it is still that claim."""
    lock = path.with_name(path.name + ".break")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - lock.stat().st_mtime > BREAK_LOCK_STALE_S:
                lock.unlink()  # its breaker died while holding it
        except FileNotFoundError:
            pass
        time.sleep(0.01)
        return
    os.close(fd)
    try:
        current = read_holder(path)
        if current is not None and current.token == judged.token and current.started == judged.started \
                and current.stale(lease) is not None:
            path.unlink()
            path.with_suffix(".progress").unlink(missing_ok=True)
    finally:
        lock.unlink(missing_ok=True)


def release_dead_claim(suite_dir: Path, run_id: str, wait_s: float = 0.0) -> bool:
    """Remove a run's claim if its holder ran on this host and is gone (e.g. a cancelled
    worker; waits up to ``wait_s`` for it to exit); True if removed. Claims of live processes
    and of other hosts are left."""
    path = claim_path(suite_dir, run_id)
    holder = read_holder(path)
    deadline = time.monotonic() + wait_s
    while holder is not None and holder.host == HOST and pid_alive(holder.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if holder is None or holder.host != HOST or pid_alive(holder.pid):
        return False
    for _ in range(50):  # the break lock may be busy for a moment
        break_stale(path, holder, default_lease())
        if read_holder(path) is None or read_holder(path).token != holder.token:
            break
    try:
        claims_dir(suite_dir).rmdir()
    except OSError:
        pass
    return read_holder(path) is None


def live_holder(suite_dir: Path, run_id: str, lease: float | None = None) -> Holder | None:
    """The live holder of a run's claim, or None (unclaimed or stale)."""
    holder = read_holder(claim_path(suite_dir, run_id))
    if holder is None or holder.stale(default_lease() if lease is None else lease) is not None:
        return None
    return holder


def read_progress(suite_dir: Path, run_id: str) -> dict | None:
    try:
        return json.loads(claim_path(suite_dir, run_id).with_suffix(".progress").read_text())
    except (OSError, ValueError):
        return None
