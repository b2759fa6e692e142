"""``measurement_mri``: a user's own measurement, multi-coil k-space, read from files (layouts: README
"Your own data"; the shared file handling: datamodules/sources/measurement_config.py)."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from core.schema import NonNegativeFloat
from datamodules.registry import register_dataset
from datamodules.sources.measurement_config import (
    GT_NAMES,
    KSPACE_NAMES,
    MAPS_NAMES,
    MASK_NAMES,
    MeasurementFileConfig,
    file_label,
    gt_label,
    load,
    register_loader,
    require_file,
)
from datamodules.sources.measurement_files import (
    MeasurementFileError,
    binary_mask,
    complex_array,
    h5_datasets,
    pick_array,
    read_array,
    real_array,
    split_name,
)
from datamodules.task import Task

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


@register_loader(MRIKspaceConfig)
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

    require_file(cfg, "measurement_mri", "k-space")
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
    provenance = (f"{file_label(cfg, 'k-space')}{where}: {coils} coils, {h}x{w}, sampling {data.mask_source} "
                  f"({float(mask.mean()):.1%} of k-space{dropped}); {maps_label}; {gt_label(cfg)}")
    return mri_task("measurement_mri", gt, data.kspace, mask, maps, provenance, info, cfg.value("support") == "coils")
