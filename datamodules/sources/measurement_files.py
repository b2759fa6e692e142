"""A user's own measurement files: readers for arrays and images, checks with one-line
messages, checksums, and the YAML of settings kept beside a measurement.

Formats (by suffix): ``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.tif``/``.tiff``, ``.png``/
``.jpg``, BART ``.cfl``/``.hdr``. In ``.npz`` and ``.h5`` files an array is chosen by name:
``path#name`` names it, else the first of a list of usual names present (e.g. ``kspace``),
else the only array in the file. Every problem is a :class:`MeasurementFileError` (a
``ValueError``: the benchmark reports it as a config error, before anything runs) whose
message names the file and what to change.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.yamlio import yaml_load

ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".cfl", ".hdr")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class MeasurementFileError(ValueError):
    """A measurement file is missing, unreadable or does not fit the documented layout."""


def split_name(spec: str) -> tuple[Path, str | None]:
    """``"file.h5#kspace"`` -> ``(Path("file.h5"), "kspace")``; no ``#`` -> ``(path, None)``."""
    text = str(spec)
    if "#" in text:
        path, name = text.rsplit("#", 1)
        return Path(path).expanduser(), name or None
    return Path(text).expanduser(), None


def pick_array(names: Sequence[str], name: str | None, preferred: Sequence[str], path: Path, what: str) -> str:
    names = list(names)
    if name is not None:
        if name not in names:
            held = ", ".join(names) or "nothing"
            raise MeasurementFileError(f"{path}: no array {name!r} for the {what}; the file holds: {held}")
        return name
    for candidate in preferred:
        if candidate in names:
            return candidate
    if len(names) == 1:
        return names[0]
    usual = f" (usual names: {', '.join(preferred)})" if preferred else ""
    raise MeasurementFileError(
        f"{path}: which array is the {what}? the file holds {', '.join(names) or 'no arrays'}{usual}; "
        f"name it as {path.name}#<name>")


def h5_datasets(f) -> list[str]:
    import h5py

    found = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def read_array(spec: str | Path, what: str, preferred: Sequence[str] = ()) -> np.ndarray:
    """The array in file ``spec`` (``path`` or ``path#name``) as numpy; ``what`` names it in
    error messages (e.g. "sinogram"), ``preferred`` are the usual array names in .npz/.h5."""
    path, name = split_name(str(spec))
    suffix = path.suffix.lower()
    if suffix in (".cfl", ".hdr"):
        stem = path.with_suffix("")
        missing = [str(p) for p in (stem.with_suffix(".cfl"), stem.with_suffix(".hdr")) if not p.is_file()]
        if missing:
            raise MeasurementFileError(f"{what} file {', '.join(missing)} not found (a BART file is a .cfl + .hdr pair)")
    elif path.is_dir():
        raise MeasurementFileError(f"{what} file {path} is a folder; give the file inside it, e.g. {path}/<name>.npy")
    elif not path.is_file():
        raise MeasurementFileError(f"{what} file {path} not found")
    if suffix not in ARRAY_SUFFIXES:
        raise MeasurementFileError(f"{path}: unsupported {what} format {suffix or '(no suffix)'}; use one of "
                                   f"{', '.join(ARRAY_SUFFIXES)}")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return np.asarray(data[pick_array(data.files, name, preferred, path, what)])
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                return np.asarray(f[pick_array(h5_datasets(f), name, preferred, path, what)][()])
        if suffix in (".cfl", ".hdr"):
            from datamodules.sources.bart_io import read_cfl

            return np.asarray(read_cfl(path))
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except MeasurementFileError:
        raise
    except Exception as exc:  # a corrupt or truncated file: say which and why, in one line
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise MeasurementFileError(f"{path}: cannot read the {what} ({suffix} file): {reason}") from exc


