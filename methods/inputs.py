"""Network inputs z (conventions.md §3): seeded noise, the FBP image, or the
normalised adjoint Aᵀy."""
from __future__ import annotations

import torch

from datamodules.task import Task


def network_input(kind: str, task: Task, channels: int, dist: str, scale: float, seed: int) -> torch.Tensor:
    """The fixed input z, shape ``(1, C, H, W)`` at the task's image size.

    noise/uniform: U[0, scale) with ``channels`` channels (original DIP: 32, 0.1);
    noise/gaussian: scale·N(0, 1) (Survey B handbook: 1 channel, 0.1);
    fbp: the task's FBP image (Survey B "FBP input"); adjoint: Aᵀy / max|Aᵀy|.
    """
    h, w = task.x_shape[-2:]
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        if dist == "uniform":
            return scale * torch.rand((1, channels, h, w), generator=gen)
        if dist == "gaussian":
            return scale * torch.randn((1, channels, h, w), generator=gen)
        raise ValueError(f"unknown method.input_dist {dist!r}; valid: uniform, gaussian")
    if kind == "fbp":
        if "fbp" not in task.extras:
            raise ValueError(f"task {task.name!r} has no FBP image; use method.input=noise or method.input=adjoint")
        return task.extras["fbp"].detach().clone()
    if kind == "adjoint":
        if not getattr(task.physics, "linear", False):
            raise ValueError(f"task {task.name!r} has a nonlinear operator (no adjoint); use method.input=noise")
        with torch.no_grad():
            a = task.physics.A_adjoint(task.y)
        return a / a.abs().max().clamp_min(1e-12)
    raise ValueError(f"unknown method.input {kind!r}; valid: noise, fbp, adjoint")
