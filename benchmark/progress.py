"""A rich progress bar with ETA over all iterations of a suite, for every executor.

In-process runs (``local``) advance it from a Lightning callback; runs in other processes
(Ray workers, SLURM tasks) report the iteration they have reached in their claim's progress
file (benchmark/locks.py) and :meth:`GridReporter.poll` reads those, so the bar is fed from
the run store in both cases.
"""
from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from benchmark.locks import read_progress


def suite_progress(**kwargs) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        **kwargs,
    )


class StepProgress(Callback):
    """Advances the suite bar by one per training step (updates every ``every`` steps)."""

    def __init__(self, progress: Progress, task_id, every: int = 10):
        self.progress, self.task_id, self.every = progress, task_id, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % self.every == 0:  # batches are iterations (trainer.global_step counts optimiser steps)
            self.progress.advance(self.task_id, self.every)


class IterationReport(Callback):
    """Calls ``report(iteration)`` every ``every`` iterations (0 during preparatory stages)."""

    def __init__(self, report, every: int = 10):
        self.report, self.every = report, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % self.every == 0:
            self.report(max(pl_module.iteration, 0))


class GridReporter:
    """The suite's bar plus one line per run as it ends. ``summarize(job, outcome)`` formats
    the line of a run that finished or failed."""

    def __init__(self, suite: str, jobs, suite_dir, summarize, parallel: bool = False):
        self.suite, self.jobs, self.suite_dir, self.summarize = suite, list(jobs), suite_dir, summarize
        self.parallel = parallel
        self.steps = {j.run_id: j.steps for j in self.jobs}
        self.reached: dict[str, int] = {}
        self.running: set[str] = set()
        self.ended: dict[str, dict] = {}
        self.progress = suite_progress()
        self.bar = None
        self._last_poll = 0.0

    def __enter__(self):
        self.progress.__enter__()
        self.bar = self.progress.add_task(self.suite, total=sum(self.steps.values()) or 1)
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def print(self, message: str) -> None:
        self.progress.console.print(message, highlight=False, soft_wrap=True)

    def _update(self) -> None:
        done = sum(min(self.reached.get(r, 0), s) for r, s in self.steps.items())
        n = len(self.jobs)
        running = ", ".join(sorted(self.running)[:2]) + (" …" if len(self.running) > 2 else "")
        what = f"{len(self.running)} running" if self.parallel else running
        self.progress.update(self.bar, completed=done,
                             description=f"{self.suite} [{len(self.ended)}/{n} done{'; ' + what if what else ''}]")

    def started(self, job) -> None:
        if not self.parallel:
            self.running = {f"{job.label}"}
            self._update()

    def callback(self, job) -> Callback:
        """For runs in this process: advances the bar as the run iterates."""
        def report(step):
            self.reached[job.run_id] = step
            self._update()
        return IterationReport(report)

    def poll(self, every_s: float = 1.0) -> None:
        """Read the progress files of runs in other processes (at most every ``every_s``)."""
        now = time.monotonic()
        if now - self._last_poll < every_s:
            return
        self._last_poll = now
        self.running = set()
        for job in self.jobs:
            if job.run_id in self.ended:
                continue
            info = read_progress(self.suite_dir, job.run_id)
            if info is not None:
                self.running.add(job.label)
                self.reached[job.run_id] = int(info.get("step", 0))
        self._update()

    def done(self, job, outcome: dict) -> None:
        self.ended[job.run_id] = outcome
        self.reached[job.run_id] = self.steps[job.run_id]
        self.running.discard(job.label)
        self.print(self.summarize(job, outcome))
        self._update()
