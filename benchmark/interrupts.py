"""SIGTERM / SIGINT during a grid: stop at once, store nothing half-written, exit non-zero.

:func:`handle_interrupts` installs handlers that raise :class:`Interrupted` (a
``BaseException``, so the runner never stores it as a failed run) in the main thread.
Lightning's own SIGTERM handler (installed during ``Trainer.fit``) calls ours too. Inside
:func:`critical` (the store's final renames) the signal is held back until the section ends,
so a run that has reached its write is stored whole; anywhere else the current run is
abandoned (its temporary folder removed, its claim released) and the command exits with
128 + the signal number (143 for SIGTERM), saying which runs were left.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_state = {"depth": 0, "pending": None, "raised": False}


class Interrupted(BaseException):
    """The process received SIGTERM or SIGINT."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handler(signum, frame):
    if _state["raised"]:
        return  # already stopping: ignore repeated signals while cleaning up
    if _state["depth"]:
        _state["pending"] = signum
        return
    _state["raised"] = True
    raise Interrupted(signum)


@contextmanager
def handle_interrupts(signals=(signal.SIGTERM, signal.SIGINT)):
    """Raise :class:`Interrupted` on these signals while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}
    _state.update(depth=0, pending=None, raised=False)
    for s in signals:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def hold() -> int:
    """Start holding back interrupts (until :func:`release_to`); returns the depth to release to.
    The runner holds from the moment a run's computation has ended until its folder is written,
    so a signal in between stops the process only after the finished run is stored."""
    _state["depth"] += 1
    return _state["depth"] - 1


def depth() -> int:
    return _state["depth"]


def release_to(level: int) -> None:
    """Stop holding down to ``level``; a signal that arrived meanwhile is raised now."""
    _state["depth"] = min(_state["depth"], level)
    if not _state["depth"] and _state["pending"] is not None and not _state["raised"]:
        signum, _state["pending"] = _state["pending"], None
        _state["raised"] = True
        raise Interrupted(signum)


@contextmanager
def critical():
    """Hold back an interrupt until the block has finished (a no-op without handlers)."""
    level = hold()
    try:
        yield
    finally:
        release_to(level)
