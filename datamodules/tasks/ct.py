"""Sparse-view CT tasks.

``walnut`` — Survey B Table 2 (§6.1): the Walnut 1 μCT slice. ``source=real`` is the
published single-slice problem (real cone-beam data, 60 angles × 128 columns, 501²,
published matrix). ``source=simulated`` (default, CPU) simulates a fan-beam measurement
of the real slice (256² copy, resized to ``image_size``) with ASTRA's CPU projector:
60 angles over 360°, the scanner's source/detector distances, min(128, image_size)
detectors whose fan covers the image, line integrals in mm (as the real data), and
Gaussian noise of 1 % of mean |Ax|. PSNR inside the inscribed circle, data range =
GT max there.

``aapm`` — Survey A Fig 5: a 256² CT slice, parallel beam, post-log y = A x (I0 = 1, no
noise by default), 18 of 180 equispaced angles. The default slice is a real head CT
from the pydicom-data wheel; ``source=aapm`` reads AAPM/Mayo DICOM/IMA files.

Neither is in the default suite (walnut needs ../shared/data or a download; see
``datamodules/sources/walnut.py``). ``task.degraded`` and ``task.extras["fbp"]`` hold
the FBP-type image (``fbp_image``: ASTRA FBP for parallel beam, LSQR otherwise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from core.schema import ImageSize, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from datamodules.operators.ct import CTOperator, fan_geometry, fbp_image, parallel_geometry
from datamodules.operators.sparse import SparseMatrixOperator
from datamodules.registry import register_dataset
from datamodules.sources import walnut as walnut_src
from datamodules.sources.dicom import hu_to_unit, load_ct_slice
from datamodules.sources.paths import find_data_root
from datamodules.task import ImageMetric, Task

MU_WATER_PER_MM = 0.0193  # linear attenuation of water at ≈70 keV (for Poisson noise in physical units)


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize of ``(H, W)`` to ``size``²."""
    if tuple(img.shape) == (size, size):
        return img
    return F.interpolate(img[None, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0]


def circle_mask(size: int) -> torch.Tensor:
    """Pixels whose centre lies in the inscribed circle, ``(1, 1, size, size)`` bool."""
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    return (yy**2 + xx**2 <= (size / 2) ** 2)[None, None]


CIRCLE_PSNR = "PSNR inside the inscribed circle, data range = GT max there (Survey B)"


def _fbp_extras(op, y, iterations: int) -> tuple[torch.Tensor, str]:
    with torch.no_grad():
        return fbp_image(op, y, iterations)


@dataclass
class SimulatedCTConfig:
    """A measurement simulated on a real or synthetic slice with the walnut scanner's geometry."""

    image_size: ImageSize = 256  # simulated: the slice resized to this size
    # simulated: fan (full circle, walnut scanner proportions) | parallel (half circle)
    geometry: Literal["fan", "parallel"] = "fan"
    n_angles: PositiveInt = 60  # simulated
    n_detectors: PositiveInt | None = None  # simulated: None = min(128, image_size) (the real 128 columns, capped)
    projector: Literal["line", "strip", "linear"] = "strip"  # simulated: ASTRA CPU projector (linear: parallel only)
    noise: NonNegativeFloat = 0.01  # simulated: Gaussian noise std as a fraction of mean |Ax|
    noise_seed: NonNegativeInt = 0
    fbp_iterations: PositiveInt = 10  # LSQR iterations of the "FBP" image for fan beam and the real matrix

    def __post_init__(self):
        if self.geometry == "fan" and self.projector == "linear":
            raise ValueError("projector=linear is parallel-beam only (ASTRA CPU): use line or strip, "
                             "or geometry=parallel")


@dataclass
class WalnutConfig(SimulatedCTConfig):
    # simulated (real slice, simulated data) | real (Zenodo layout + published matrix)
    source: Literal["simulated", "real"] = "simulated"
    root: str | None = None  # walnut folder (default: $DIPBENCH_DATA/walnut, data/walnut, ../shared/data/walnut)
    real: walnut_src.WalnutLayout = field(default_factory=walnut_src.WalnutLayout)  # source=real only


def _simulated_walnut(cfg: WalnutConfig, folder) -> tuple:
    gt = resize(torch.from_numpy(walnut_src.load_gt_256(folder)), cfg.image_size).clamp_min(0)
    gt, y, op, info = simulate_walnut_scanner(gt, cfg)
    label = (f"real Walnut 1 slice (256² copy, resized to {cfg.image_size}²), {cfg.geometry}-beam measurement "
             f"{cfg.n_angles} angles × {info['n_detectors']} detectors simulated on real slice with ASTRA "
             f"({cfg.projector}), Gaussian noise {cfg.noise:g}·mean|Ax|")
    return gt, y, op, label, info


def simulate_walnut_scanner(gt: torch.Tensor, cfg: SimulatedCTConfig) -> tuple:
    """``gt`` (n × n, n = ``cfg.image_size``) measured with the walnut scanner's geometry:
    line integrals in mm, Gaussian noise of ``cfg.noise``·mean|Ax|. Returns (gt, y, op, info)."""
    n = cfg.image_size
    pixel_mm = walnut_src.FIELD_OF_VIEW_MM / n
    n_det = cfg.n_detectors or min(128, n)
    if cfg.geometry == "fan":
        angles = np.linspace(0, 2 * np.pi, cfg.n_angles, endpoint=False)
        geom = fan_geometry(n, angles, n_det, walnut_src.SOURCE_ORIGIN_MM / pixel_mm,
                            walnut_src.ORIGIN_DETECTOR_MM / pixel_mm, cfg.projector)
    else:
        geom = parallel_geometry(n, np.linspace(0, np.pi, cfg.n_angles, endpoint=False), n_det, cfg.projector)
    op = CTOperator(geom, scale=pixel_mm)  # line integrals in mm, as the real data
    gt = gt[None, None]
    clean = op.A(gt)
    sigma = cfg.noise * float(clean.abs().mean())
    gen = torch.Generator().manual_seed(cfg.noise_seed)
    y = clean + sigma * torch.randn(clean.shape, generator=gen)
    info = {"geometry": cfg.geometry, "n_angles": cfg.n_angles, "n_detectors": n_det, "pixel_mm": pixel_mm,
            "noise_sigma": sigma, "noise_fraction": cfg.noise, "operator_key": geom.key()}
    return gt, y, op, info


def _real_walnut(cfg: WalnutConfig, folder) -> tuple:
    data = walnut_src.load_real_walnut(folder, cfg.real)
    h, w = data.gt.shape
    op = SparseMatrixOperator(data.matrix, (1, h, w), (1, data.y.size))
    gt = torch.from_numpy(data.gt)[None, None]
    y = torch.from_numpy(data.y).reshape(1, 1, -1)
    return gt, y, op, data.label, {"m": int(data.y.size), "scale": cfg.real.scale}


@register_dataset("walnut", WalnutConfig,
                  "Walnut μCT slice, sparse-view (Survey B Table 2): real data or simulated on the real slice",
                  capabilities={"linear", "fbp", "ct", "real_image"}, smoke_config={"image_size": 32, "n_angles": 8})
def build_walnut(cfg: WalnutConfig) -> Task:
    folder = find_data_root("walnut", cfg.root, walnut_src.HOW_TO_GET)
    if cfg.source == "simulated":
        gt, y, op, label, info = _simulated_walnut(cfg, folder)
    else:
        gt, y, op, label, info = _real_walnut(cfg, folder)
    return scanner_task("walnut", gt, y, op, label, info, cfg.fbp_iterations)


def scanner_task(name: str, gt, y, op, label: str, info: dict, fbp_iterations: int) -> Task:
    """A walnut-scanner CT task: FBP-type image as degraded/extras, PSNR in the inscribed circle."""
    fbp, how = _fbp_extras(op, y, fbp_iterations)
    return Task(
        name=name,
        gt=gt,
        y=y,
        physics=op,
        degraded=fbp,
        metric=ImageMetric(data_range=None, mask=circle_mask(gt.shape[-1]), description=CIRCLE_PSNR),
        provenance=label,
        extras={"fbp": fbp},
        info={**info, "fbp_method": how, "fbp_iterations": fbp_iterations},
    )


@dataclass
class AAPMConfig:
    # embedded (real head CT in the pydicom-data wheel) | aapm (AAPM/Mayo DICOM/IMA folder)
    source: Literal["embedded", "aapm"] = "embedded"
    root: str | None = None  # aapm folder (default: $DIPBENCH_DATA/aapm, data/aapm, ../shared/data/aapm)
    image: str | int = 0  # aapm: index into the sorted file list, or a file name/stem
    image_size: ImageSize = 256
    n_views: PositiveInt = 18
    n_total_views: PositiveInt = 180  # candidate angles, equispaced over [0, π)
    view_selection: Literal["equispaced", "random"] = "equispaced"
    view_seed: NonNegativeInt = 0  # random view selection
    n_detectors: PositiveInt | None = None  # None = ⌈√2·image_size⌉ unit-spaced bins
    projector: Literal["line", "strip", "linear"] = "strip"  # ASTRA CPU parallel projector
    hu_max: PositiveFloat | None = None  # HU mapped to 1; None = the slice's maximum
    poisson_i0: PositiveFloat | None = None  # photons per ray for Poisson noise; None = noiseless post-log data
    noise_seed: NonNegativeInt = 0

    def __post_init__(self):
        if self.n_views > self.n_total_views:
            raise ValueError(f"n_views = {self.n_views} exceeds n_total_views = {self.n_total_views}")


def select_views(n_views: int, n_total: int, how: str, seed: int) -> np.ndarray:
    """Indices of the views kept out of ``n_total`` equispaced ones."""
    if not 0 < n_views <= n_total:
        raise ValueError(f"n_views must be in 1…{n_total}, got {n_views}")
    if how == "equispaced":
        return np.floor(np.arange(n_views) * n_total / n_views).astype(int)
    if how == "random":
        return np.sort(np.random.default_rng(seed).choice(n_total, n_views, replace=False))
    raise ValueError(f"unknown dataset.view_selection {how!r}; valid: equispaced, random")


def poisson_post_log(clean: torch.Tensor, i0: float, mu_scale: float, seed: int) -> torch.Tensor:
    """Post-log data from counts ~ Poisson(I0·exp(−c·Ax)), c converting A x to physical
    line integrals; zero counts are set to 1 before the log; returned in A x units."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.poisson(i0 * torch.exp(-mu_scale * clean.double()), generator=gen).clamp_min(1.0)
    return (-torch.log(counts / i0) / mu_scale).to(clean.dtype)


@register_dataset("aapm", AAPMConfig, "sparse-view parallel-beam CT of a real CT slice, 18 of 180 views (Survey A Fig 5)",
                  capabilities={"linear", "fbp", "ct", "real_image"},
                  smoke_config={"image_size": 32, "n_views": 6, "n_total_views": 30})
def build_aapm(cfg: AAPMConfig) -> Task:
    hu, spacing, label = load_ct_slice(cfg.source, cfg.image, cfg.root)
    x, norm = hu_to_unit(hu, cfg.hu_max)
    h0 = x.shape[0]
    gt = resize(torch.from_numpy(x), cfg.image_size).clamp(0, 1)[None, None]
    views = select_views(cfg.n_views, cfg.n_total_views, cfg.view_selection, cfg.view_seed)
    geom = parallel_geometry(cfg.image_size, views * np.pi / cfg.n_total_views, cfg.n_detectors, cfg.projector)
    op = CTOperator(geom)
    clean = op.A(gt)
    noise = "noiseless"
    if cfg.poisson_i0 is not None:
        if math.isnan(spacing):
            raise ValueError("Poisson noise needs the DICOM PixelSpacing to convert to physical line integrals")
        mu_scale = norm * MU_WATER_PER_MM * spacing * h0 / cfg.image_size  # x·(A units) → attenuation line integral
        y = poisson_post_log(clean, cfg.poisson_i0, mu_scale, cfg.noise_seed)
        noise = f"Poisson noise I0={cfg.poisson_i0:g}"
    else:
        y = clean
    fbp, how = _fbp_extras(op, y, 0)
    return Task(
        name="aapm",
        gt=gt,
        y=y,
        physics=op,
        degraded=fbp,
        metric=ImageMetric(data_range=1.0, description="PSNR on the full image, data range 1 (μ/μ_water scaled to [0, 1])"),
        provenance=(f"{label}, resized to {cfg.image_size}², parallel-beam post-log data simulated with ASTRA: "
                    f"{cfg.n_views} {cfg.view_selection} of {cfg.n_total_views} views, {noise}"),
        extras={"fbp": fbp},
        info={"views": views.tolist(), "n_detectors": geom.n_detectors, "hu_normaliser": norm, "fbp_method": how,
              "operator_key": geom.key()},
    )
