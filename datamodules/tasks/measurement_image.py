"""``measurement_image``: a user's own measurement, a degraded image and its forward model, read from files (layouts: README
"Your own data"; the shared file handling: datamodules/sources/measurement_config.py)."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.schema import NonNegativeFloat
from datamodules.registry import register_dataset
from datamodules.sources.measurement_config import (
    GT_NAMES,
    IMAGE_NAMES,
    KERNEL_NAMES,
    MASK_NAMES,
    MeasurementFileConfig,
    file_label,
    gt_label,
    load,
    need,
    register_loader,
    require_file,
)
from datamodules.sources.measurement_files import (
    MeasurementFileError,
    binary_mask,
    read_array,
    read_image,
    real_array,
    split_name,
)
from datamodules.task import ImageMetric, Task

# -- images: a degraded image and its forward model ---------------------------------------------


@dataclass
class DegradedImageConfig(MeasurementFileConfig):
    """A degraded image (PNG/TIFF/NPY; 8/16-bit integers are scaled to [0, 1], floats are
    taken as they are) and the forward model that made it."""

    forward: Literal["denoising", "inpainting", "blur"] | None = None  # required
    sigma: NonNegativeFloat | None = None  # noise std on the 0–255 scale, if known (stopping rules, constrained DIP)
    mask: str | None = None  # inpainting: 1 = observed, 0 = missing (PNG/TIFF/NPY, the image's size)
    kernel: str | None = None  # blur: the PSF (NPY/TIFF/PNG, odd size), normalised to sum 1
    padding: Literal["reflect", "circular", "replicate", "constant"] | None = None  # blur boundary (default reflect)
    grayscale: bool | None = None  # convert a colour image (and ground truth) to grey (default false)

    PATH_KEYS: typing.ClassVar[tuple[str, ...]] = ("gt", "mask", "kernel")
    DEFAULTS: typing.ClassVar[dict] = {"padding": "reflect", "grayscale": False}


@dataclass
class LoadedImage:
    image: np.ndarray  # (C, H, W) float32
    mask: np.ndarray | None  # (H, W) bool
    kernel: np.ndarray | None  # (h, w) float32, sum 1
    gt: np.ndarray | None  # (C, H, W) float32
    sha256: str = ""


def _grey(a: np.ndarray) -> np.ndarray:
    if a.shape[0] == 1:
        return a
    return (np.array([0.299, 0.587, 0.114])[:, None, None] * a).sum(0, keepdims=True)


@register_loader(DegradedImageConfig)
def _load_image(cfg: DegradedImageConfig) -> LoadedImage:
    path = split_name(cfg.file)[0]
    forward = need(cfg, "forward", "forward model (forward: denoising, inpainting or blur)")
    image = read_image(cfg.file, "degraded image", IMAGE_NAMES)
    if image.min() < -0.5 or image.max() > 1.5:
        raise MeasurementFileError(f"{path}: the degraded image spans [{image.min():.4g}, {image.max():.4g}]; give values "
                                   "in [0, 1] (noise may go slightly outside), e.g. divide 8-bit values by 255")
    if cfg.value("grayscale"):
        image = _grey(image)
    c, h, w = image.shape
    if min(h, w) < 8:
        raise MeasurementFileError(f"{path}: the image is {h}×{w}; it needs at least 8×8 pixels")
    mask = kernel = None
    for key, needed in (("mask", "inpainting"), ("kernel", "blur")):
        if getattr(cfg, key) is not None and forward != needed:
            raise MeasurementFileError(f"dataset.{key} is for forward = {needed}, but forward = {forward}")
    if forward == "inpainting":
        spec = need(cfg, "mask", "inpainting mask file (mask: 1 = observed, 0 = missing)")
        mask_path = split_name(spec)[0]
        mask = binary_mask(read_array(spec, "inpainting mask", MASK_NAMES), mask_path, "inpainting mask")
        if mask.shape != (h, w):
            raise MeasurementFileError(f"{mask_path}: the inpainting mask is {'×'.join(map(str, mask.shape))} but the "
                                       f"image is {h}×{w}; give a mask of the image's size")
        if not mask.any():
            raise MeasurementFileError(f"{mask_path}: the inpainting mask observes no pixel (all 0)")
    if forward == "blur":
        spec = need(cfg, "kernel", "blur kernel file (kernel: the PSF)")
        kernel_path = split_name(spec)[0]
        kernel = read_array(spec, "blur kernel", KERNEL_NAMES)
        if kernel.ndim == 3 and kernel.shape[-1] in (3, 4) and kernel.dtype.kind in "ui":
            kernel = kernel[..., 0]
        kernel = real_array(kernel, kernel_path, "blur kernel", (2,))
        kh, kw = kernel.shape
        if kh % 2 == 0 or kw % 2 == 0:
            raise MeasurementFileError(f"{kernel_path}: the blur kernel is {kh}×{kw}; its sides must be odd (a centred PSF)")
        if kh // 2 >= h or kw // 2 >= w:
            raise MeasurementFileError(f"{kernel_path}: the blur kernel ({kh}×{kw}) is too large for the {h}×{w} image")
        if not kernel.sum() > 0:
            raise MeasurementFileError(f"{kernel_path}: the blur kernel sums to {kernel.sum():.4g}; it must be positive")
        kernel = (kernel / kernel.sum()).astype(np.float32)
    gt = None
    if cfg.gt is not None:
        gt_path = split_name(cfg.gt)[0]
        gt = read_image(cfg.gt, "ground truth", GT_NAMES)
        if cfg.value("grayscale"):
            gt = _grey(gt)
        if gt.shape != image.shape:
            raise MeasurementFileError(f"{gt_path}: the ground truth has shape (C, H, W) = {gt.shape}, the degraded image "
                                       f"{image.shape}; give the same size and channels (or set grayscale: true)")
        gt = gt.astype(np.float32)
    return LoadedImage(image.astype(np.float32), mask, kernel, gt)


@register_dataset("measurement_image", DegradedImageConfig,
                  "your own degraded image (PNG/TIFF/NPY) with its forward model: denoising, inpainting mask, blur kernel",
                  capabilities={"linear", "real_image", "natural_image"})
def build_measurement_image(cfg: DegradedImageConfig) -> Task:
    from datamodules.operators import Identity
    from datamodules.operators.blur import BlurOperator
    from datamodules.operators.inpainting import MaskOperator

    require_file(cfg, "measurement_image", "degraded image")
    data = load(cfg)
    image = torch.from_numpy(data.image.copy())[None]  # the loaded arrays stay cached: tasks get copies
    shape = tuple(image.shape[1:])
    forward = cfg.value("forward")
    extras, what = {}, ""
    if forward == "denoising":
        physics, y, what = Identity(shape), image, "denoising (A = I)"
    elif forward == "inpainting":
        mask = torch.from_numpy(data.mask)[None, None].float()
        physics = MaskOperator(mask, shape[0])
        y = physics.A(image)
        extras["mask"] = mask.bool()
        what = f"inpainting with mask {split_name(cfg.mask)[0].name} ({physics.hole_ratio:.1%} missing)"
    else:
        kernel = torch.from_numpy(data.kernel.copy())
        physics = BlurOperator(kernel, shape, cfg.value("padding"))
        y, what = image, f"blur with kernel {split_name(cfg.kernel)[0].name} ({cfg.value('padding')} boundary)"
        extras["kernel"] = kernel[None, None]
    info = {"forward": forward, "file": cfg.file, "has_ground_truth": cfg.gt is not None}
    if cfg.sigma is not None:
        info["sigma"] = cfg.sigma / 255.0
    gt = None if data.gt is None else torch.from_numpy(data.gt.copy())[None]
    noise = f", noise σ={cfg.sigma:g}/255" if cfg.sigma is not None else ""
    return Task(
        name="measurement_image",
        gt=gt,
        y=y,
        physics=physics,
        degraded=y.clamp(0, 1),
        metric=ImageMetric(data_range=1.0, description="PSNR on the full image, data range 1"),
        provenance=f"{file_label(cfg, 'image')}: {what}{noise}; {gt_label(cfg)}",
        extras=extras,
        info=info,
    )
