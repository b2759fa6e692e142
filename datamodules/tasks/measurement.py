"""A user's own measurement, read from files: ``measurement_ct`` (a sinogram and its
geometry), ``measurement_mri`` (multi-coil k-space), ``measurement_image`` (a degraded
image and its forward model). The layouts are documented in the README ("Your own data").

Every dataset key may also come from a YAML file of settings, by default ``<stem>.yaml``
beside the measurement (``sino.npy`` → ``sino.yaml``); paths in it are relative to its
folder, and a key given both there and as ``dataset.<key>`` must agree. Files are read
and checked when the run config is resolved (shapes, dtypes, array names, geometry
against the sinogram, unreadable files), so a bad file fails before anything runs and no
run folder is written; the error names the file and what to change. ``sha256`` is filled
with a checksum of the files used, so the run id changes with their contents (a rerun of
a stored config whose files changed fails instead of mixing results).

The ground truth (``dataset.gt``) is optional: without it the task has ``gt=None`` and
no PSNR/SSIM. Measurements are real data of unknown provenance: provenance says
"user-supplied" with the file name and checksum.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from datamodules.registry import register_dataset
from datamodules.schema import ImageSize, NonNegativeFloat, PositiveFloat, PositiveInt
from datamodules.sources.measurement_files import (
    MeasurementFileError,
    binary_mask,
    complex_array,
    files_of,
    files_sha256,
    h5_datasets,
    pick_array,
    read_array,
    read_image,
    read_sidecar,
    real_array,
    sidecar_path,
    split_name,
)
from datamodules.sources.paths import MissingDataError
from datamodules.task import ImageMetric, Task

LAYOUTS = "see the README section 'Your own data' for the file layouts"
SINOGRAM_NAMES = ("sinogram", "sino", "y", "data")
KSPACE_NAMES = ("kspace", "ksp", "y", "data")
IMAGE_NAMES = ("image", "degraded", "y", "data")
GT_NAMES = ("gt", "ground_truth", "reference", "x", "image")
MASK_NAMES = ("mask", "pattern", "sampling_mask")
MAPS_NAMES = ("maps", "sens_maps", "sensitivity_maps", "coil_maps")
KERNEL_NAMES = ("kernel", "psf", "filter")


# -- the shared part: file, settings YAML, checksum --------------------------------------


@dataclass
class MeasurementFileConfig:
    """Keys shared by the measurement datasets. ``None`` means "from the settings YAML,
    else the documented default"."""

    file: str | None = None  # the measurement file; path#name picks an array in .npz/.h5
    gt: str | None = None  # optional ground truth / reference reconstruction (for PSNR); none: no PSNR
    settings: str | None = None  # YAML of dataset keys (default: <file stem>.yaml beside the file, if present)
    sha256: str | None = None  # filled when the files are read: their checksum (part of the run id)

    PATH_KEYS: typing.ClassVar[tuple[str, ...]] = ("gt",)
    DEFAULTS: typing.ClassVar[dict] = {}

    def __post_init__(self):
        if self.file is None:
            return  # `list` and the defaults need no file; build() says what to give
        self.file = _absolute(self.file)
        self._apply_settings()
        for key in self.PATH_KEYS:
            if getattr(self, key) is not None:
                setattr(self, key, _absolute(getattr(self, key)))
        loaded = load(self)
        if self.sha256 is not None and self.sha256 != loaded.sha256:
            raise MeasurementFileError(
                f"the files changed since this config was made (dataset.sha256 = {self.sha256}, now {loaded.sha256}): "
                "drop dataset.sha256 to accept the new contents (the run id changes)")
        self.sha256 = loaded.sha256

    def value(self, key: str):
        """The setting ``key``: given, else its documented default."""
        value = getattr(self, key)
        return self.DEFAULTS.get(key) if value is None else value

    def _apply_settings(self) -> None:
        """Fill unset keys from the settings YAML; a key set both ways must agree."""
        from benchmark.config import _coerce

        if self.settings is None:
            beside = sidecar_path(self.file)
            if not beside.is_file():
                return
            self.settings = str(beside)
        path = Path(_absolute(self.settings))
        if not path.is_file():
            raise MeasurementFileError(f"settings file {path} not found (dataset.settings)")
        self.settings = str(path)
        fields = {f.name: f for f in dataclasses.fields(self)}
        hints = typing.get_type_hints(type(self), include_extras=True)
        for key, raw in read_sidecar(path).items():
            if key not in fields or key in ("file", "settings", "sha256"):
                valid = ", ".join(k for k in fields if k not in ("file", "settings", "sha256"))
                raise MeasurementFileError(f"{path}: unknown key {key!r}; valid keys: {valid}")
            value = _coerce(raw, hints[key], f"{path}: {key}")
            if key in self.PATH_KEYS and value is not None:
                value = _absolute(value, path.parent)
            current = getattr(self, key)
            if current is None:
                setattr(self, key, value)
            elif (_absolute(current) if key in self.PATH_KEYS else current) != value:
                raise MeasurementFileError(f"dataset.{key} = {current!r} but {path} says {key}: {raw!r}; "
                                           "remove one of them")


