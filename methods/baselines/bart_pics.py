"""BART ``pics`` with an ℓ1-wavelet penalty (compressed-sensing SENSE, Lustig et al.
2007; Uecker et al. 2015): min_x ½‖M F S x − y‖² + λ‖Ψx‖₁ with the task's own coil maps,
solved by BART (FISTA by default). A classical compressed-sensing reference for MRI.

k-space centring: before v1.0.00, ``pics`` modulated the k-space with ``fftmod`` where the
model needs ``ifftmod`` (BART commit 0636162e, "pics: use ifftmod on kspace (fixes
irregular matrix sizes)"). Such a ``pics`` (e.g. Debian's 0.8.00) fits ``y · m²`` instead
of ``y``, with ``m`` BART's fftmod modulation: a factor (−1)^(H/2 + W/2) for even sizes (its
image is −x when exactly one of H/2, W/2 is odd, e.g. 180 × 230) and a one-pixel shift
with a phase ramp along odd sizes. :func:`pics_kspace_correction` probes the installed
``pics`` once and, for an old one, the k-space is handed over as ``y · conj(m)²`` so that
its image solves our model ``y = M F S x`` (``fastmri.fft2c`` = BART's ``fft -u``)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from core.schema import NonNegativeFloat, PositiveInt
from datamodules.sources.bart_io import (
    BART_HOW_TO_INSTALL,
    BartCommandError,
    bart_executable,
    bart_version,
    require_bart,
    run_bart,
    to_bart,
)
from methods.baselines.base import Baseline
from methods.registry import register_method


@dataclass
class BartPicsConfig:
    regularization: NonNegativeFloat = 0.01  # λ of the wavelet ℓ1 penalty (in pics' internally scaled units)
    iterations: PositiveInt = 100
    options: str = ""  # extra pics options, e.g. "-m" (ADMM)


def bart_fftmod(n: int) -> np.ndarray:
    """BART's ``fftmod`` modulation along an axis of length ``n`` (num/fft.c, ``fftmod_phase``):
    exp(2πi (j − c/2) c/n) with c = n // 2; ``fftc`` = fftmod · FFT · fftmod."""
    c = n // 2
    return np.exp(2j * np.pi * (np.arange(n) - c / 2) * c / n)


def _fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


@cache
def _pics_fits_fftmod_squared(exe: str, version: str) -> bool:
    """Whether this ``pics`` (BART < 1.0) fits ``y · m²`` instead of ``y``: a one-coil, fully
    sampled probe of 6 × 8 (6/2 odd), where an old ``pics`` returns −x."""
    h, w = 6, 8
    x = (1.0 + np.outer(np.arange(h), np.ones(w)) / h + 0.5j * np.outer(np.ones(h), np.arange(w)) / w).astype(np.complex64)
    maps = np.ones((1, h, w), np.complex64)
    image = np.squeeze(run_bart("pics -S -l2 -r 0.0001 -i 20", to_bart(_fft2c(x)[None]), to_bart(maps)))
    error = {old: float(np.linalg.norm(image - (-x if old else x)) / np.linalg.norm(x)) for old in (False, True)}
    if min(error.values()) > 0.05:
        raise BartCommandError(f"BART {version}: `pics` follows neither known k-space centring convention "
                               f"(probe errors {error}); cannot use it as a baseline")
    return error[True] < error[False]


def pics_kspace_correction(height: int, width: int) -> np.ndarray | None:
    """The factor ``conj(m)²`` (``(H, W)``) to multiply the k-space with before the installed
    ``pics``, or None when it needs none (BART ≥ 1.0)."""
    if not _pics_fits_fftmod_squared(str(require_bart()), bart_version()):
        return None
    m = bart_fftmod(height)[:, None] * bart_fftmod(width)[None, :]
    return np.conj(m) ** 2


@register_method("bart_pics", BartPicsConfig, "BART pics, ℓ1-wavelet compressed-sensing SENSE (needs BART)",
                 "Lustig et al. 2007; BART", smoke_config={"iterations": 5})
class BartPics(Baseline):
    requires = frozenset({"mri_multicoil"})

    @classmethod
    def skip(cls, cfg: BartPicsConfig, task) -> str | None:
        if bart_executable() is None:
            return f"bart_pics needs the BART binary, which is not installed here: {BART_HOW_TO_INSTALL}"
        return super().skip(cfg, task)

    def reconstruct(self):
        physics = self.problem.physics
        command = f"pics -S -R W:3:0:{self.cfg.regularization:g} -i {self.cfg.iterations} {self.cfg.options}".strip()
        kspace = torch.view_as_complex(self.problem.y[0].detach().cpu().float().contiguous()).numpy()
        correction = pics_kspace_correction(*kspace.shape[-2:])
        if correction is not None:
            kspace = (kspace * correction[None]).astype(np.complex64)
        maps = physics.maps_complex().detach().cpu().numpy()
        image = np.squeeze(run_bart(command, to_bart(kspace), to_bart(maps))).astype(np.complex64)
        self.info = {"bart_command": command, "bart_kspace_correction": "conj(fftmod)^2 (BART < 1.0 pics)"
                     if correction is not None else "none"}
        x = torch.view_as_real(torch.from_numpy(image)).permute(2, 0, 1)[None]
        return x.to(self.problem.y.device, self.problem.y.dtype)
