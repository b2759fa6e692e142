"""4× accelerated multi-coil MRI (Survey A Fig 1 right, Fig 5 row 1): fastMRI knee,
15 coils, 320² crop, Cartesian column masks, BART (ESPIRiT) sensitivity maps.

Model: y = M F S x (:class:`MultiCoilMRI`), x complex as 2 channels. Sources:

* ``embedded`` (default, offline): a real MR image from a PyPI wheel with simulated
  smooth coil maps, simulated k-space and noise (semi-synthetic).
* ``fastmri``: a real fastMRI multi-coil ``.h5`` slice. The coil images are centre
  cropped to ``crop``² in the image domain (as fastMRI's ``reconstruction_rss``) and
  transformed back, then retrospectively undersampled; maps by ``bart ecalib`` from the
  undersampled k-space; ground truth = the maps' coil combination Σ S̄_c F⁻¹ k_c of the
  fully sampled cropped k-space.
* ``bart_brain``: real 8-coil brain k-space measured with undersampling (BART workshop
  data); maps by ecalib; ground truth = magnitude of BART's reference reconstruction from
  the fully sampled data (first map set), see :func:`_bart_brain`.

Scaling: y and x_GT are multiplied by one scalar so that the zero-filled image has
max |Aᴴy| = 1 (a measurement-only choice; PSNR is unaffected).

Coil support (``support``; on by default for measured data): ESPIRiT maps are zero where
ecalib finds no consistent coil signal, so there y says nothing about x and a DIP invents
structure. With ``support=coils`` the task gives ``extras["support"]`` (Σ_c |S_c|² above
1e-3 of its maximum): every DIP's output is multiplied by it (methods/base.py) and PSNR/SSIM
are computed inside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.schema import ImageSize, NonNegativeFloat, NonNegativeInt, PositiveInt, Probability
from datamodules.operators.mri import MultiCoilMRI, magnitude, sense_least_squares
from datamodules.registry import register_dataset
from datamodules.sources.paths import find_data_root
from datamodules.task import ImageMetric, Task

MASK_FUNCTIONS = ("equispaced", "random")
BART_BRAIN_HOW_TO_GET = (
    "The real BART brain k-space (bart_brain_ksp.{cfl,hdr}, bart_brain_img.{cfl,hdr}) comes from "
    "github.com/mrirecon/bart-workshop, folder ismrm2016/pics-brain (files ksp and img, renamed); "
    "put them in a folder and pass dataset.root=/that/folder."
)


@dataclass
class FastMRIKneeConfig:
    # embedded (semi-synthetic, offline) | fastmri (.h5) | bart_brain (real, pre-undersampled)
    source: Literal["embedded", "fastmri", "bart_brain"] = "embedded"
    root: str | None = None  # fastmri: folder of .h5 files or one .h5 file; bart_brain: folder with bart_brain_ksp.cfl
    file: str | None = None  # fastmri: file name in root (default: first .h5 in name order)
    slice: int | None = None  # fastmri: slice index (default: middle slice; negative counts from the end)
    image: Literal["shoulder", "abdomen", "head_small"] = "shoulder"  # embedded (see sources/mr_images.py)
    image_size: ImageSize | None = None  # embedded: resize the image to this size before cropping (None = crop size)
    crop: ImageSize | None = 320  # centre crop of the image in pixels (fastMRI: 320); None or larger = whole image
    coils: PositiveInt | None = None  # keep the first N coils (None = all; embedded simulates 15)
    acceleration: PositiveInt = 4  # Cartesian undersampling factor (bart_brain: unused, its measured sampling is kept)
    center_fraction: Probability = 0.08  # fraction of fully sampled central k-space columns
    # equispaced (fastMRI EquispacedMaskFractionFunc) | random (RandomMaskFunc)
    mask_type: Literal["equispaced", "random"] = "equispaced"
    mask_seed: NonNegativeInt = 0
    # auto (simulated for embedded, bart otherwise) | bart | simulated (embedded only)
    coil_maps: Literal["auto", "bart", "simulated"] = "auto"
    ecalib_options: str = "-m1"  # options of `bart ecalib` (part of the map cache key)
    # embedded: std of each real/imag k-space component, image max = 1 (None: 0.01)
    noise_std: NonNegativeFloat | None = None
    noise_seed: NonNegativeInt = 0
    # coils: DIP output and metric restricted to the coil maps' support | off | auto (coils for measured data)
    support: Literal["auto", "coils", "off"] = "auto"

    def __post_init__(self):
        if self.source != "embedded" and (self.coil_maps == "simulated" or self.noise_std is not None):
            raise ValueError(f"source={self.source} is measured data: coil_maps=simulated and noise_std apply to "
                             "source=embedded only")


def cartesian_mask(height: int, width: int, acceleration: int, center_fraction: float, mask_type: str, seed: int):
    """fastMRI column mask (phase encoding along W), expanded to ``(H, W)``, and the number
    of fully sampled central columns."""
    from fastmri.data.subsample import EquispacedMaskFractionFunc, RandomMaskFunc

    if mask_type not in MASK_FUNCTIONS:
        raise ValueError(f"unknown mask_type {mask_type!r}; valid: {', '.join(MASK_FUNCTIONS)}")
    if round(width * center_fraction) * acceleration >= width:
        raise ValueError(
            f"center_fraction={center_fraction} keeps {round(width * center_fraction)} of {width} columns, which already "
            f"reaches {acceleration}x: lower dataset.center_fraction or dataset.acceleration (or use a larger crop)"
        )
    cls = EquispacedMaskFractionFunc if mask_type == "equispaced" else RandomMaskFunc
    columns, center_lines = cls([center_fraction], [acceleration])((1, height, width, 2), seed=seed)
    return columns.reshape(1, width).expand(height, width).contiguous(), int(center_lines)


def crop_kspace(kspace: np.ndarray, crop: int | None) -> np.ndarray:
    """Centre-crop multi-coil k-space ``(coils, H, W)`` in the image domain (fastMRI's
    320² convention) and return the k-space of the cropped coil images."""
    import fastmri
    from fastmri.data.transforms import complex_center_crop, tensor_to_complex_np, to_tensor

    if crop is None:
        return kspace
    h, w = kspace.shape[-2:]
    images = complex_center_crop(fastmri.ifft2c(to_tensor(kspace)), (min(crop, h), min(crop, w)))
    return tensor_to_complex_np(fastmri.fft2c(images)).astype(np.complex64)


def coil_combine(kspace: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Σ_c conj(S_c) F⁻¹ k_c: the SENSE coil combination (= Aᴴ with a full mask)."""
    physics = MultiCoilMRI(torch.from_numpy(maps), torch.ones(kspace.shape[-2:]))
    x = physics.A_adjoint(torch.view_as_real(torch.from_numpy(kspace))[None])
    return torch.view_as_complex(x[0].permute(1, 2, 0).contiguous()).numpy()