def _absolute(spec: str, base: Path | None = None) -> str:
    """``spec`` (``path`` or ``path#name``) with an absolute path (relative to ``base`` or
    the working directory)."""
    path, name = split_name(str(spec))
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.resolve()) + (f"#{name}" if name else "")


_CACHE: OrderedDict = OrderedDict()  # loaded files, keyed by the config and the files' (mtime, size)


def load(cfg: MeasurementFileConfig):
    """The checked contents of ``cfg``'s files (cached: resolving the runs of a suite
    reads each file once)."""
    specs = [cfg.file] + [getattr(cfg, k) for k in cfg.PATH_KEYS if getattr(cfg, k) is not None]
    files = [p for spec in specs for p in files_of(spec)] + ([Path(cfg.settings)] if cfg.settings else [])
    stats = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else (str(p), None, None) for p in files)
    settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "sha256"}
    key = (type(cfg).__name__, repr(sorted(settings.items())), stats)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    loaded = LOADERS[type(cfg)](cfg)
    data_files = files[: len(files) - (1 if cfg.settings else 0)]  # the settings' values are in the config itself
    loaded.sha256 = files_sha256([p for p in data_files if p.is_file()])
    _CACHE[key] = loaded
    while len(_CACHE) > 4:
        _CACHE.popitem(last=False)
    return loaded


def _require_file(cfg: MeasurementFileConfig, name: str, what: str) -> None:
    if cfg.file is None:
        raise MissingDataError(f"{name}: dataset.file is not set: give the {what} file, e.g. --set dataset.file=/path/to/it "
                               f"({LAYOUTS})")


def _need(cfg, key: str, what: str) -> typing.Any:
    value = cfg.value(key)
    if value is None:
        beside = f" in {Path(cfg.settings).name}" if cfg.settings else f" in {sidecar_path(cfg.file).name} beside the file"
        raise MeasurementFileError(f"dataset.{key} is not set: give the {what}{beside} or as --set dataset.{key}=…")
    return value


def _label(cfg: MeasurementFileConfig, what: str) -> str:
    path, name = split_name(cfg.file)
    return f"user-supplied {what} {path.name}{'#' + name if name else ''} (sha256 {cfg.sha256 or '?'})"


def _gt_label(cfg: MeasurementFileConfig) -> str:
    return f"ground truth {split_name(cfg.gt)[0].name}" if cfg.gt else "no ground truth (no PSNR/SSIM)"


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
    x_range: Literal["signed", "unit"] | None = None  # signed: no output activation (default) | unit: sigmoid, x in [0, 1]
    fbp_iterations: PositiveInt | None = None  # LSQR iterations of the "FBP" image for fan beam (default 10)
    noise_sigma: NonNegativeFloat | None = None  # noise std in the sinogram's units, if known (discrepancy rule)

    DEFAULTS: typing.ClassVar[dict] = {"pixel_size": 1.0, "angle_start": 0.0, "angle_unit": "degrees", "transpose": False,
                                       "projector": "strip", "normalise": True, "x_range": "signed", "fbp_iterations": 10}


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


