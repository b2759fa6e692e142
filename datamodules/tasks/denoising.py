"""Gaussian denoising on natural images (Survey A Figs 1, 3, 6; original DIP):
y = x + η, η ~ N(0, σ²), σ given on the 0–255 scale."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from datamodules.operators import Identity
from datamodules.registry import register_dataset
from datamodules.schema import ImageSize, NonNegativeFloat, NonNegativeInt
from datamodules.sources.images import crop, load_image, to_grayscale
from datamodules.task import ImageMetric, Task


@dataclass
class NaturalImageConfig:
    """Which natural image, and which part of it (shared by the natural-image tasks)."""

    source: Literal["skimage", "cbsd68", "folder"] = "skimage"  # skimage: embedded photos
    root: str | None = None  # data folder for cbsd68/folder (default: see sources/paths.py)
    image: str | int = "astronaut"  # skimage name, CBSD68 index or file stem
    crop: ImageSize | None = 64  # square crop size in pixels; None = full image
    crop_at: Literal["center"] | list[NonNegativeInt] = "center"  # "center" or [top, left]
    grayscale: bool = False
    noise_seed: NonNegativeInt = 0  # seed of the measurement noise (fixed across DIP seeds)

    def __post_init__(self):
        if isinstance(self.crop_at, list) and len(self.crop_at) != 2:
            raise ValueError(f"crop_at must be 'center' or [top, left], got {self.crop_at}")
        if self.source == "folder" and not self.root:
            raise ValueError("source=folder needs root=/path/to/pngs")


def natural_image(cfg: NaturalImageConfig) -> tuple[torch.Tensor, str]:
    """Ground truth ``(1, C, H, W)`` in [0, 1] and its provenance label."""
    img, label = load_image(cfg.source, cfg.image, cfg.root)
    img = crop(img, cfg.crop, cfg.crop_at)
    if cfg.grayscale:
        img = to_grayscale(img)
    return img[None], label


def gaussian_noise(shape, sigma: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return sigma * torch.randn(shape, generator=gen)


@dataclass
class DenoisingConfig(NaturalImageConfig):
    sigma: NonNegativeFloat = 25.0  # noise standard deviation on the 0–255 scale


@register_dataset("denoising", DenoisingConfig, "Gaussian denoising of a natural image (real image, simulated noise)",
                  capabilities={"linear", "real_image", "natural_image"}, smoke_config={"crop": 16})
def build_denoising(cfg: DenoisingConfig) -> Task:
    gt, label = natural_image(cfg)
    sigma = cfg.sigma / 255.0
    y = gt + gaussian_noise(gt.shape, sigma, cfg.noise_seed)
    return Task(
        name="denoising",
        gt=gt,
        y=y,
        physics=Identity(gt.shape[1:]),
        degraded=y.clamp(0, 1),
        metric=ImageMetric(data_range=1.0, description="PSNR on the full image, data range 1"),
        provenance=f"{label}, simulated Gaussian noise σ={cfg.sigma:g}/255",
        info={"sigma": sigma},
    )
