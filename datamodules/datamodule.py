"""Serve one measurement to ``Trainer.fit`` for a fixed number of iterations."""
from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset

from datamodules.task import Measurement, Task


class _SameBatch(Dataset):
    """The same (already built) batch ``length`` times: one epoch = the whole run, one
    batch = one iteration of the method, with no collation and no per-step loader cost."""

    def __init__(self, batch: dict, length: int):
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.batch


class SingleMeasurementDataModule(L.LightningDataModule):
    """A task as a LightningDataModule for a run of ``iterations`` iterations. The batch
    is ``{"y": y}``: the method sees only the measurement; the ground truth stays with
    the metric callbacks. The run length is this loader's length (``Trainer(max_epochs=1)``),
    so it counts the method's iterations, however many optimiser steps each one takes."""

    def __init__(self, task: Task | Measurement, iterations: int):
        super().__init__()
        if iterations < 1:
            raise ValueError(f"a run needs at least one iteration, got {iterations}")
        self.task, self.iterations = task, iterations

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_SameBatch({"y": self.task.y}, self.iterations), batch_size=None, shuffle=False, num_workers=0)