def _load_ct(cfg: CTSinogramConfig) -> LoadedCT:
    from datamodules.operators.ct import CTGeometry

    path = split_name(cfg.file)[0]
    sino = real_array(read_array(cfg.file, "sinogram", SINOGRAM_NAMES), path, "sinogram", (2,))
    if cfg.value("transpose"):
        sino = sino.T
    n_angles, n_det = sino.shape
    kind = _need(cfg, "geometry", "beam geometry (parallel or fan)")
    n = _need(cfg, "image_size", "reconstruction grid size (image_size: N for N×N pixels)")
    spacing = _need(cfg, "detector_spacing", "detector bin width (detector_spacing, in the unit of pixel_size)")
    pixel = cfg.value("pixel_size")
    if cfg.n_detectors is not None and cfg.n_detectors != n_det:
        hint = " (the file looks like detectors × angles: set transpose: true)" if cfg.n_detectors == n_angles else ""
        raise MeasurementFileError(f"the sinogram {path.name} has {n_angles} angles × {n_det} detectors but the geometry says "
                                   f"n_detectors = {cfg.n_detectors}{hint}")
    if np.abs(sino).max() == 0:
        raise MeasurementFileError(f"{path}: the sinogram is zero everywhere")
    angles = _ct_angles(cfg, n_angles, kind)
    projector = cfg.value("projector")
    if kind == "fan":
        s = _need(cfg, "source_origin", "source-to-centre distance (source_origin)") / pixel
        d = _need(cfg, "origin_detector", "centre-to-detector distance (origin_detector)") / pixel
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

    _require_file(cfg, "measurement_ct", "sinogram")
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
    info = {"geometry": geom.kind, "n_angles": geom.n_angles, "n_detectors": geom.n_detectors,
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
        provenance=(f"{_label(cfg, 'sinogram')}: {geom.kind} beam, {geom.n_angles} angles × {geom.n_detectors} detectors, "
                    f"{geom.image_size}² grid, pixel size {data.pixel_size:g}, ASTRA {geom.projector} projector"
                    + (f", y scaled by {scale:.4g} (FBP-type image peaks at 1)" if scale != 1.0 else "")
                    + f"; {_gt_label(cfg)}"),
        x_range=cfg.value("x_range"),
        extras={"fbp": fbp},
        info=info,
    )


# -- MRI: multi-coil k-space -------------------------------------------------------------------


@dataclass
class MRIKspaceConfig(MeasurementFileConfig):
    """Multi-coil Cartesian k-space, centred (DC in the middle, as fastMRI and BART store
    it): ``(coils, H, W)`` complex in .npy/.npz/.h5 (fastMRI ``kspace`` [slices, coils, H, W]
    too) or a BART .cfl/.hdr pair ``[H, W, 1, coils]``."""

    mask: str | None = None  # sampling mask (H, W) or columns (W,); default: the file's 'mask', else where k ≠ 0
    maps: str | None = None  # coil maps (coils, H, W) complex (BART [H, W, 1, coils]); default: BART ecalib
    slice: int | None = None  # 4-D k-space [slices, coils, H, W]: which slice (default: the middle one)
    ecalib_options: str | None = None  # options of `bart ecalib` when maps are estimated (default -m1)
    support: Literal["coils", "off"] | None = None  # restrict the DIP output and the metric to the coil support (default)
    # fit (default): |gt| with CG-SENSE's phase, times the real scale that best fits A(gt) to y | as_is: in y's units
    gt_scaling: Literal["fit", "as_is"] | None = None
    noise_std: NonNegativeFloat | None = None  # k-space noise std per real/imag component, if known

    PATH_KEYS: typing.ClassVar[tuple[str, ...]] = ("gt", "mask", "maps")
    DEFAULTS: typing.ClassVar[dict] = {"ecalib_options": "-m1", "support": "coils", "gt_scaling": "fit"}


@dataclass
class LoadedMRI:
    kspace: np.ndarray  # (coils, H, W) complex64, zero outside the mask
    mask: np.ndarray  # (H, W) float32
    mask_source: str
    maps: np.ndarray | None  # (coils, H, W) complex64
    gt: np.ndarray | None  # (H, W) complex64 (real references have zero imaginary part)
    slice: int | None
    dropped: int  # non-zero samples outside the given mask
    sha256: str = ""


