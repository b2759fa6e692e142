"""A rich progress bar with ETA over all iterations of a suite."""
from __future__ import annotations

from lightning.pytorch.callbacks import Callback
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def suite_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )


class StepProgress(Callback):
    """Advances the suite bar by one per training step (updates every ``every`` steps)."""

    def __init__(self, progress: Progress, task_id, every: int = 10):
        self.progress, self.task_id, self.every = progress, task_id, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % self.every == 0:  # batches are iterations (trainer.global_step counts optimiser steps)
            self.progress.advance(self.task_id, self.every)
