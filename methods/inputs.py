"""Network inputs z (docs/conventions.md §3): seeded noise, the FBP image, the
normalised adjoint Aᵀy, or a reference image (Ref-G)."""
from __future__ import annotations

import torch

from datamodules.task import Measurement


def network_input(kind: str, problem: Measurement, channels: int, dist: str, scale: float, seed: int,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    """The initial input z, shape ``(1, C, H, W)`` at the task's image size (or ``size``).

    noise/uniform: U[0, scale) with ``channels`` channels (original DIP: 32, 0.1);
    noise/gaussian: scale·N(0, 1) (Survey B handbook: 1 channel, 0.1);
    fbp: the task's FBP image (Survey B "FBP input"); adjoint: Aᵀy / max|Aᵀy|;
    reference: the task's reference image ``extras["reference"]`` (Ref-G DIP, Zhao et al.
    2020, Survey A §III-B: a prior image of the same scene or a similar one as the input).
    ``size`` (noise only): a spatial size other than the image's, e.g. the deep decoder's
    low-resolution seed (:func:`input_size`).
    (``kind`` and ``dist`` are validated by the config schema; fbp/adjoint/reference need the
    task capabilities "fbp"/"linear"/"reference_image", checked when a suite is expanded.)
    """
    h, w = size or problem.x_shape[-2:]
    if size is not None and kind != "noise":
        raise ValueError(f"input {kind!r} is an image-size input; only input 'noise' can have another size {size}")
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        if dist == "uniform":
            return scale * torch.rand((1, channels, h, w), generator=gen)
        return scale * torch.randn((1, channels, h, w), generator=gen)
    if kind == "fbp":
        return problem.extras["fbp"].detach().clone()
    if kind == "reference":
        if "reference" not in problem.extras:
            raise ValueError(f"input 'reference' needs a task that provides a reference image; {problem.name!r} has "
                             "none (natural-image tasks: dataset.reference=<image name or path>)")
        ref = problem.extras["reference"].detach().clone().float()
        if tuple(ref.shape[1:]) != tuple(problem.x_shape):
            raise ValueError(f"the reference image has shape {tuple(ref.shape[1:])}, the task's images {problem.x_shape}")
        return ref
    with torch.no_grad():
        a = problem.physics.A_adjoint(problem.y)
    return a / a.abs().max().clamp_min(1e-12)


def input_size(net_cfg, x_shape: tuple[int, ...]) -> tuple[int, int]:
    """Spatial size of z for network ``net_cfg``: the image's, unless the network takes a
    smaller seed (the deep decoder: ``net_cfg.input_size(H, W)``)."""
    h, w = x_shape[-2:]
    size = getattr(net_cfg, "input_size", None)
    return tuple(size(h, w)) if callable(size) else (h, w)
