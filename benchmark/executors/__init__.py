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

from benchmark.config import ConfigError
from benchmark.executors.local import LocalExecutor
from benchmark.executors.plan import Context, Job, Plan, plan_runs, record_lost_run, redo_states
from benchmark.executors.ray_executor import RayExecutor
from benchmark.executors.slurm_executor import SlurmExecutor

EXECUTORS = ("local", "ray", "slurm")
__all__ = ["EXECUTORS", "Context", "Job", "Plan", "make_executor", "plan_runs", "record_lost_run", "redo_states"]


def make_executor(name: str, options: dict):
    """The executor ``name`` with its options (options of other executors are ignored); a
    setting it cannot use fails here, before any run."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(**{k: options.get(k) for k in RayExecutor.OPTIONS})
    if name == "slurm":
        executor = SlurmExecutor(**{k: options.get(k) for k in SlurmExecutor.OPTIONS})
        executor.validate()
        return executor
    raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
