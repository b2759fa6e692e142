"""``--executor local``: the runs one after another in this process (today's behaviour); with
the suite key ``batch: seeds`` the runs that differ only in seed go together to
:func:`benchmark.batched.run_batch`."""
from __future__ import annotations

from benchmark.executors.worker import run_one
from core.results import Outcome


class LocalExecutor:
    name = "local"

    def execute(self, jobs, ctx) -> list[Outcome]:
        from benchmark.batched import group_jobs, run_batch  # imports the executors' worker module

        outcomes = []
        for group in group_jobs(jobs, getattr(ctx, "batch", None)):
            if len(group) > 1:
                for job in group:
                    ctx.reporter.started(job)
                done = run_batch([job.config for job in group], ctx.suite, ctx.results, ctx.redo, ctx.not_before,
                                 self.name, extra_callbacks=[[ctx.reporter.callback(job)] for job in group],
                                 plugin_files=ctx.plugin_files)
                for job, outcome in zip(group, done):
                    ctx.reporter.done(job, outcome)
                outcomes += done
                continue
            job = group[0]
            ctx.reporter.started(job)
            outcome = run_one(job.config, ctx.suite, ctx.results, ctx.redo, ctx.not_before, self.name,
                              extra_callbacks=[ctx.reporter.callback(job)], plugin_files=ctx.plugin_files)
            ctx.reporter.done(job, outcome)
            outcomes.append(outcome)
        return outcomes
