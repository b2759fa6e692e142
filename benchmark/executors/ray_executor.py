"""``--executor ray``: Ray core tasks, one run per GPU, each in a fresh worker process.

Ray does the placement (a task asks for ``num_gpus`` GPUs, fractional allowed for small
crops, and ``num_cpus`` CPUs; Ray sets ``CUDA_VISIBLE_DEVICES`` per task) and the retries of a
task whose worker process died (``max_retries``). A run that raises is stored as failed by the
worker and not retried (a deterministic failure would fail again). ``max_calls=1`` gives every
run a fresh process, so no state leaks between runs. Without ``--address`` Ray starts on this
box (all its GPUs and CPUs) and is shut down afterwards; with ``--address`` it joins an
existing cluster, whose nodes need this code installed and the results folder on a shared
file system.
"""
from __future__ import annotations

import signal
import sys
import threading

from benchmark.executors.plan import record_lost_run
from benchmark.interrupts import Interrupted
from benchmark.locks import release_dead_claim
from benchmark.store import RunStore
from core.results import Outcome, RunState

POLL_S = 0.5


def _wait(ray, refs):
    """``ray.wait`` for one result; a signal that our handler turned into :class:`Interrupted`
    inside Ray's compiled code comes out as a ``SystemError`` caused by it: raise it as itself."""
    try:
        return ray.wait(refs, num_returns=1, timeout=POLL_S)[0]
    except SystemError as exc:
        if isinstance(exc.__cause__, Interrupted):
            raise exc.__cause__ from None
        raise


class RayExecutor:
    name = "ray"
    OPTIONS = ("address", "gpus_per_run", "cpus_per_run", "max_retries", "num_cpus", "num_gpus")

    def __init__(self, address=None, gpus_per_run=None, cpus_per_run=None, max_retries=None, num_cpus=None,
                 num_gpus=None):
        self.address, self.gpus_per_run, self.cpus_per_run = address, gpus_per_run, cpus_per_run
        self.max_retries = 1 if max_retries is None else int(max_retries)
        self.num_cpus, self.num_gpus = num_cpus, num_gpus  # only when Ray starts here (e.g. fake GPUs for tests)

    def _start(self) -> bool:
        import ray

        if ray.is_initialized():
            return False
        kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
                  "logging_level": "ERROR"}
        if self.address:
            kwargs["address"] = self.address
        else:
            kwargs.update({k: v for k, v in (("num_cpus", self.num_cpus), ("num_gpus", self.num_gpus)) if v is not None})
        ours = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        ray.init(**kwargs)
        if threading.current_thread() is threading.main_thread():
            # ray.init replaces SIGTERM's handler with one that exits 1 at once (and its core worker
            # logs a stack dump): put ours back, so a signal stops the grid like `local` does
            # (the runs going on are cancelled, their claims removed, Ray shut down, exit 128 + signal)
            for sig, handler in ours.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        return True

    def resources(self) -> dict:
        """Per-run resources: ``gpus_per_run`` (default 1 when the cluster has GPUs, else 0) and
        ``cpus_per_run`` (default 1)."""
        import ray

        gpus = self.gpus_per_run
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        return {"num_gpus": float(gpus), "num_cpus": float(self.cpus_per_run or 1)}

    def execute(self, jobs, ctx) -> list[Outcome]:
        import ray

        from benchmark.batched import group_jobs, run_group  # (imports this package's worker module)

        started_here = self._start()
        pending: dict = {}
        try:
            # one task per group: a run, or runs optimised together (suite key batch, benchmark/batched.py)
            task = ray.remote(max_calls=1, max_retries=self.max_retries, **self.resources())(run_group)
            for group in group_jobs(jobs, getattr(ctx, "batch", None)):
                ref = task.remote([job.config for job in group], ctx.suite, ctx.results, ctx.redo, ctx.not_before,
                                  self.name, plugin_files=ctx.plugin_files)
                pending[ref] = group
                for job in group:
                    ctx.reporter.started(job)  # queued; progress appears once a worker holds its claim
            outcomes = []
            while pending:
                done = _wait(ray, list(pending))
                ctx.reporter.poll()
                for ref in done:
                    group = pending.pop(ref)
                    for job, outcome in zip(group, self._results(ray, ref, group, ctx)):
                        ctx.reporter.done(job, outcome)
                        outcomes.append(outcome)
            return outcomes
        except BaseException:
            for ref in pending:  # interrupted: stop the runs still going
                ray.cancel(ref, force=True)
            self._free_claims(ray, pending, ctx)
            raise
        finally:
            if started_here:
                ray.shutdown()

    @staticmethod
    def _free_claims(ray, pending, ctx) -> None:
        """Remove the claims (and progress files) that the cancelled runs' killed workers left."""
        if not pending:
            return
        suite_dir = RunStore(ctx.results).suite_dir(ctx.suite)
        for group in pending.values():  # a claim still left (a worker on another host) is broken by the next run
            for job in group:
                release_dead_claim(suite_dir, job.run_id, wait_s=10)

    def _results(self, ray, ref, group, ctx) -> list[Outcome]:
        try:
            return ray.get(ref)
        except ray.exceptions.RayError:
            return [self._result(ray, ref, job, ctx) for job in group]

    def _result(self, ray, ref, job, ctx) -> Outcome:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # run_one itself raised (the store could not be written, …)
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            return Outcome(job.run_id, RunState.FAILED, error=f"{type(cause).__name__}: {cause}")
        except ray.exceptions.RayError as exc:  # the worker died (OOM kill, node lost) after Ray's retries
            kind = "out_of_memory" if isinstance(exc, ray.exceptions.OutOfMemoryError) else "worker_died"
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            stored = record_lost_run(RunStore(ctx.results), ctx.suite, job.run, error, kind, self.name)
            if not stored:
                print(f"run {job.run_id}: {error} (not stored: another process holds or stored it)", file=sys.stderr)
            return Outcome(job.run_id, RunState.FAILED, error=error)
