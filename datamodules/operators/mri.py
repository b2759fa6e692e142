"""Multi-coil Cartesian MRI (SENSE): y = M F S x (Survey A Fig 5 row 1; Pruessmann et al. 1999).

x is a complex image stored as 2 real channels ``(B, 2, H, W)`` (real, imaginary) so
the networks can output it; y is the masked k-space of every coil in fastMRI's
real-view layout ``(B, coils, H, W, 2)``. ``S`` multiplies by the coil sensitivity
maps, ``F`` is fastMRI's centred orthonormal 2D FFT (``fastmri.fft2c``, equal to
BART's ``fft -u``), ``M`` zeroes the k-space samples that were not acquired.
"""
from __future__ import annotations

import fastmri
import torch

from datamodules.operators.base import LinearOperator


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` -> fastMRI real view ``(B, 1, H, W, 2)``."""
    return x.permute(0, 2, 3, 1).unsqueeze(1)


def complex_to_channels(z: torch.Tensor) -> torch.Tensor:
    """fastMRI real view ``(B, H, W, 2)`` -> ``(B, 2, H, W)``."""
    return z.permute(0, 3, 1, 2)


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """|x| of a 2-channel complex image: ``(B, 2, H, W) -> (B, 1, H, W)``."""
    return x.pow(2).sum(1, keepdim=True).sqrt()


class MultiCoilMRI(LinearOperator):
    """SENSE forward model ``y_c = M F (S_c x)`` for each coil c.

    maps: complex ``(coils, H, W)`` sensitivities; mask: ``(H, W)`` of 0/1 (a Cartesian
    column mask expanded to the image, or any 2D sampling pattern). Both are buffers,
    so ``.to(device)`` moves them; they are cast to the input dtype on use, so the
    operator also runs in float64 (adjoint tests).
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor):
        if not torch.is_complex(maps) or maps.ndim != 3:
            raise ValueError(f"maps must be complex (coils, H, W), got {tuple(maps.shape)} {maps.dtype}")
        coils, h, w = maps.shape
        if tuple(mask.shape) != (h, w):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match the maps' image size {(h, w)}")
        super().__init__(in_shape=(2, h, w), out_shape=(coils, h, w, 2))
        self.register_buffer("maps", torch.view_as_real(maps.to(torch.complex64)).contiguous())
        self.register_buffer("mask", mask.to(torch.float32).contiguous())

    @property
    def coils(self) -> int:
        return self.maps.shape[0]

    def _mask(self, dtype) -> torch.Tensor:
        return self.mask.to(dtype)[None, None, :, :, None]

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        coil_images = fastmri.complex_mul(channels_to_complex(x), self.maps.to(x.dtype)[None])
        return fastmri.fft2c(coil_images) * self._mask(x.dtype)

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        coil_images = fastmri.ifft2c(y * self._mask(y.dtype))
        combined = fastmri.complex_mul(coil_images, fastmri.complex_conj(self.maps.to(y.dtype)[None])).sum(1)
        return complex_to_channels(combined)

    def maps_complex(self) -> torch.Tensor:
        """The sensitivity maps as a complex ``(coils, H, W)`` tensor."""
        return torch.view_as_complex(self.maps)


def sense_least_squares(
    physics: MultiCoilMRI, y: torch.Tensor, iterations: int = 30, tikhonov: float = 0.0, init: torch.Tensor | None = None
) -> torch.Tensor:
    """CG-SENSE (Pruessmann et al. 2001): ``iterations`` conjugate-gradient steps on the
    normal equations (AᴴA + λI) x = Aᴴy, started from 0 (deepinv's CG, no early exit)."""
    from deepinv.optim.linear import conjugate_gradient

    def normal(x):
        return physics.A_adjoint(physics.A(x)) + tikhonov * x

    return conjugate_gradient(normal, physics.A_adjoint(y), max_iter=iterations, tol=0.0, init=init)
