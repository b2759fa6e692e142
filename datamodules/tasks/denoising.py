"""Gaussian denoising on natural images (Survey A Figs 1, 3, 6; original DIP):
y = x + η, η ~ N(0, σ²), σ given on the 0–255 scale; or salt-and-pepper (impulse) noise
(``noise: salt_pepper``, DOP: Survey A eqs 18–19)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import deepinv as dinv
import torch

from core.schema import ImageSize, NonNegativeFloat, NonNegativeInt, Probability
from datamodules.operators import Identity
from datamodules.registry import register_dataset
from datamodules.sources.images import _to_tensor, crop, load_image, skimage_shape, to_grayscale
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
    # Ref-G input (Survey A §III-B; Zhao et al. 2020): another image of the same source (name/index as
    # `image`) or a path to an image file, cut with the same crop box; extras["reference"]
    reference: str | int | None = None

    def __post_init__(self):
        if isinstance(self.crop_at, list) and len(self.crop_at) != 2:
            raise ValueError(f"crop_at must be 'center' or [top, left], got {self.crop_at}")
        if self.source == "folder" and not self.root:
            raise ValueError("source=folder needs root=/path/to/pngs")
        if self.source == "skimage":  # embedded: checked here, not in every run (a wrong name or crop failed them all)
            shape = skimage_shape(str(self.image))
            try:
                crop(torch.empty(0, *shape), self.crop, self.crop_at)
            except ValueError as exc:
                raise ValueError(f"{exc}; choose a smaller crop or another crop_at") from None


def natural_image(cfg: NaturalImageConfig) -> tuple[torch.Tensor, str]:
    """Ground truth ``(1, C, H, W)`` in [0, 1] and its provenance label."""
    img, label = load_image(cfg.source, cfg.image, cfg.root)
    img = crop(img, cfg.crop, cfg.crop_at)
    if cfg.grayscale:
        img = to_grayscale(img)
    return img[None], label


def reference_image(cfg: NaturalImageConfig, gt: torch.Tensor) -> tuple[dict, str]:
    """``({"reference": (1, C, H, W)}, label)`` for ``cfg.reference`` (``({}, "")`` if unset): an
    image file when it names one (or looks like a path), else another image of ``cfg.source``;
    cropped with the image's box (``crop_at``) to the image's size and channels."""
    ref = cfg.reference
    if ref is None:
        return {}, ""
    path = Path(str(ref))
    if isinstance(ref, str) and (path.exists() or "/" in ref or path.suffix):
        if not path.is_file():
            raise FileNotFoundError(f"dataset.reference = {ref!r}: no such image file (give a path to an image, or "
                                    f"the name of another image of source {cfg.source!r})")
        import imageio.v3 as iio

        img, label = _to_tensor(iio.imread(path)), str(path)
    else:
        img, label = load_image(cfg.source, ref, cfg.root)
    try:
        img = crop(img, list(gt.shape[-2:]), cfg.crop_at)
    except ValueError as exc:
        raise ValueError(f"dataset.reference = {ref!r} cannot be cut to the image's size: {exc}") from None
    img = to_grayscale(img) if gt.shape[1] == 1 else img.expand(gt.shape[1], -1, -1)
    if torch.equal(img[None], gt):
        raise ValueError(f"dataset.reference = {ref!r} is the ground truth itself; choose another image")
    return {"reference": img[None].contiguous()}, f"reference input {label}"


def with_reference(capabilities: set[str]):
    """Capabilities of a natural-image task: ``capabilities``, plus "reference_image" when
    ``dataset.reference`` is set."""
    caps = frozenset(capabilities)
    return lambda cfg: caps | ({"reference_image"} if cfg.reference is not None else frozenset())


def gaussian_noise(shape, sigma: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return sigma * torch.randn(shape, generator=gen)


def salt_pepper_noise(x: torch.Tensor, density: float, seed: int) -> torch.Tensor:
    """x with a fraction ``density`` of its entries (each channel independently) set to 0 or 1
    with equal odds: deepinv's ``SaltPepperNoise`` (as scikit-image's ``random_noise(mode="s&p",
    amount=density)``, which the DOP code uses), seeded by ``seed``."""
    noise = dinv.physics.SaltPepperNoise(p=density / 2, s=density / 2, rng=torch.Generator().manual_seed(seed))
    return noise(x)


def salt_pepper_mask(shape, density: float, seed: int) -> torch.Tensor:
    """The entries :func:`salt_pepper_noise` corrupts (bool, ``shape``): which entries flip does
    not depend on x, so it is read off a constant image of 1/2."""
    return salt_pepper_noise(torch.full(tuple(shape), 0.5), density, seed) != 0.5


@dataclass
class DenoisingConfig(NaturalImageConfig):
    # gaussian: y = x + N(0, σ²) | salt_pepper: a fraction `density` of the entries set to 0 or 1 (impulse noise;
    # DOP, You et al. 2020, Survey A eqs 18–19)
    noise: Literal["gaussian", "salt_pepper"] = "gaussian"
    sigma: NonNegativeFloat = 25.0  # noise standard deviation on the 0–255 scale (noise=gaussian only)
    density: Probability = 0.5  # fraction of corrupted entries (noise=salt_pepper only; DOP code default --nlevel 0.5)


@register_dataset("denoising", DenoisingConfig,
                  "Gaussian or salt-and-pepper denoising of a natural image (real image, simulated noise)",
                  capabilities=with_reference({"linear", "real_image", "natural_image"}), smoke_config={"crop": 16})
def build_denoising(cfg: DenoisingConfig) -> Task:
    gt, label = natural_image(cfg)
    sigma = cfg.sigma / 255.0
    if cfg.noise == "salt_pepper":
        y = salt_pepper_noise(gt, cfg.density, cfg.noise_seed)
        noise, info = f"simulated salt-and-pepper noise, density {cfg.density:g}", {"density": cfg.density}
    else:
        y = gt + gaussian_noise(gt.shape, sigma, cfg.noise_seed)
        noise, info = f"simulated Gaussian noise σ={cfg.sigma:g}/255", {"sigma": sigma}
    extras, ref_label = reference_image(cfg, gt)
    return Task(
        name="denoising",
        gt=gt,
        y=y,
        physics=Identity(gt.shape[1:]),
        degraded=y.clamp(0, 1),
        metric=ImageMetric(data_range=1.0, description="PSNR on the full image, data range 1"),
        provenance=f"{label}, {noise}" + (f", {ref_label}" if ref_label else ""),
        extras=extras,
        info=info,
    )
