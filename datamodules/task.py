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
    gt: torch.Tensor | None  # None: a measurement without ground truth (no PSNR/SSIM; docs/conventions.md §11)
    y: torch.Tensor
    physics: torch.nn.Module
    degraded: torch.Tensor
    metric: ImageMetric
    provenance: str
    to_image: Callable[[torch.Tensor], torch.Tensor] = _identity
    x_range: str = "unit"
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        validate_task(self)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple((self.gt if self.gt is not None else self.degraded).shape[1:])

    @property
    def has_ground_truth(self) -> bool:
        return self.gt is not None

    def _gt(self, x: torch.Tensor) -> torch.Tensor:
        if self.gt is None:
            raise ValueError(f"task {self.name!r} has no ground truth: PSNR/SSIM cannot be computed "
                             "(check task.has_ground_truth first)")
        return self.to_image(self.gt.to(x.device))

    def measurement(self) -> Measurement:
        """The task without its ground truth (what methods receive)."""
        return Measurement(self.name, self.y, self.physics, self.x_shape, self.x_range, self.degraded, self.to_image,
                           dict(self.extras), dict(self.info))

    def psnr(self, x: torch.Tensor) -> float:
        return self.metric.psnr(self.to_image(x), self._gt(x))

    def ssim(self, x: torch.Tensor) -> float:
        return self.metric.ssim(self.to_image(x), self._gt(x))


class TaskError(ValueError):
    """The parts of a task do not fit together; the message says what to change."""


X_RANGES = ("unit", "signed")
# extras that live in the reconstruction space (same shape as x) or are one image-sized mask
_X_SHAPED_EXTRAS = ("fbp",)
_MASK_EXTRAS = ("support",)


def validate_task(task: Task) -> None:
    """Check a task when it is built (shapes, ranges, finiteness), so a wrong input fails
    at once with what to change instead of deep inside a run. Raises :class:`TaskError`."""
    where = f"task {task.name!r}"

    def shape(t) -> str:
        return "(" + ", ".join(str(int(n)) for n in t.shape) + ")"

    for key in ("y", "degraded"):
        if not isinstance(getattr(task, key), torch.Tensor):
            raise TaskError(f"{where}: {key} must be a torch.Tensor, got {type(getattr(task, key)).__name__}")
    x = task.degraded
    if x.ndim != 4 or x.shape[0] != 1:
        raise TaskError(f"{where}: the degraded image must be batched (1, C, H, W) in the reconstruction space, "
                        f"got shape {shape(x)}")
    hw = tuple(x.shape[-2:])
    if task.x_range not in X_RANGES:
        raise TaskError(f"{where}: x_range = {task.x_range!r}; valid: {', '.join(X_RANGES)}")
    for key, t in (("y", task.y), ("degraded", x)):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise TaskError(f"{where}: {key} has {bad} NaN/inf value(s) of {t.numel()}; replace or mask them")
    if task.gt is not None:
        gt = task.gt
        if not isinstance(gt, torch.Tensor):
            raise TaskError(f"{where}: the ground truth must be a torch.Tensor or None, got {type(gt).__name__}")
        if tuple(gt.shape) != tuple(x.shape):
            raise TaskError(f"{where}: the ground truth has shape {shape(gt)} but the reconstruction space is {shape(x)} "
                            f"(C, H, W = {', '.join(map(str, x.shape[1:]))}): give a ground truth of that size "
                            "(same image size and channels as the reconstruction), or none")
        if not bool(torch.isfinite(gt).all()):
            raise TaskError(f"{where}: the ground truth has NaN/inf values; replace them or give no ground truth")
        if task.x_range == "unit":
            low, high = float(gt.min()), float(gt.max())
            if low < -1e-6 or high > 1 + 1e-6:
                raise TaskError(
                    f"{where}: the ground truth spans [{low:.4g}, {high:.4g}] but x_range='unit' (networks end in a "
                    "sigmoid and output [0, 1]): rescale the ground truth (and the measurement) to [0, 1], or use a "
                    "signed range (no output activation)")
    for key in _X_SHAPED_EXTRAS:
        if key in task.extras and tuple(task.extras[key].shape) != tuple(x.shape):
            raise TaskError(f"{where}: extras[{key!r}] has shape {shape(task.extras[key])}, expected the reconstruction "
                            f"space's {shape(x)}")
    for key in _MASK_EXTRAS:
        if key in task.extras and tuple(task.extras[key].shape) != (1, 1, *hw):
            raise TaskError(f"{where}: extras[{key!r}] has shape {shape(task.extras[key])}, expected a mask "
                            f"(1, 1, {hw[0]}, {hw[1]})")
    mask = task.metric.mask
    if mask is not None and (mask.ndim != 4 or tuple(mask.shape[-2:]) != hw):
        raise TaskError(f"{where}: the metric's mask has shape {shape(mask)}, expected (1, 1, {hw[0]}, {hw[1]})")
    try:
        with torch.no_grad():
            ax = task.physics.A(x)
    except Exception as exc:  # report which shapes do not fit instead of a raw error from inside the operator
        raise TaskError(f"{where}: the operator cannot be applied to an image of the reconstruction space "
                        f"{shape(x)}: {type(exc).__name__}: {exc}") from exc
    if tuple(ax.shape) != tuple(task.y.shape):
        raise TaskError(f"{where}: the operator maps {shape(x)} to {shape(ax)} but the measurement y has shape "
                        f"{shape(task.y)}")