def real_array(a: np.ndarray, path, what: str, ndim: Sequence[int]) -> np.ndarray:
    """``a`` as float64 with one of the dimensions ``ndim`` (after dropping singleton
    axes), finite; raises with the file's shape and dtype otherwise."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise MeasurementFileError(f"{path}: the {what} has dtype {a.dtype}; expected real numbers")
    if a.ndim not in ndim:
        a = np.squeeze(a)
    if a.ndim not in ndim:
        raise MeasurementFileError(f"{path}: the {what} has shape {a.shape}; expected {' or '.join(f'{n}-D' for n in ndim)}")
    a = a.astype(np.float64)
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise MeasurementFileError(f"{path}: the {what} has {bad} NaN/inf value(s); replace them")
    return a


def complex_array(a: np.ndarray, path, what: str) -> np.ndarray:
    """``a`` as complex64: complex dtypes as they are, real arrays with a trailing axis of
    length 2 as (real, imaginary) pairs (fastMRI's real view); finite."""
    a = np.asarray(a)
    if a.dtype.names is not None and set(a.dtype.names) >= {"r", "i"}:  # h5 compound (r, i), e.g. ISMRMRD
        a = a["r"] + 1j * a["i"]
    if a.dtype.kind == "c":
        out = a.astype(np.complex64)
    elif a.dtype.kind in "biuf" and a.ndim >= 1 and a.shape[-1] == 2:
        out = (a[..., 0] + 1j * a[..., 1]).astype(np.complex64)
    else:
        raise MeasurementFileError(f"{path}: the {what} has dtype {a.dtype} and shape {a.shape}; expected complex "
                                   "values (or real numbers with a last axis of 2 = real, imaginary)")
    bad = int((~np.isfinite(out)).sum())
    if bad:
        raise MeasurementFileError(f"{path}: the {what} has {bad} NaN/inf value(s); replace them")
    return out


def read_image(spec: str | Path, what: str, preferred: Sequence[str] = ()) -> np.ndarray:
    """An image file as float64 ``(C, H, W)``: integers scaled to [0, 1] by their type's
    maximum (uint8 / 255, uint16 / 65535), floats as stored; ``(H, W, 3|4)`` colour images
    keep their first 3 channels, ``(C, H, W)`` arrays with C in 1…3 are kept."""
    path, _ = split_name(str(spec))
    a = np.asarray(read_array(spec, what, preferred))
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype.kind in "ui" and a.dtype not in (np.uint8, np.uint16):
        raise MeasurementFileError(f"{path}: the {what} has dtype {a.dtype}; integer images must be 8 or 16 bit "
                                   "(uint8, uint16), else give floats in [0, 1]")
    if a.dtype.kind not in "uf":
        raise MeasurementFileError(f"{path}: the {what} has dtype {a.dtype}; expected an image (uint8, uint16 or floats)")
    scale = float(np.iinfo(a.dtype).max) if a.dtype.kind == "u" else 1.0
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (1, 3):
        a = np.moveaxis(a[..., :3], -1, 0)
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = np.moveaxis(a, -1, 0)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise MeasurementFileError(f"{path}: the {what} has shape {a.shape}; expected (H, W), (H, W, 3) or (C, H, W) "
                                   "with 1 or 3 channels")
    a = a.astype(np.float64) / scale
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise MeasurementFileError(f"{path}: the {what} has {bad} NaN/inf value(s); replace them")
    return a


def binary_mask(a: np.ndarray, path, what: str) -> np.ndarray:
    """A 0/1 mask as bool: bool arrays, integers or floats that are only 0 and 1, or 8/16-bit
    images that are only 0 and the type's maximum (a black-and-white PNG)."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4):  # a colour PNG of a mask: all channels must agree
        if not (a[..., :3] == a[..., :1]).all():
            raise MeasurementFileError(f"{path}: the {what} is a colour image with differing channels; save it as grey")
        a = a[..., 0]
    a = np.squeeze(a)
    values = np.unique(a)
    if a.dtype == bool:
        return a
    top = np.iinfo(a.dtype).max if a.dtype.kind in "ui" else 1
    if set(values.tolist()) <= {0, 1}:
        return a.astype(bool)
    if set(values.tolist()) <= {0, top}:
        return a == top
    shown = ", ".join(f"{v:g}" for v in values[:6]) + (", …" if values.size > 6 else "")
    raise MeasurementFileError(f"{path}: the {what} must hold only 0 and 1 (1 = measured), found values {shown}")


def files_sha256(paths: Sequence[Path]) -> str:
    """One sha256 over the contents of ``paths`` (in order): what a run id should change with."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(Path(path).name).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def files_of(spec: str | Path) -> list[Path]:
    """The files behind ``spec`` (both files of a BART pair)."""
    path, _ = split_name(str(spec))
    if path.suffix.lower() in (".cfl", ".hdr"):
        return [path.with_suffix(".hdr"), path.with_suffix(".cfl")]
    return [path]


def sidecar_path(spec: str | Path) -> Path:
    """``<stem>.yaml`` beside a measurement file (``sino.npy`` -> ``sino.yaml``)."""
    path, _ = split_name(str(spec))
    return path.with_suffix(".yaml")


def read_sidecar(path: Path) -> dict:
    """The mapping of dataset settings in a YAML file; path values are relative to its folder."""
    try:
        data = yaml_load(Path(path).read_text())
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise MeasurementFileError(f"{path}: cannot read the settings YAML: {reason}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MeasurementFileError(f"{path}: the settings YAML must be a mapping of dataset keys (e.g. geometry: fan)")
    return data
