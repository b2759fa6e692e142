"""Synthetic ellipses for supervised pre-training (Survey B §5.1 eq 38, Fig. 8a; Barbano et al.
2022b): random-ellipse phantoms in the inscribed disk (the ``ct_calibration`` generator),
measured through a task's own operator with Gaussian noise of a fraction of mean |Ax|, and
reconstructed by the task's FBP-type image. A sample is ``{"fbp": A†y, "gt": x}``: the network
learns FBP → GT.

Phantom seeds start at :data:`SEED_OFFSET` so that no pre-training image is one of the
``ct_calibration`` phantoms (seeds 0, 1, …)."""
from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.tasks.ct_calibration import random_ellipses

SEED_OFFSET = 1_000_000  # phantom seed of sample i = SEED_OFFSET + data seed · 10⁶ + i (never a ct_calibration one)


def simulate_ellipses(physics, reconstruct: Callable[[torch.Tensor], torch.Tensor], size: int, count: int,
                      noise: float, seed: int, first: int = 0, ellipses: int = 12) -> dict[str, torch.Tensor]:
    """``count`` samples ``{"gt": (N, 1, n, n), "fbp": (N, 1, n, n)}``: phantom i (seed
    SEED_OFFSET + seed·10⁶ + first + i), y = A x + noise·mean|Ax|·ε (ε from a generator seeded
    the same way), fbp = ``reconstruct(y)``."""
    gts, fbps = [], []
    for i in range(first, first + count):
        phantom_seed = SEED_OFFSET + seed * 1_000_000 + i
        gt = random_ellipses(size, phantom_seed, ellipses)[None, None]
        with torch.no_grad():
            clean = physics.A(gt)
        gen = torch.Generator().manual_seed(phantom_seed)
        y = clean + noise * float(clean.abs().mean()) * torch.randn(clean.shape, generator=gen)
        gts.append(gt)
        fbps.append(reconstruct(y).reshape(gt.shape).float())
    return {"gt": torch.cat(gts), "fbp": torch.cat(fbps)}


class _Pairs(Dataset):
    def __init__(self, data: dict[str, torch.Tensor]):
        self.data = data

    def __len__(self) -> int:
        return len(self.data["gt"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"fbp": self.data["fbp"][i], "gt": self.data["gt"][i]}


class EllipsesDataModule(L.LightningDataModule):
    """Training and validation sets of simulated (FBP, GT) pairs; the training loader shuffles
    with a generator seeded by ``seed`` (no global RNG)."""

    def __init__(self, physics, reconstruct: Callable[[torch.Tensor], torch.Tensor], size: int, n_train: int,
                 n_val: int, noise: float, batch_size: int, seed: int = 0, ellipses: int = 12):
        super().__init__()
        if n_train < 1 or batch_size < 1:
            raise ValueError(f"the ellipses data set needs n_train >= 1 and batch_size >= 1, got {n_train}, {batch_size}")
        self.physics, self.reconstruct, self.size = physics, reconstruct, size
        self.n_train, self.n_val, self.noise, self.batch_size = n_train, n_val, noise, batch_size
        self.seed, self.ellipses = seed, ellipses
        self.train: dict | None = None
        self.val: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is None:
            sim = lambda first, count: simulate_ellipses(self.physics, self.reconstruct, self.size, count,  # noqa: E731
                                                         self.noise, self.seed, first, self.ellipses)
            self.train = sim(0, self.n_train)
            self.val = sim(self.n_train, self.n_val) if self.n_val else None

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(_Pairs(self.train), batch_size=self.batch_size, shuffle=True, generator=gen,
                          drop_last=self.n_train >= self.batch_size, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Pairs(self.val or {"gt": torch.zeros(0), "fbp": torch.zeros(0)}),
                          batch_size=self.batch_size, num_workers=0)
