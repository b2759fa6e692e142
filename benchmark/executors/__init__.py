"""Executors: who runs the runs of a suite (``benchmark run --executor local|ray|slurm``).

- ``local``: in this process, one after another (laptops, CI).
- ``ray``: Ray core tasks, one run per GPU (``num_gpus`` per run, fractional allowed; CPU-only
  runs with ``num_cpus``), each in a fresh worker process (``max_calls=1``), on this box or on
  an existing cluster (``--address``). Ray places the runs and retries a run whose worker died
  (``--max-retries``).
- ``slurm``: a submitit job array with a concurrency cap and per-run resources.

dipbench has no scheduler, GPU pool or retry loop of its own: it plans (which runs are missing,
damaged, failed, or held by another invocation; :func:`plan_runs`), hands the engine the runs
that need running as plain resolved configs, and every run goes through
:func:`benchmark.executors.worker.run_one` wherever it lands (claim, execute, store). The
store is the single source of truth: progress comes from the runs' claim files, results from
their folders.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from benchmark.config import ConfigError, RunConfig
from benchmark.store import RunState, RunStore

EXECUTORS = ("local", "ray", "slurm")


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
    failed: list[tuple[RunConfig, RunState]] = field(default_factory=list)  # left alone (no --retry-failed)
    damaged: list[tuple[RunConfig, RunState]] = field(default_factory=list)  # in todo too
    held: list[tuple[RunConfig, object]] = field(default_factory=list)  # (run, Holder) of another live process


def redo_states(force: bool, retry_failed: bool) -> tuple[str, ...]:
    return ("finished", "failed") if force else ("failed",) if retry_failed else ()


def plan_runs(runs: list[RunConfig], suite: str, store: RunStore, force: bool = False, retry_failed: bool = False,
              not_before: float | None = None) -> Plan:
    from benchmark.executors.worker import needs_run
    from benchmark.locks import live_holder

    not_before = time.time() if not_before is None else not_before
    redo, plan = redo_states(force, retry_failed), Plan()
    for run in runs:
        state = store.inspect(suite, run)
        holder = live_holder(store.suite_dir(suite), run.run_id)
        if state.state == "damaged":
            plan.damaged.append((run, state))
        if holder is not None:
            plan.held.append((run, holder))
        elif needs_run(state, redo, not_before):
            plan.todo.append(run)
        elif state.state == "finished":
            plan.finished.append(run)
        else:
            plan.failed.append((run, state))
    return plan


@dataclass
class Context:
    """What an executor needs besides the jobs."""

    suite: str
    results: str  # absolute path of the results folder
    redo: tuple[str, ...]
    not_before: float
    reporter: object  # benchmark.progress.GridReporter
    plugin_files: tuple[str, ...] = ()  # --plugins files, imported by every worker too


def record_lost_run(store: RunStore, suite: str, run: RunConfig, error: str, kind: str, executor: str) -> bool:
    """Store a run whose worker died without storing it (killed by the OOM killer, node lost,
    retries exhausted) as failed with ``error``; False if another live process holds it or it
    was stored meanwhile."""
    from benchmark.locks import Claim, try_claim

    claim = try_claim(store.suite_dir(suite), run.run_id, executor)
    if not isinstance(claim, Claim):
        return False
    try:
        if store.inspect(suite, run).state in ("finished", "failed"):
            return False
        metrics = {"status": "failed", "method": run.method, "dataset": run.dataset, "error": error,
                   "failure": {"kind": kind, "reason": error}, "ended_at": time.time(),
                   "placement": {"executor": executor}}
        store.write(suite, run, metrics, None, {}, claim=claim)
        return True
    finally:
        claim.release()


def make_executor(name: str, options: dict):
    """The executor ``name`` with its options (options of other executors are ignored); a
    setting it cannot use fails here, before any run."""
    if name == "local":
        from benchmark.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from benchmark.executors.ray_executor import RayExecutor

        return RayExecutor(**{k: options.get(k) for k in RayExecutor.OPTIONS})
    if name == "slurm":
        from benchmark.executors.slurm_executor import SlurmExecutor

        executor = SlurmExecutor(**{k: options.get(k) for k in SlurmExecutor.OPTIONS})
        executor.validate()
        return executor
    raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
