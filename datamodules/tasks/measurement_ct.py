"""``measurement_ct``: a user's own measurement, a sinogram and its geometry, read from files (layouts: README
"Your own data"; the shared file handling: datamodules/sources/measurement_config.py)."""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from core.schema import ImageSize, NonNegativeFloat, PositiveFloat, PositiveInt
from datamodules.registry import register_dataset
from datamodules.sources.measurement_config import (
    GT_NAMES,
    SINOGRAM_NAMES,
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
    read_array,
    real_array,
    split_name,
)
from datamodules.task import ImageMetric, Task

# -- CT: a sinogram and its geometry ---------------------------------------------------------


@dataclass
class CTSinogramConfig(MeasurementFileConfig):
    """A post-log sinogram (line integrals), angles × detectors, and its 2D geometry. Lengths
    (pixel_size, detector_spacing, distances) are in one unit of your choice, e.g. mm; x is
    then the attenuation per that unit."""

    geometry: Literal["parallel", "fan"] | None = None  # required
    image_size: ImageSize | None = None  # required: the reconstruction grid is image_size² pixels
    pixel_size: PositiveFloat | None = None  # side of one pixel (default 1: lengths in pixels)
    detector_spacing: PositiveFloat | None = None  # required: detector bin width (fan: on the detector)
    n_detectors: PositiveInt | None = None  # checked against the sinogram's columns (default: the columns)
    source_origin: PositiveFloat | None = None  # fan: source to rotation centre (required for fan)
    origin_detector: PositiveFloat | None = None  # fan: rotation centre to detector (required for fan)
    angles: list[float] | None = None  # one angle per sinogram row; else equispaced (angle_start, angle_range)
    angle_start: float | None = None  # first angle (default 0)
    angle_range: PositiveFloat | None = None  # angles cover [start, start + range) (default 180° parallel, 360° fan)
    angle_unit: Literal["degrees", "radians"] | None = None  # default degrees
    transpose: bool | None = None  # the file holds detectors × angles (default false)
    projector: Literal["line", "strip", "linear"] | None = None  # ASTRA CPU projector (default strip; linear: parallel)
    normalise: bool | None = None  # scale y (and gt) so the FBP-type image peaks at 1 (default true)
    # unit: networks end in a sigmoid, x in [0, 1], as on the built-in CT tasks (default when normalise, the FBP-type
    # image then peaking at 1, and a given ground truth fits in [0, 1]) | signed: no output activation (default
    # otherwise). Measured on a real CT measurement brought in as a user would: vanilla DIP 27.0 dB with the sigmoid,
    # 23.9 dB with the linear output (issue 18).
    x_range: Literal["signed", "unit"] | None = None
    fbp_iterations: PositiveInt | None = None  # LSQR iterations of the "FBP" image for fan beam (default 10)
    noise_sigma: NonNegativeFloat | None = None  # noise std in the sinogram's units, if known (discrepancy rule)

    DEFAULTS: typing.ClassVar[dict] = {"pixel_size": 1.0, "angle_start": 0.0, "angle_unit": "degrees", "transpose": False,
                                       "projector": "strip", "normalise": True, "fbp_iterations": 10}


@dataclass
class LoadedCT:
    sinogram: np.ndarray  # (angles, detectors) float32
    geometry: typing.Any  # CTGeometry in ASTRA's pixel units
    pixel_size: float
    gt: np.ndarray | None  # (N, N) float32
    sha256: str = ""


def _ct_angles(cfg: CTSinogramConfig, n_rows: int, kind: str) -> np.ndarray:
    to_rad = math.pi / 180 if cfg.value("angle_unit") == "degrees" else 1.0
    if cfg.angles is not None:
        if len(cfg.angles) != n_rows:
            raise MeasurementFileError(f"dataset.angles has {len(cfg.angles)} entries but the sinogram has {n_rows} rows "
                                       "(angles): give one angle per row (or set transpose: true if the file is "
                                       "detectors × angles)")
        return np.asarray(cfg.angles, dtype=np.float64) * to_rad
    span = cfg.angle_range if cfg.angle_range is not None else (180.0 if kind == "parallel" else 360.0) * (
        1.0 if cfg.value("angle_unit") == "degrees" else math.pi / 180)
    return (cfg.value("angle_start") + span * np.arange(n_rows) / n_rows) * to_rad


