"""``--executor local``: the runs one after another in this process (today's behaviour)."""
from __future__ import annotations

from benchmark.executors.worker import run_one
from core.results import Outcome


class LocalExecutor:
    name = "local"

    def execute(self, jobs, ctx) -> list[Outcome]:
        outcomes = []
        for job in jobs:
            ctx.reporter.started(job)
            outcome = run_one(job.config, ctx.suite, ctx.results, ctx.redo, ctx.not_before, self.name,
                              extra_callbacks=[ctx.reporter.callback(job)], plugin_files=ctx.plugin_files)
            ctx.reporter.done(job, outcome)
            outcomes.append(outcome)
        return outcomes
