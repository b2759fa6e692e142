"""Linear (non-blind) deblurring, y = k ∗ x: Gaussian and motion-blur kernels from
deepinv's generators, applied by deepinv's ``Blur`` convolution.

Boundary handling: the default ``reflect`` padding keeps y the size of x (the
convention of the DPS blur operators that Survey A's Fig 5 comparison inherits) and
deepinv's ``conv_transpose2d`` implements the exact adjoint of each padding mode
(checked by the adjoint dot-test in tests/test_natural_operators.py). ``circular``
(periodic, the FFT model), ``replicate`` and ``constant`` (zeros) are also exact.
"""
from __future__ import annotations

import deepinv as dinv
import torch
from deepinv.physics import functional as dF
from deepinv.physics.generator import MotionBlurGenerator

from datamodules.operators.base import LinearOperator

PADDINGS = ("reflect", "circular", "replicate", "constant")
KERNELS = ("gaussian", "motion")


class BlurOperator(LinearOperator, dinv.physics.Blur):
    """A x = k ∗ x (true convolution, the same kernel on every channel).

    ``kernel`` is ``(h, w)`` or ``(1, 1, h, w)`` with odd h, w (so the blur is
    centred); ``shape`` is ``(C, H, W)``. The kernel is the buffer ``filter`` and is
    cast to the input's dtype, so float64 dot-tests and gradient checks work.
    """

    def __init__(self, kernel: torch.Tensor, shape, padding: str = "reflect"):
        kernel = torch.as_tensor(kernel, dtype=torch.float32)
        while kernel.ndim < 4:
            kernel = kernel[None]
        if kernel.shape[:2] != (1, 1):
            raise ValueError(f"kernel must be (h, w) or (1, 1, h, w), got {tuple(kernel.shape)}")
        h, w = kernel.shape[-2:]
        if h % 2 == 0 or w % 2 == 0:
            raise ValueError(f"kernel size must be odd (centred blur), got {h}x{w}")
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; valid: {', '.join(PADDINGS)}")
        shape = tuple(shape)
        if h // 2 >= shape[-2] or w // 2 >= shape[-1]:
            raise ValueError(
                f"kernel {h}x{w} is too large for a {shape[-2]}x{shape[-1]} image; use a smaller kernel_size or a larger crop"
            )
        super().__init__(in_shape=shape, out_shape=shape, filter=kernel, padding=padding)

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return dF.conv2d(x, self.filter.to(x.dtype), padding=self.padding)

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        return dF.conv_transpose2d(y, self.filter.to(y.dtype), padding=self.padding)


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian PSF of ``size × size`` pixels, std ``sigma`` pixels, sum 1."""
    if sigma <= 0:
        raise ValueError(f"kernel_sigma must be > 0, got {sigma}")
    k = dF.gaussian_blur(psf_size=(size, size), sigma=(sigma, sigma))
    return k / k.sum()


def motion_kernel(size: int, seed: int, length_scale: float = 0.3, trajectory_std: float = 0.25) -> torch.Tensor:
    """Random camera-shake PSF, sum 1: deepinv's ``MotionBlurGenerator`` (trajectories
    from a Gaussian process with Matérn covariance, Schuler et al. 2016), seeded."""
    gen = MotionBlurGenerator((size, size), l=length_scale, sigma=trajectory_std)
    k = gen.step(batch_size=1, seed=seed)["filter"].float()
    return k / k.sum()


def make_kernel(kind: str, size: int, sigma: float = 2.0, seed: int = 0, length_scale: float = 0.3,
                trajectory_std: float = 0.25) -> torch.Tensor:
    """Blur kernel ``(1, 1, size, size)`` of type ``gaussian`` or ``motion``."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and ≥ 1, got {size}")
    if kind == "gaussian":
        return gaussian_kernel(size, sigma)
    if kind == "motion":
        return motion_kernel(size, seed, length_scale, trajectory_std)
    raise KeyError(f"unknown blur kernel {kind!r}; valid: {', '.join(KERNELS)}")