def default_x_range(cfg: CTSinogramConfig, gt: torch.Tensor | None) -> tuple[str, str]:
    """The reconstruction's range and why: the CT family's convention (sigmoid output, x in [0, 1]) where the
    measurement is normalised so that the FBP-type image peaks at 1, unless the given ground truth exceeds 1 there."""
    if cfg.x_range is not None:
        return cfg.x_range, "given (dataset.x_range)"
    if not cfg.value("normalise"):
        return "signed", "normalise: false keeps the file's units, which [0, 1] need not hold"
    if gt is not None and float(gt.max()) > 1.0:
        return "signed", (f"the ground truth peaks at {float(gt.max()):.3g} × the FBP-type image's peak: a sigmoid "
                          "output could not reach it")
    return "unit", "CT family convention: sigmoid output, x in [0, 1] (FBP-type image scaled to peak at 1)"


@register_loader(CTSinogramConfig)
def _load_ct(cfg: CTSinogramConfig) -> LoadedCT:
    from datamodules.operators.ct import CTGeometry

    path = split_name(cfg.file)[0]
    sino = real_array(read_array(cfg.file, "sinogram", SINOGRAM_NAMES), path, "sinogram", (2,))
    if cfg.value("transpose"):
        sino = sino.T
    n_angles, n_det = sino.shape
    kind = need(cfg, "geometry", "beam geometry (parallel or fan)")
    n = need(cfg, "image_size", "reconstruction grid size (image_size: N for N×N pixels)")
    spacing = need(cfg, "detector_spacing", "detector bin width (detector_spacing, in the unit of pixel_size)")
    pixel = cfg.value("pixel_size")
    if cfg.n_detectors is not None and cfg.n_detectors != n_det:
        hint = " (the file looks like detectors × angles: set transpose: true)" if cfg.n_detectors == n_angles else ""
        raise MeasurementFileError(f"the sinogram {path.name} has {n_angles} angles × {n_det} detectors but the geometry says "
                                   f"n_detectors = {cfg.n_detectors}{hint}")
    if np.abs(sino).max() == 0:
        raise MeasurementFileError(f"{path}: the sinogram is zero everywhere")
    negative, positive = float(-sino[sino < 0].sum()), float(sino[sino > 0].sum())
    if negative > positive:  # noise makes some values negative, never most of the mass
        raise MeasurementFileError(f"{path}: {negative / (negative + positive):.0%} of the sinogram's mass is negative, but "
                                   "post-log line integrals are >= 0: the sign is flipped (multiply it by -1) or the data "
                                   "are not post-log (take -log(I / I0) first)")
    angles = _ct_angles(cfg, n_angles, kind)
    projector = cfg.value("projector")
    if kind == "fan":
        s = need(cfg, "source_origin", "source-to-centre distance (source_origin)") / pixel
        d = need(cfg, "origin_detector", "centre-to-detector distance (origin_detector)") / pixel
        if s <= n / math.sqrt(2):
            raise MeasurementFileError(
                f"source_origin = {s * pixel:g} puts the source inside the {n}×{n} image of pixel size {pixel:g} "
                f"(half diagonal {n * pixel / math.sqrt(2):g}): check source_origin, image_size and pixel_size")
    else:
        s = d = 0.0
        for key in ("source_origin", "origin_detector"):
            if getattr(cfg, key) is not None:
                raise MeasurementFileError(f"dataset.{key} is a fan-beam distance but geometry = parallel")
    try:
        geom = CTGeometry(kind, n, tuple(float(a) for a in angles), n_det, spacing / pixel, s, d, projector)
    except ValueError as exc:
        raise MeasurementFileError(f"the CT geometry is invalid: {exc}") from exc
    _check_ray_coverage(sino, geom, pixel, path)
    gt = None
    if cfg.gt is not None:
        gt_path = split_name(cfg.gt)[0]
        gt = real_array(read_array(cfg.gt, "ground truth", GT_NAMES), gt_path, "ground truth", (2,))
        if gt.shape != (n, n):
            raise MeasurementFileError(f"{gt_path}: the ground truth is {gt.shape[0]}×{gt.shape[1]} but image_size = {n}: "
                                       f"give it on the {n}×{n} reconstruction grid (or change image_size)")
        gt = gt.astype(np.float32)
    return LoadedCT(sino.astype(np.float32), geom, float(pixel), gt)