def _bart_2d(a: np.ndarray, path, what: str, coil_axis: bool = True) -> np.ndarray:
    """A BART array [x, y, z, coils, maps, …] as ``(coils, H, W)`` (first map set): exactly
    two of x, y, z may be larger than 1."""
    a = a.reshape(a.shape + (1,) * max(0, 4 - a.ndim))
    if a.ndim > 4:
        if any(n > 1 for n in a.shape[5:]):
            raise MeasurementFileError(f"{path}: the {what} has BART dims {list(a.shape)}; beyond [x, y, z, coils, maps] "
                                       "every dimension must be 1 (one 2-D slice, one echo)")
        a = a[(slice(None),) * 4 + (0,) * (a.ndim - 4)]  # first map set
    spatial = [i for i in range(3) if a.shape[i] > 1]
    if len(spatial) != 2:
        raise MeasurementFileError(f"{path}: the {what} has BART dims {list(a.shape)}; expected a 2-D slice "
                                   "[H, W, 1, coils] (two of the first three dims > 1)")
    a = a.reshape([a.shape[i] for i in spatial] + [a.shape[3]])
    return np.ascontiguousarray(np.moveaxis(a, -1, 0))


def _read_kspace(cfg: MRIKspaceConfig) -> tuple[np.ndarray, int | None, np.ndarray | None]:
    """k-space ``(coils, H, W)``, the slice read (4-D files) and a mask stored in the file."""
    path, name = split_name(cfg.file)
    suffix = path.suffix.lower()
    file_mask = None
    if suffix in (".cfl", ".hdr"):
        return _bart_2d(complex_array(read_array(cfg.file, "k-space"), path, "k-space"), path, "k-space"), None, None
    if suffix in (".h5", ".hdf5"):
        import h5py

        if not path.is_file():
            raise MeasurementFileError(f"k-space file {path} not found")
        try:
            with h5py.File(path, "r") as f:
                names = h5_datasets(f)
                dataset = f[pick_array(names, name, KSPACE_NAMES, path, "k-space")]
                index = None
                if dataset.ndim == 4:
                    index = _slice_index(cfg.slice, dataset.shape[0], path)
                    raw = dataset[index]
                else:
                    raw = dataset[()]
                if "mask" in names and cfg.mask is None:
                    file_mask = np.asarray(f["mask"][()])
        except MeasurementFileError:
            raise
        except Exception as exc:
            raise MeasurementFileError(f"{path}: cannot read the k-space (.h5 file): {' '.join(str(exc).split())}") from exc
        k = complex_array(raw, path, "k-space")
    else:
        k = complex_array(read_array(cfg.file, "k-space", KSPACE_NAMES), path, "k-space")
        index = None
        if k.ndim == 4:
            index = _slice_index(cfg.slice, k.shape[0], path)
            k = k[index]
    if k.ndim == 2:
        k = k[None]
    if k.ndim != 3:
        raise MeasurementFileError(f"{path}: the k-space has shape {k.shape}; expected (coils, H, W) or "
                                   "[slices, coils, H, W]")
    if cfg.slice is not None and index is None:
        raise MeasurementFileError(f"dataset.slice = {cfg.slice} but {path.name} holds one slice (coils, H, W)")
    return np.ascontiguousarray(k), index, file_mask


def _slice_index(requested: int | None, n: int, path: Path) -> int:
    index = n // 2 if requested is None else int(requested)
    if not -n <= index < n:
        raise MeasurementFileError(f"dataset.slice = {requested} is out of range: {path.name} has {n} slices")
    return index % n


