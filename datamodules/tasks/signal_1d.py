"""``signal_1d``: denoising of a synthetic 1-D signal (Survey A Fig. 4, A-F4: a square signal
denoised by a 1-D CNN trained with gradient descent, set against the NTK filter of eq. (6)).

y = x + η, η ~ N(0, σ²), A = I. The signal is generated from its config alone (no data
files): ``square`` (a square wave of ``periods`` periods between 0.2 and 0.8) or
``piecewise_smooth`` (a sine period, a ramp, a parabola and a constant, with jumps between
them, in [0.2, 0.9]).
A signal of length N is stored as a 1 × N image, tensors (1, C, 1, N) (docs/conventions.md
§17), so PSNR, traces, stopping rules and figures work unchanged; only networks that declare
themselves 1-D (``cnn1d``) run on it (capability ``signal_1d``). SSIM is scikit-image's on the
1-D array (window 7): a 2-D window does not fit a 1-pixel-high image."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from skimage.metrics import structural_similarity

from core.schema import NonNegativeFloat, NonNegativeInt, PositiveInt
from datamodules.operators import Identity
from datamodules.registry import register_dataset
from datamodules.task import ImageMetric, Task
from datamodules.tasks.denoising import gaussian_noise


@dataclass
class Signal1DConfig:
    signal: Literal["square", "piecewise_smooth"] = "square"
    length: PositiveInt = 256  # N samples
    periods: PositiveInt = 2  # square: periods of the square wave over the length
    sigma: NonNegativeFloat = 0.1  # noise standard deviation, in the signal's units (its range is within [0, 1])
    noise_seed: NonNegativeInt = 0  # seed of the measurement noise (fixed across DIP seeds)

    def __post_init__(self):
        if self.length < 16:
            raise ValueError(f"length = {self.length} is too short for a signal; use length >= 16")
        if self.signal == "square" and 2 * self.periods > self.length:
            raise ValueError(f"{self.periods} periods do not fit in {self.length} samples; use periods <= length / 2")


def square_wave(length: int, periods: int) -> torch.Tensor:
    """0.8 on the first half of each period, 0.2 on the second (length samples)."""
    t = torch.arange(length, dtype=torch.float64) * periods / length
    return torch.where(torch.frac(t) < 0.5, 0.8, 0.2).float()


def piecewise_smooth(length: int) -> torch.Tensor:
    """Four smooth pieces with jumps between them, values in [0.2, 0.9]."""
    t = torch.arange(length, dtype=torch.float64) / length
    pieces = [(t < 0.25, 0.5 + 0.3 * torch.sin(8 * math.pi * t)),
              ((t >= 0.25) & (t < 0.5), 0.2 + 1.2 * (t - 0.25)),
              ((t >= 0.5) & (t < 0.75), 0.9 - 8.0 * (t - 0.625) ** 2),
              (t >= 0.75, torch.full_like(t, 0.3))]
    x = torch.zeros_like(t)
    for where, values in pieces:
        x = torch.where(where, values, x)
    return x.float()


@dataclass
class SignalMetric(ImageMetric):
    """PSNR as for images (data range 1); SSIM on the 1-D signal (scikit-image, window 7)."""

    def ssim(self, x: torch.Tensor, gt: torch.Tensor) -> float:
        a = x.detach().double().cpu().reshape(-1).numpy()
        b = gt.detach().double().cpu().reshape(-1).numpy()
        return float(structural_similarity(a, b, data_range=self._range(gt), win_size=7))


@register_dataset("signal_1d", Signal1DConfig,
                  "Gaussian denoising of a synthetic 1-D signal (square wave | piecewise smooth), stored as a 1×N image",
                  capabilities={"linear", "real_image", "signal_1d"}, smoke_config={"length": 32})
def build_signal_1d(cfg: Signal1DConfig) -> Task:
    x = square_wave(cfg.length, cfg.periods) if cfg.signal == "square" else piecewise_smooth(cfg.length)
    gt = x.reshape(1, 1, 1, cfg.length)
    y = gt + gaussian_noise(gt.shape, cfg.sigma, cfg.noise_seed)
    what = f"square wave, {cfg.periods} periods" if cfg.signal == "square" else "piecewise-smooth signal"
    return Task(
        name="signal_1d",
        gt=gt,
        y=y,
        physics=Identity(gt.shape[1:]),
        degraded=y,
        metric=SignalMetric(data_range=1.0, description="PSNR on the whole 1-D signal, data range 1"),
        provenance=f"synthetic 1-D {what}, N = {cfg.length}, simulated Gaussian noise σ = {cfg.sigma:g}",
        x_range="signed",  # y leaves [0, 1]; no output activation (the NTK analysis of a plain CNN)
        info={"sigma": cfg.sigma},
    )
