"""Serve one measurement to ``Trainer.fit`` forever, with no per-step loader cost."""
from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from datamodules.task import Task


class _SameBatchForever(IterableDataset):
    """Yields the same (already built) batch at every step; the run length is set by
    ``Trainer(max_steps=N)``, so there are no epochs and no collation."""

    def __init__(self, batch: dict):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


class SingleMeasurementDataModule(L.LightningDataModule):
    """A :class:`Task` as a LightningDataModule. The batch is ``{"y": y}``: the
    method sees only the measurement; ground truth stays with the task for the
    metric callbacks."""

    def __init__(self, task: Task):
        super().__init__()
        self.task = task

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_SameBatchForever({"y": self.task.y}), batch_size=None, num_workers=0)
