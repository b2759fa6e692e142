"""The result vocabulary shared by the runner, the store, the executors, the CLI and the
reports: what state a run is in, what an executor returns for a run, and the two kinds of
method."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class _StrEnum(str, Enum):
    """A string enum: equal to its value, written to JSON and shown as its value."""

    __str__ = str.__str__
    __format__ = str.__format__


class RunState(_StrEnum):
    """A run's state in the store (``metrics.json``'s ``status``) or, for ``SKIPPED``, an
    executor's outcome for a run that another invocation holds or has stored."""

    FINISHED = "finished"
    FAILED = "failed"
    DAMAGED = "damaged"  # a folder that is not complete (benchmark/store.py)
    MISSING = "missing"
    SKIPPED = "skipped"

    @property
    def stored(self) -> bool:
        """A complete record exists (finished or failed)."""
        return self in (RunState.FINISHED, RunState.FAILED)


class MethodKind(_StrEnum):
    """A DIP ``LightningModule`` (trained with ``Trainer.fit``) or a classical baseline."""

    DIP = "dip"
    BASELINE = "baseline"


@dataclass
class Outcome:
    """What an executor reports for one run it was handed."""

    run_id: str
    status: RunState
    reason: str = ""  # why it was skipped
    error: str = ""  # why it failed, when the run's own metrics are not available
    metrics: dict | None = None  # the stored metrics of a run that this worker executed

    @property
    def message(self) -> str:
        return self.error or (self.metrics or {}).get("error") or ""
