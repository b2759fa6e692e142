"""Interface of classical baselines (FBP, TV, zero-filled, CG-SENSE, …)."""
from __future__ import annotations

import torch

from datamodules.task import Task


class Baseline:
    """A reconstruction without a network. ``reconstruct`` returns the image in the
    task's reconstruction space, shape ``task.gt.shape``. Iterative baselines may
    return a trace (list of ``{"step", "loss", "psnr"}`` rows) via ``self.trace``."""

    method_name: str = "baseline"

    def __init__(self, cfg, task: Task):
        self.cfg = cfg
        self.task = task
        self.trace: list[dict] = []

    def reconstruct(self) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
