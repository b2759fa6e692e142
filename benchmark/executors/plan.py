"""Planning a grid for the executors: which runs need running (:func:`plan_runs`), the job
and context handed to an executor, and recording a run whose worker died."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from benchmark.config import RunConfig
from benchmark.executors.worker import needs_run
from benchmark.locks import Claim, live_holder, try_claim
from benchmark.store import RunStore, StoredRun
from core.results import RunState


@dataclass
class Job:
    """One run handed to an executor: its resolved config as plain data and its size."""

    run: RunConfig
    steps: int  # iterations (0 for baselines), for the progress bar

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def config(self) -> dict:
        return {"run_id": self.run.run_id, **self.run.to_dict()}

    @property
    def label(self) -> str:
        return f"{self.run.method} on {self.run.dataset} seed {self.run.run.seed}"


@dataclass
class Plan:
    """What a suite's runs need: ``todo`` (missing, damaged, or to redo), and those left alone."""

    todo: list[RunConfig] = field(default_factory=list)
    finished: list[RunConfig] = field(default_factory=list)
    failed: list[tuple[RunConfig, StoredRun]] = field(default_factory=list)  # left alone (no --retry-failed)
    damaged: list[tuple[RunConfig, StoredRun]] = field(default_factory=list)  # in todo too
    held: list[tuple[RunConfig, object]] = field(default_factory=list)  # (run, Holder) of another live process


def redo_states(force: bool, retry_failed: bool) -> tuple[RunState, ...]:
    return (RunState.FINISHED, RunState.FAILED) if force else (RunState.FAILED,) if retry_failed else ()


def plan_runs(runs: list[RunConfig], suite: str, store: RunStore, force: bool = False, retry_failed: bool = False,
              not_before: float | None = None) -> Plan:
    not_before = time.time() if not_before is None else not_before
    redo, plan = redo_states(force, retry_failed), Plan()
    for run in runs:
        state = store.inspect(suite, run)
        holder = live_holder(store.suite_dir(suite), run.run_id)
        if state.state == RunState.DAMAGED:
            plan.damaged.append((run, state))
        if holder is not None:
            plan.held.append((run, holder))
        elif needs_run(state, redo, not_before):
            plan.todo.append(run)
        elif state.state == RunState.FINISHED:
            plan.finished.append(run)
        else:
            plan.failed.append((run, state))
    return plan


@dataclass
class Context:
    """What an executor needs besides the jobs."""

    suite: str
    results: str  # absolute path of the results folder
    redo: tuple[RunState, ...]
    not_before: float
    reporter: object  # benchmark.progress.GridReporter
    plugin_files: tuple[str, ...] = ()  # --plugins files, imported by every worker too
    batch: str | None = None  # suite key batch: runs optimised together in one worker (benchmark/batched.py)


def record_lost_run(store: RunStore, suite: str, run: RunConfig, error: str, kind: str, executor: str) -> bool:
    """Store a run whose worker died without storing it (killed by the OOM killer, node lost,
    retries exhausted) as failed with ``error``; False if another live process holds it or it
    was stored meanwhile."""
    claim = try_claim(store.suite_dir(suite), run.run_id, executor)
    if not isinstance(claim, Claim):
        return False
    try:
        if store.inspect(suite, run).state.stored:
            return False
        metrics = {"status": RunState.FAILED, "method": run.method, "dataset": run.dataset, "error": error,
                   "failure": {"kind": kind, "reason": error}, "ended_at": time.time(),
                   "placement": {"executor": executor}}
        store.write(suite, run, metrics, None, {}, claim=claim)
        return True
    finally:
        claim.release()