def _load_mri(cfg: MRIKspaceConfig) -> LoadedMRI:
    path = split_name(cfg.file)[0]
    k, index, file_mask = _read_kspace(cfg)
    coils, h, w = k.shape
    if min(h, w) < 8:
        raise MeasurementFileError(f"{path}: the k-space is {h}×{w}; expected (coils, H, W) with H, W >= 8")
    sampled = np.abs(k).sum(0) > 0
    if not sampled.any():
        raise MeasurementFileError(f"{path}: the k-space is zero everywhere")
    if cfg.mask is not None or file_mask is not None:
        mask_path = split_name(cfg.mask)[0] if cfg.mask is not None else path
        raw = read_array(cfg.mask, "sampling mask", MASK_NAMES) if cfg.mask is not None else file_mask
        raw = np.asarray(raw)
        if raw.dtype.kind == "c":
            if np.abs(raw.imag).max() > 0:
                raise MeasurementFileError(f"{mask_path}: the sampling mask is complex with a non-zero imaginary part")
            raw = raw.real
        mask = binary_mask(raw, mask_path, "sampling mask")
        if mask.ndim == 1 and mask.size == w:
            mask = np.broadcast_to(mask[None, :], (h, w))
        if mask.shape != (h, w):
            hint = " (transposed?)" if mask.shape == (w, h) else ""
            raise MeasurementFileError(f"{mask_path}: the sampling mask has shape {mask.shape}, the k-space is {h}×{w}"
                                       f"{hint}; give (H, W) or the sampled columns (W,)")
        source = f"mask {mask_path.name}" if cfg.mask is not None else f"the 'mask' of {path.name}"
        empty = mask & ~sampled  # measured data is never exactly zero in every coil
        if empty.sum() > 0.05 * mask.sum():
            raise MeasurementFileError(
                f"{mask_path}: the sampling mask marks {int(mask.sum())} samples but the k-space is zero at "
                f"{int(empty.sum())} of them: mask and k-space do not match (transposed, shifted or another slice?)")
    else:
        mask, source = sampled, "where the k-space is non-zero"
    if not mask.any():
        raise MeasurementFileError("the sampling mask is empty (no sample measured)")
    dropped = int((np.abs(k) > 0)[:, ~mask].sum())
    k = (k * mask[None]).astype(np.complex64)
    maps = None
    if cfg.maps is not None:
        maps_path = split_name(cfg.maps)[0]
        maps = complex_array(read_array(cfg.maps, "coil maps", MAPS_NAMES), maps_path, "coil maps")
        if maps_path.suffix.lower() in (".cfl", ".hdr"):
            maps = _bart_2d(maps, maps_path, "coil maps")
        if maps.ndim == 2:
            maps = maps[None]
        if maps.shape != k.shape:
            raise MeasurementFileError(f"{maps_path}: the coil maps have shape {maps.shape}, the k-space {k.shape}; "
                                       "give one map per coil, (coils, H, W)")
        if not np.abs(maps).max() > 0:
            raise MeasurementFileError(f"{maps_path}: the coil maps are zero everywhere")
    else:
        from datamodules.sources.bart_io import BART_HOW_TO_INSTALL, bart_executable

        if bart_executable() is None:
            raise MeasurementFileError("coil maps are estimated with BART's ecalib, which is not installed; give "
                                       "dataset.maps=/path/to/maps (coils, H, W) or install BART: "
                                       + " ".join(BART_HOW_TO_INSTALL.split()))
    gt = None
    if cfg.gt is not None:
        gt_path = split_name(cfg.gt)[0]
        raw = np.asarray(read_array(cfg.gt, "ground truth", GT_NAMES))
        if raw.dtype.kind == "c" or raw.dtype.names is not None:
            gt = complex_array(raw, gt_path, "ground truth")
            if gt_path.suffix.lower() in (".cfl", ".hdr"):
                gt = _bart_2d(gt, gt_path, "ground truth")[0]
        else:
            gt = real_array(raw, gt_path, "ground truth", (2,)).astype(np.complex64)
        gt = np.squeeze(gt)
        if gt.shape != (h, w):
            raise MeasurementFileError(f"{gt_path}: the ground truth has shape {gt.shape}, the k-space is {h}×{w}; "
                                       "give the image (H, W) on the k-space's grid")
    return LoadedMRI(k, mask.astype(np.float32), source, maps, gt, index, dropped)


