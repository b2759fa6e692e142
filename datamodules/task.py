"""A single-measurement inverse problem: ground truth, measurement, operator, metric.

The PSNR convention is part of the task (docs/conventions.md §7), so every number the
benchmark stores says how it was measured. Methods never see the ground truth: they get
:meth:`Task.measurement`, a :class:`Measurement` without it; only the metric callbacks
hold the :class:`Task`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class ImageMetric:
    """How a reconstruction is scored against the ground truth.

    data_range: fixed range of the images, or ``None`` for "max of the ground truth
    inside the mask" (Survey B walnut convention). mask: boolean ``(1, 1, H, W)``
    region where PSNR is computed (``None`` = full image); SSIM is computed on the
    full image with both images multiplied by the mask.
    """

    data_range: float | None = 1.0
    mask: torch.Tensor | None = None
    description: str = "PSNR on the full image, data range 1"

    def _range(self, gt: torch.Tensor) -> float:
        if self.data_range is not None:
            return float(self.data_range)
        region = gt if self.mask is None else gt[self.mask.expand_as(gt)]
        return float(region.max())

    def psnr(self, x: torch.Tensor, gt: torch.Tensor) -> float:
        data_range = self._range(gt)
        if self.mask is not None:
            m = self.mask.to(x.device).expand_as(x)
            x, gt = x[m], gt[m]
        return float(peak_signal_noise_ratio(x, gt, data_range=data_range))

    def ssim(self, x: torch.Tensor, gt: torch.Tensor) -> float:
        data_range = self._range(gt)
        if self.mask is not None:
            m = self.mask.to(x.device, x.dtype)
            x, gt = x * m, gt * m
        return float(structural_similarity_index_measure(x.float(), gt.float(), data_range=data_range))


@dataclass(frozen=True)
class Measurement:
    """What a reconstruction method may see of a task: the measurement ``y``, the
    operator, the image space (shape, range, display map) and measurement-side extras
    (FBP image, sampling mask, blur kernel). No ground truth, no metric."""

    name: str
    y: torch.Tensor
    physics: torch.nn.Module
    x_shape: tuple[int, ...]
    x_range: str
    degraded: torch.Tensor
    to_image: Callable[[torch.Tensor], torch.Tensor]
    extras: dict[str, torch.Tensor]
    info: dict


@dataclass
class Task:
    """One measurement to reconstruct from.

    All tensors are batched ``(1, C, H, W)`` in the reconstruction space ``x`` (the
    space the networks output; complex MR images are 2 real channels). ``to_image``
    maps that space to the displayed/scored image (identity, or the magnitude).
    ``degraded`` is the classical image shown next to the results (the noisy image,
    the masked image, FBP, zero-filled). ``provenance`` says what is real and what is
    simulated; it is printed in every table and figure. ``x_range`` is "unit" when
    x lies in [0, 1] (networks end in a sigmoid) or "signed" (no output activation,
    e.g. complex MR images as real/imaginary channels).
    """

    name: str
    gt: torch.Tensor
    y: torch.Tensor
    physics: torch.nn.Module
    degraded: torch.Tensor
    metric: ImageMetric
    provenance: str
    to_image: Callable[[torch.Tensor], torch.Tensor] = _identity
    x_range: str = "unit"
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.gt.shape[1:])

    def measurement(self) -> Measurement:
        """The task without its ground truth (what methods receive)."""
        return Measurement(self.name, self.y, self.physics, self.x_shape, self.x_range, self.degraded, self.to_image,
                           dict(self.extras), dict(self.info))

    def psnr(self, x: torch.Tensor) -> float:
        return self.metric.psnr(self.to_image(x), self.to_image(self.gt.to(x.device)))

    def ssim(self, x: torch.Tensor) -> float:
        return self.metric.ssim(self.to_image(x), self.to_image(self.gt.to(x.device)))