def _estimate_maps(cfg: FastMRIKneeConfig, y: np.ndarray, center_lines: int | None = None) -> tuple[np.ndarray, str, dict]:
    from datamodules.sources.bart_io import BartCommandError
    from datamodules.sources.coil_maps import ecalib_maps

    try:
        maps, cache = ecalib_maps(y, cfg.ecalib_options)
    except BartCommandError as err:
        hint = f" (the mask keeps {center_lines} fully sampled central columns)" if center_lines is not None else ""
        raise BartCommandError(
            f"{err}\nESPIRiT needs a fully sampled calibration region larger than its kernel (6x6 by default)"
            f"{hint}: increase dataset.center_fraction or dataset.crop, or set a smaller kernel with "
            "dataset.ecalib_options='-m1 -k4'."
        ) from err
    return maps, f"BART ecalib {cache['options']} maps", {"coil_maps": "bart", "ecalib_options": cache["options"],
                                                           "bart_version": cache["bart"], "coil_map_cache": cache["cache"]}


def _embedded(cfg: FastMRIKneeConfig):
    from datamodules.sources.coil_maps import simulated_maps
    from datamodules.sources.images import crop
    from datamodules.sources.mr_images import load_mr_image

    img, label = load_mr_image(cfg.image, cfg.image_size or cfg.crop)
    if cfg.crop is not None and cfg.crop < max(img.shape):
        img = crop(img[None], cfg.crop)[0]
    h, w = img.shape
    coils = cfg.coils or 15
    true_maps = simulated_maps(coils, h, w)
    mask, center = cartesian_mask(h, w, cfg.acceleration, cfg.center_fraction, cfg.mask_type, cfg.mask_seed)
    sigma = 0.01 if cfg.noise_std is None else cfg.noise_std
    x = torch.stack([img, torch.zeros_like(img)])[None]
    clean = MultiCoilMRI(torch.from_numpy(true_maps), torch.ones(h, w)).A(x)
    noise = sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(cfg.noise_seed))
    y = torch.view_as_complex(((clean + noise) * mask[None, None, :, :, None])[0].contiguous()).numpy()
    mode = "simulated" if cfg.coil_maps in ("auto", "simulated") else cfg.coil_maps
    if mode == "simulated":
        maps, maps_label, info = true_maps, "the simulated maps", {"coil_maps": "simulated"}
    else:
        maps, maps_label, info = _estimate_maps(cfg, y, center)
    provenance = (
        f"semi-synthetic: real MR image {label}, {h}x{w}, with {coils} simulated birdcage-like coil maps, "
        f"simulated k-space + Gaussian noise σ={sigma:g}, {cfg.acceleration}x {cfg.mask_type} Cartesian mask; "
        f"reconstructed with {maps_label}"
    )
    info.update(noise_std=sigma, center_lines=center, image=cfg.image)
    return img.to(torch.complex64).numpy(), y, mask, maps, provenance, info


