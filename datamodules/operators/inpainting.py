"""Inpainting, y = m ⊙ x, with seeded hole masks (Survey A Fig 5: hole-to-image
ratio 0.25, taken from aSeqDIP [8]; original DIP inpainting, Ulyanov et al. 2018 §4).

The hole ratio is the fraction of *pixels* that are missing; a pixel is missing in all
channels at once. Masks are float ``(1, 1, H, W)`` with 1 = observed, 0 = hole.
"""
from __future__ import annotations

import math

import deepinv as dinv
import torch

from datamodules.operators.base import LinearOperator

MASK_TYPES = ("random", "box", "blocks")


class MaskOperator(LinearOperator, dinv.physics.Inpainting):
    """A = diag(m) for a binary mask m shared by all channels: self-adjoint, ‖A‖ = 1.

    Subclasses deepinv's ``Inpainting`` (a ``DecomposablePhysics``), so its closed-form
    ``prox_l2`` and ``A_dagger`` come for free; ``mask`` is a buffer.
    """

    def __init__(self, mask: torch.Tensor, channels: int):
        mask = _as_mask(mask)
        shape = (channels, *mask.shape[-2:])
        super().__init__(in_shape=shape, out_shape=shape, img_size=shape, mask=mask)

    def frobenius_sq(self, probes: int = 64) -> float:
        """‖diag(m)‖_F² = the number of observed entries (all channels)."""
        return float(self.mask.sum()) * self.in_shape[0]

    @property
    def hole_ratio(self) -> float:
        """Fraction of missing pixels."""
        return 1.0 - float(self.mask.mean())


def _as_mask(mask: torch.Tensor) -> torch.Tensor:
    mask = torch.as_tensor(mask)
    while mask.ndim < 4:
        mask = mask[None]
    if mask.shape[:2] != (1, 1):
        raise ValueError(f"mask must be (H, W) or (1, 1, H, W), got {tuple(mask.shape)}")
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must be binary (1 = observed, 0 = hole)")
    return mask.float()


def _check_ratio(hole_ratio: float) -> None:
    if not 0.0 <= hole_ratio < 1.0:
        raise ValueError(f"hole_ratio must be in [0, 1), got {hole_ratio}")


def random_pixel_mask(size: tuple[int, int], hole_ratio: float, seed: int) -> torch.Tensor:
    """Exactly ``round(hole_ratio·H·W)`` missing pixels, drawn uniformly without replacement."""
    _check_ratio(hole_ratio)
    H, W = size
    n_holes = round(hole_ratio * H * W)
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(H * W)
    mask[torch.randperm(H * W, generator=gen)[:n_holes]] = 0.0
    return mask.view(1, 1, H, W)


def box_mask(size: tuple[int, int], hole_ratio: float, seed: int) -> torch.Tensor:
    """One rectangular hole with the image's aspect ratio and area ≈ hole_ratio·H·W
    (e.g. 32×32 in a 64×64 image for 0.25, as DPS's 128×128 box in 256×256), placed
    uniformly at random (seeded) fully inside the image."""
    _check_ratio(hole_ratio)
    H, W = size
    h = min(H, round(math.sqrt(hole_ratio) * H))
    w = min(W, round(hole_ratio * H * W / h)) if h else 0
    gen = torch.Generator().manual_seed(seed)
    top = int(torch.randint(0, H - h + 1, (1,), generator=gen))
    left = int(torch.randint(0, W - w + 1, (1,), generator=gen))
    mask = torch.ones(1, 1, H, W)
    mask[..., top : top + h, left : left + w] = 0.0
    return mask


def block_mask(size: tuple[int, int], hole_ratio: float, seed: int, block_size: int = 8) -> torch.Tensor:
    """Missing square blocks: the image is tiled into ``block_size`` cells (edge cells
    cut) and cells are removed in a seeded random order until the missing area is
    closest to hole_ratio·H·W (exact when the block size divides the image)."""
    _check_ratio(hole_ratio)
    if block_size < 1:
        raise ValueError(f"block_size must be ≥ 1, got {block_size}")
    H, W = size
    gh, gw = math.ceil(H / block_size), math.ceil(W / block_size)
    rows = torch.tensor([min(block_size, H - i * block_size) for i in range(gh)])
    cols = torch.tensor([min(block_size, W - j * block_size) for j in range(gw)])
    areas = (rows[:, None] * cols[None, :]).flatten()
    order = torch.randperm(gh * gw, generator=torch.Generator().manual_seed(seed))
    removed = torch.cat([torch.zeros(1, dtype=areas.dtype), areas[order].cumsum(0)])
    n_cells = int((removed - hole_ratio * H * W).abs().argmin())
    cells = torch.ones(gh * gw)
    cells[order[:n_cells]] = 0.0
    mask = cells.view(1, 1, gh, gw).repeat_interleave(block_size, dim=-2).repeat_interleave(block_size, dim=-1)
    return mask[..., :H, :W].contiguous()


def make_mask(kind: str, size: tuple[int, int], hole_ratio: float, seed: int, block_size: int = 8) -> torch.Tensor:
    """Mask of type ``random`` (pixels), ``box`` (one hole) or ``blocks``."""
    if kind == "random":
        return random_pixel_mask(size, hole_ratio, seed)
    if kind == "box":
        return box_mask(size, hole_ratio, seed)
    if kind == "blocks":
        return block_mask(size, hole_ratio, seed, block_size)
    raise KeyError(f"unknown mask_type {kind!r}; valid: {', '.join(MASK_TYPES)}")
