"""Network inputs z (docs/conventions.md §3): seeded noise, the FBP image, or the
normalised adjoint Aᵀy."""
from __future__ import annotations

import torch

from datamodules.task import Measurement


def network_input(kind: str, problem: Measurement, channels: int, dist: str, scale: float, seed: int) -> torch.Tensor:
    """The initial input z, shape ``(1, C, H, W)`` at the task's image size.

    noise/uniform: U[0, scale) with ``channels`` channels (original DIP: 32, 0.1);
    noise/gaussian: scale·N(0, 1) (Survey B handbook: 1 channel, 0.1);
    fbp: the task's FBP image (Survey B "FBP input"); adjoint: Aᵀy / max|Aᵀy|.
    (``kind`` and ``dist`` are validated by the config schema; fbp/adjoint need the task
    capabilities "fbp"/"linear", checked when a suite is expanded.)
    """
    h, w = problem.x_shape[-2:]
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        if dist == "uniform":
            return scale * torch.rand((1, channels, h, w), generator=gen)
        return scale * torch.randn((1, channels, h, w), generator=gen)
    if kind == "fbp":
        return problem.extras["fbp"].detach().clone()
    with torch.no_grad():
        a = problem.physics.A_adjoint(problem.y)
    return a / a.abs().max().clamp_min(1e-12)