def _fastmri(cfg: FastMRIKneeConfig):
    from datamodules.sources.fastmri_h5 import find_volume, read_slice

    sl = read_slice(find_volume(cfg.root, cfg.file), cfg.slice)
    full = crop_kspace(sl.kspace[: cfg.coils] if cfg.coils else sl.kspace, cfg.crop)
    h, w = full.shape[-2:]
    mask, center = cartesian_mask(h, w, cfg.acceleration, cfg.center_fraction, cfg.mask_type, cfg.mask_seed)
    y = full * mask.numpy()[None]
    maps, maps_label, info = _estimate_maps(cfg, y, center)
    provenance = (
        f"real fastMRI multi-coil k-space ({sl.path.name}, slice {sl.slice}/{sl.num_slices}, "
        f"{sl.attrs.get('acquisition', '?')}, {full.shape[0]} coils, {h}x{w} crop), retrospectively undersampled "
        f"{cfg.acceleration}x with a {cfg.mask_type} Cartesian mask; {maps_label}; "
        "GT = coil combination of the fully sampled data"
    )
    info.update(file=sl.path.name, slice=sl.slice, center_lines=center, acquisition=str(sl.attrs.get("acquisition", "")))
    return coil_combine(full, maps), y, mask, maps, provenance, info


def _bart_brain(cfg: FastMRIKneeConfig):
    """Real, already undersampled k-space; the mask is where data were acquired.

    GT: BART's reference reconstruction from the fully sampled k-space (first ESPIRiT map
    set). It was computed with other maps (BART v0.3, two sets) and in other units, so
    only its magnitude is used: its phase is taken from CG-SENSE on the measured data, and
    one real scale is fitted so that A(GT) matches the measured k-space in least squares.
    """
    from datamodules.sources.bart_io import read_cfl

    folder = find_data_root("mri", cfg.root, BART_BRAIN_HOW_TO_GET)
    ksp = read_cfl(folder / "bart_brain_ksp")  # [1, H, W, coils]
    ref = read_cfl(folder / "bart_brain_img")  # [1, H, W, 1, maps]
    k = np.ascontiguousarray(np.moveaxis(ksp[0], -1, 0))
    if cfg.coils:
        k = k[: cfg.coils]
    h, w = k.shape[-2:]
    if cfg.crop is not None and cfg.crop < max(h, w):
        raise ValueError(
            f"bart_brain k-space ({h}x{w}) is already undersampled and cannot be cropped in the image "
            "domain; use dataset.crop=null (or any crop >= the image size)"
        )
    mask = torch.from_numpy(np.abs(k).sum(0) > 0).float()
    maps, maps_label, info = _estimate_maps(cfg, k)
    physics = MultiCoilMRI(torch.from_numpy(maps), mask)
    y = torch.view_as_real(torch.from_numpy(k))[None]
    phase = torch.view_as_complex(sense_least_squares(physics, y, iterations=30)[0].permute(1, 2, 0).contiguous()).angle()
    gt = torch.from_numpy(np.abs(ref[0, :, :, 0, 0])) * torch.exp(1j * phase)
    a_gt = physics.A(torch.view_as_real(gt.to(torch.complex64)).permute(2, 0, 1)[None])
    scale = float((a_gt * y).sum() / (a_gt * a_gt).sum())
    residual = float((scale * a_gt - y).norm() / y.norm())
    provenance = (
        f"real 8-coil brain k-space (BART workshop, measured {1 / float(mask.mean()):.1f}x undersampling, {h}x{w}); "
        f"{maps_label}; GT = magnitude of BART's reference reconstruction from the fully sampled data"
    )
    info.update(gt_scale_fit_residual=residual, center_lines=None)
    return (scale * gt).to(torch.complex64).numpy(), k, mask, maps, provenance, info