def _check_ray_coverage(sino: np.ndarray, geom, pixel: float, path: Path) -> None:
    """Detector columns whose rays miss the image's circumscribed circle cannot see the
    object: signal there means the geometry does not describe this sinogram."""
    n_det = geom.n_detectors
    u = (np.arange(n_det) - (n_det - 1) / 2) * geom.detector_spacing  # bin centres, pixels
    if geom.kind == "fan":
        s, d = geom.source_origin, geom.origin_detector
        distance = np.abs(u) * s / np.sqrt((s + d) ** 2 + u**2)
    else:
        distance = np.abs(u)
    outside = distance > geom.image_size / math.sqrt(2) + 1.0
    if not outside.any():
        return
    peak = float(np.abs(sino).max())
    stray = float(np.abs(sino[:, outside]).max())
    if stray > 0.05 * peak:
        fov = geom.image_size * pixel
        raise MeasurementFileError(
            f"{path.name}: {int(outside.sum())} of {n_det} detector columns have rays that miss the {geom.image_size}×"
            f"{geom.image_size} image (field of view {fov:g}) yet carry up to {stray / peak:.0%} of the sinogram's "
            "maximum: the geometry does not match the sinogram (check image_size, pixel_size, detector_spacing"
            + (", source_origin, origin_detector)" if geom.kind == "fan" else ")"))


def _circle(size: int) -> torch.Tensor:
    from datamodules.tasks.ct import circle_mask

    return circle_mask(size)


@register_dataset("measurement_ct", CTSinogramConfig,
                  "your own CT sinogram (.npy/.npz/.h5/.tif) with its parallel/fan-beam geometry (YAML beside it)",
                  capabilities={"linear", "fbp", "ct", "real_image"})
def build_measurement_ct(cfg: CTSinogramConfig) -> Task:
    from datamodules.operators.ct import CTOperator, fbp_image
    from datamodules.tasks.ct import CIRCLE_PSNR

    require_file(cfg, "measurement_ct", "sinogram")
    data = load(cfg)
    geom = data.geometry
    op = CTOperator(geom, scale=data.pixel_size)
    y = torch.from_numpy(data.sinogram.copy()).reshape(1, *op.out_shape)
    with torch.no_grad():
        fbp, how = fbp_image(op, y, cfg.value("fbp_iterations"))
    circle = _circle(geom.image_size)
    scale = 1.0
    if cfg.value("normalise"):
        peak = float(fbp[circle].max())
        if not peak > 0:
            raise MeasurementFileError(f"the {how} image of {Path(cfg.file).name} has no positive value inside the image "
                                       "circle: check the sign of the sinogram (post-log line integrals are >= 0)")
        scale = 1.0 / peak
    y, fbp = y * scale, fbp * scale
    gt = None if data.gt is None else torch.from_numpy(data.gt)[None, None] * scale
    x_range, why = default_x_range(cfg, gt)
    info = {"x_range": x_range, "x_range_why": why,
            "geometry": geom.kind, "n_angles": geom.n_angles, "n_detectors": geom.n_detectors,
            "pixel_size": data.pixel_size, "x_scale": scale, "fbp_method": how, "operator_key": geom.key(),
            "file": cfg.file, "has_ground_truth": gt is not None}
    if cfg.noise_sigma is not None:
        info["noise_sigma"] = cfg.noise_sigma * scale
    return Task(
        name="measurement_ct",
        gt=gt,
        y=y,
        physics=op,
        degraded=fbp,
        metric=ImageMetric(data_range=None, mask=circle, description=CIRCLE_PSNR),
        provenance=(f"{file_label(cfg, 'sinogram')}: {geom.kind} beam, {geom.n_angles} angles × {geom.n_detectors} detectors, "
                    f"{geom.image_size}² grid, pixel size {data.pixel_size:g}, ASTRA {geom.projector} projector"
                    + (f", y scaled by {scale:.4g} (FBP-type image peaks at 1)" if scale != 1.0 else "")
                    + f"; {gt_label(cfg)}"),
        x_range=x_range,
        extras={"fbp": fbp},
        info=info,
    )
