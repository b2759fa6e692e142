"""The shared part of the measurement datasets (datamodules/tasks/measurement_*.py): a
user's files, the settings YAML beside them, checks, checksums and a small cache.

A user's own measurement, read from files: ``measurement_ct`` (a sinogram and its
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
import typing
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from core.registry import Registry
from core.schema import coerce
from datamodules.sources.measurement_files import (
    MeasurementFileError,
    files_of,
    files_sha256,
    read_sidecar,
    sidecar_path,
    split_name,
)
from datamodules.sources.paths import MissingDataError

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
        self.file = absolute_path(self.file)
        self._apply_settings()
        for key in self.PATH_KEYS:
            if getattr(self, key) is not None:
                setattr(self, key, absolute_path(getattr(self, key)))
        loaded = load(self)
        if self.sha256 is not None and self.sha256 != loaded.sha256:
            raise MeasurementFileError(
                f"the files changed since this config was made (dataset.sha256 = {self.sha256}, now {loaded.sha256}): "
                "drop dataset.sha256 to accept the new contents (the run id changes)")
        self.sha256 = loaded.sha256
        for key, default in self.DEFAULTS.items():  # store the values used, not null (config.json, run id)
            if getattr(self, key) is None:
                setattr(self, key, default)

    def value(self, key: str):
        """The setting ``key``: given, else its documented default."""
        value = getattr(self, key)
        return self.DEFAULTS.get(key) if value is None else value

    def _apply_settings(self) -> None:
        """Fill unset keys from the settings YAML; a key set both ways must agree."""
        if self.settings is None:
            beside = sidecar_path(self.file)
            if not beside.is_file():
                return
            self.settings = str(beside)
        path = Path(absolute_path(self.settings))
        if not path.is_file():
            raise MeasurementFileError(f"settings file {path} not found (dataset.settings)")
        self.settings = str(path)
        fields = {f.name: f for f in dataclasses.fields(self)}
        hints = typing.get_type_hints(type(self), include_extras=True)
        for key, raw in read_sidecar(path).items():
            if key not in fields or key in ("file", "settings", "sha256"):
                valid = ", ".join(k for k in fields if k not in ("file", "settings", "sha256"))
                raise MeasurementFileError(f"{path}: unknown key {key!r}; valid keys: {valid}")
            value = coerce(raw, hints[key], f"{path}: {key}")
            if key in self.PATH_KEYS and value is not None:
                value = absolute_path(value, path.parent)
            current = getattr(self, key)
            if current is None:
                setattr(self, key, value)
            elif (absolute_path(current) if key in self.PATH_KEYS else current) != value:
                raise MeasurementFileError(f"dataset.{key} = {current!r} but {path} says {key}: {raw!r}; "
                                           "remove one of them")


def absolute_path(spec: str, base: Path | None = None) -> str:
    """``spec`` (``path`` or ``path#name``) with an absolute path (relative to ``base`` or
    the working directory)."""
    path, name = split_name(str(spec))
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.resolve()) + (f"#{name}" if name else "")


LOADERS = Registry("measurement-file loader")  # config class name -> the function reading its files


def register_loader(config: type):
    """Declare the function that reads and checks the files of ``config`` (one per task file)."""
    return LOADERS.register(config.__name__, config)


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
    loaded = LOADERS[type(cfg).__name__].target(cfg)  # registered by each measurement task file
    data_files = files[: len(files) - (1 if cfg.settings else 0)]  # the settings' values are in the config itself
    loaded.sha256 = files_sha256([p for p in data_files if p.is_file()])
    _CACHE[key] = loaded
    while len(_CACHE) > 4:
        _CACHE.popitem(last=False)
    return loaded


def require_file(cfg: MeasurementFileConfig, name: str, what: str) -> None:
    if cfg.file is None:
        raise MissingDataError(f"{name}: dataset.file is not set: give the {what} file, e.g. --set dataset.file=/path/to/it "
                               f"({LAYOUTS})")


def need(cfg, key: str, what: str) -> typing.Any:
    value = cfg.value(key)
    if value is None:
        beside = f" in {Path(cfg.settings).name}" if cfg.settings else f" in {sidecar_path(cfg.file).name} beside the file"
        raise MeasurementFileError(f"dataset.{key} is not set: give the {what}{beside} or as --set dataset.{key}=…")
    return value


def file_label(cfg: MeasurementFileConfig, what: str) -> str:
    path, name = split_name(cfg.file)
    return f"user-supplied {what} {path.name}{'#' + name if name else ''} (sha256 {cfg.sha256 or '?'})"


def gt_label(cfg: MeasurementFileConfig) -> str:
    return f"ground truth {split_name(cfg.gt)[0].name}" if cfg.gt else "no ground truth (no PSNR/SSIM)"


