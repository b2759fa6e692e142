"""``--executor slurm``: one submitit job array per invocation, one array task per run.

submitit writes the sbatch script (array with ``%`` concurrency cap = ``--array-parallelism``,
per-task GPUs, CPUs, memory, time limit, partition), pickles :func:`benchmark.batched.run_group`
(one run, or a batch of runs optimised together) with each run's resolved config, and SLURM
places, requeues and runs them. Only runs that need running are
submitted (finished runs never again). Without ``--detach`` this command waits, showing the
progress bar from the runs' claim files; with it, it exits after submitting and ``benchmark
status`` shows progress. submitit's logs are in ``<results>/<suite>/.slurm/``.
``--slurm-cluster local`` runs the array as local processes (submitit's local executor; for
tests and for trying a suite out without a cluster).
"""
from __future__ import annotations

import functools
import shutil
import sys
import time

from benchmark.config import ConfigError
from benchmark.executors.plan import record_lost_run
from benchmark.store import RunStore
from core.results import Outcome, RunState

POLL_S = 1.0


class SlurmExecutor:
    name = "slurm"
    OPTIONS = ("cluster", "partition", "gpus_per_run", "cpus_per_run", "mem_gb", "time_min", "array_parallelism",
               "detach")

    def __init__(self, cluster=None, partition=None, gpus_per_run=None, cpus_per_run=None, mem_gb=None, time_min=None,
                 array_parallelism=None, detach=None):
        self.cluster, self.partition = cluster, partition
        self.gpus_per_run, self.cpus_per_run, self.mem_gb = gpus_per_run, cpus_per_run, mem_gb
        self.time_min, self.array_parallelism, self.detach = time_min, array_parallelism, bool(detach)
        self.submitted: list = []

    def validate(self) -> str:
        """The submitit cluster to use; :class:`ConfigError` saying what to do if there is none."""
        cluster = self.cluster or ("slurm" if shutil.which("sbatch") else None)
        if cluster is None:
            raise ConfigError("--executor slurm: no SLURM here (sbatch is not on PATH); run it on the cluster's login node, "
                              "or add --slurm-cluster local to run the array as local processes")
        gpus = self.gpus_per_run
        if gpus is not None and float(gpus) != int(gpus):
            raise ConfigError(f"--gpus-per-run {gpus}: SLURM allocates whole GPUs; use --executor ray for fractional GPUs")
        return cluster

    def executor(self, folder):
        import submitit

        cluster = self.validate()
        ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
        gpus = self.gpus_per_run
        params = {"timeout_min": int(self.time_min or 24 * 60), "cpus_per_task": int(self.cpus_per_run or 1),
                  "gpus_per_node": None if gpus is None else int(gpus),
                  "mem_gb": None if self.mem_gb is None else int(self.mem_gb), "name": "dipbench",
                  "slurm_partition": self.partition,
                  "slurm_array_parallelism": None if self.array_parallelism is None else int(self.array_parallelism)}
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex

    def execute(self, jobs, ctx) -> list[Outcome]:
        from pathlib import Path

        from benchmark.batched import group_jobs, run_group  # (imports this package's worker module)

        folder = Path(ctx.results) / ctx.suite / ".slurm" / "%j"
        ex = self.executor(folder)
        groups = group_jobs(jobs, getattr(ctx, "batch", None))  # a run, or runs optimised together (batch:)
        n = len(groups)
        task = functools.partial(run_group, executor=self.name, plugin_files=ctx.plugin_files)
        sjobs = ex.map_array(task, [[j.config for j in g] for g in groups], [ctx.suite] * n, [ctx.results] * n,
                             [ctx.redo] * n, [ctx.not_before] * n)
        self.submitted = [s.job_id for s in sjobs]
        array = sjobs[0].job_id.split("_")[0] if sjobs else "-"
        tasks = f" in {n} task(s)" if n != len(jobs) else ""
        ctx.reporter.print(f"submitted {len(jobs)} run(s) as job array {array}{tasks} "
                           f"(logs: {folder.parent})")
        for job in jobs:
            ctx.reporter.started(job)
        if self.detach:
            ctx.reporter.print("--detach: not waiting; `python -m benchmark status` shows progress")
            return [{"run_id": j.run_id, "status": "submitted"} for j in jobs]
        pending = dict(zip([s.job_id for s in sjobs], zip(sjobs, groups)))
        outcomes = []
        try:
            while pending:
                for job_id, (sjob, group) in list(pending.items()):
                    if sjob.done():
                        del pending[job_id]
                        for job, outcome in zip(group, self._results(sjob, group, ctx)):
                            ctx.reporter.done(job, outcome)
                            outcomes.append(outcome)
                ctx.reporter.poll()
                if pending:
                    time.sleep(POLL_S)
        except BaseException:
            if pending:
                print(f"{len(pending)} submitted run(s) keep running under SLURM (scancel {' '.join(pending)} stops them)",
                      file=sys.stderr)
            raise
        return outcomes

    def _results(self, sjob, group, ctx) -> list[Outcome]:
        try:
            return sjob.result()
        except Exception:  # noqa: BLE001 - each run of the group is recorded below
            return [self._result(sjob, job, ctx) for job in group]

    def _result(self, sjob, job, ctx) -> Outcome:
        try:
            return sjob.result()
        except Exception as exc:  # the task died (time limit, node failure, OOM kill) or run_one raised
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            record_lost_run(RunStore(ctx.results), ctx.suite, job.run, error, "worker_died", self.name)
            return Outcome(job.run_id, RunState.FAILED, error=error)