SOURCES = {"embedded": _embedded, "fastmri": _fastmri, "bart_brain": _bart_brain}


def _metric_description(h: int, w: int) -> str:
    return (
        f"PSNR/SSIM of the magnitude |x| vs |x_GT| on the {h}x{w} crop, data range = max |x_GT| "
        "(fastMRI evaluate.py convention, i.e. both divided by the GT maximum; the reconstruction is not "
        "rescaled). SSIM: torchmetrics 11x11 Gaussian window (fastMRI uses a 7x7 uniform one)"
    )


def mri_task(name: str, gt: np.ndarray | None, y: np.ndarray, mask: torch.Tensor, maps: np.ndarray, provenance: str,
             info: dict, support: bool) -> Task:
    """The multi-coil task from complex numpy arrays: ``gt`` ``(H, W)`` (or None), ``y``
    ``(coils, H, W)``, ``maps`` ``(coils, H, W)``, ``mask`` ``(H, W)``; y (and gt) scaled so that
    max |Aᴴy| = 1; with ``support`` the coil support is ``extras["support"]`` and the metric's mask."""
    from datamodules.sources.coil_maps import coil_support

    physics = MultiCoilMRI(torch.from_numpy(np.ascontiguousarray(maps)), mask)
    y = torch.view_as_real(torch.from_numpy(np.ascontiguousarray(y)).to(torch.complex64))[None]
    scale = 1.0 / float(magnitude(physics.A_adjoint(y)).max())
    y = y * scale
    if gt is not None:
        gt = torch.view_as_real(torch.from_numpy(np.ascontiguousarray(gt)).to(torch.complex64)).permute(2, 0, 1)[None]
        gt = gt.contiguous() * scale
    h, w = mask.shape
    extras, region, where = {"mask": mask[None, None]}, None, ""
    if support:
        region = torch.from_numpy(coil_support(maps))[None, None]
        extras["support"] = region.float()
        where = f" inside the coil support ({float(region.float().mean()):.1%} of the pixels)"
        info["support_fraction"] = float(region.float().mean())
    info.update(shape=[h, w], coils=physics.coils, acceleration=float(mask.numel() / mask.sum()), scale=scale,
                support="coils" if support else "off")
    return Task(
        name=name,
        gt=gt,
        y=y,
        physics=physics,
        degraded=physics.A_adjoint(y),
        metric=ImageMetric(data_range=None, mask=region, description=_metric_description(h, w) + where),
        provenance=provenance,
        to_image=magnitude,
        x_range="signed",
        extras=extras,
        info=info,
    )


@register_dataset(
    "fastmri_knee",
    FastMRIKneeConfig,
    "multi-coil MRI y = M F S x, 4x Cartesian (fastMRI knee .h5 | semi-synthetic embedded MR image | real BART brain)",
    capabilities={"linear", "mri_multicoil", "complex_image"},
    smoke_config={"crop": 32, "coils": 4},
)
def build_mri(cfg: FastMRIKneeConfig) -> Task:
    gt, y, mask, maps, provenance, info = SOURCES[cfg.source](cfg)
    measured = cfg.source != "embedded"
    info.update(
        source=cfg.source,
        mask_type=cfg.mask_type if cfg.source != "bart_brain" else "measured",
        acceleration_nominal=cfg.acceleration if cfg.source != "bart_brain" else None,
    )
    support = cfg.support == "coils" or (cfg.support == "auto" and measured)
    return mri_task("fastmri_knee", gt, y, mask, maps, provenance, info, support)