def _fit_reference(physics, y: torch.Tensor, gt: np.ndarray) -> tuple[np.ndarray, float]:
    """The reference's magnitude, with the phase of CG-SENSE on the data (the metric uses
    magnitudes only; a reference from another pipeline has its own phase convention), times
    the one real scale that makes A(gt) match y in least squares."""
    from datamodules.operators.mri import sense_least_squares

    cg = sense_least_squares(physics, y, iterations=30)[0]
    ref = torch.from_numpy(np.abs(gt)) * torch.exp(1j * torch.atan2(cg[1], cg[0]))
    x = torch.view_as_real(ref.to(torch.complex64)).permute(2, 0, 1)[None]
    a = physics.A(x)
    scale = float((a * y).sum() / (a * a).sum())
    return (scale * ref).to(torch.complex64).numpy(), scale


@register_dataset("measurement_mri", MRIKspaceConfig,
                  "your own multi-coil k-space (.h5 fastMRI layout, .npy, BART .cfl) with its mask; maps by BART ecalib or given",
                  capabilities={"linear", "mri_multicoil", "complex_image"})
def build_measurement_mri(cfg: MRIKspaceConfig) -> Task:
    from datamodules.operators.mri import MultiCoilMRI
    from datamodules.tasks.mri import mri_task

    _require_file(cfg, "measurement_mri", "k-space")
    data = load(cfg)
    mask = torch.from_numpy(data.mask.copy())  # the loaded arrays stay cached: tasks get copies
    coils, h, w = data.kspace.shape
    info = {"file": cfg.file, "slice": data.slice, "mask_source": data.mask_source, "dropped_samples": data.dropped,
            "has_ground_truth": cfg.gt is not None}
    if data.maps is not None:
        maps, maps_label = data.maps.copy(), f"coil maps {split_name(cfg.maps)[0].name}"
        info["coil_maps"] = "given"
    else:
        from datamodules.sources.coil_maps import ecalib_maps

        maps, cache = ecalib_maps(data.kspace, cfg.value("ecalib_options"))
        maps_label = f"BART ecalib {cache['options']} maps"
        info.update(coil_maps="bart", ecalib_options=cache["options"], bart_version=cache["bart"],
                    coil_map_cache=cache["cache"])
    gt = data.gt
    if gt is not None and cfg.value("gt_scaling") == "fit":
        physics = MultiCoilMRI(torch.from_numpy(maps), mask)
        y = torch.view_as_real(torch.from_numpy(data.kspace))[None]
        gt, info["gt_scale"] = _fit_reference(physics, y, gt)
    if cfg.noise_std is not None:
        info["noise_std"] = cfg.noise_std
    where = f", slice {data.slice}" if data.slice is not None else ""
    dropped = f", {data.dropped} samples outside the mask dropped" if data.dropped else ""
    provenance = (f"{_label(cfg, 'k-space')}{where}: {coils} coils, {h}x{w}, sampling {data.mask_source} "
                  f"({float(mask.mean()):.1%} of k-space{dropped}); {maps_label}; {_gt_label(cfg)}")
    return mri_task("measurement_mri", gt, data.kspace, mask, maps, provenance, info, cfg.value("support") == "coils")


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


def _load_image(cfg: DegradedImageConfig) -> LoadedImage:
    path = split_name(cfg.file)[0]
    forward = _need(cfg, "forward", "forward model (forward: denoising, inpainting or blur)")
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
        spec = _need(cfg, "mask", "inpainting mask file (mask: 1 = observed, 0 = missing)")
        mask_path = split_name(spec)[0]
        mask = binary_mask(read_array(spec, "inpainting mask", MASK_NAMES), mask_path, "inpainting mask")
        if mask.shape != (h, w):
            raise MeasurementFileError(f"{mask_path}: the inpainting mask is {'×'.join(map(str, mask.shape))} but the "
                                       f"image is {h}×{w}; give a mask of the image's size")
        if not mask.any():
            raise MeasurementFileError(f"{mask_path}: the inpainting mask observes no pixel (all 0)")
    if forward == "blur":
        spec = _need(cfg, "kernel", "blur kernel file (kernel: the PSF)")
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

    _require_file(cfg, "measurement_image", "degraded image")
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
        provenance=f"{_label(cfg, 'image')}: {what}{noise}; {_gt_label(cfg)}",
        extras=extras,
        info=info,
    )


LOADERS = {CTSinogramConfig: _load_ct, MRIKspaceConfig: _load_mri, DegradedImageConfig: _load_image}
