"""fastMRI multi-coil ``.h5`` files (Zbontar et al. 2018; Survey A §IV uses the knee set).

Layout of one volume file: dataset ``kspace`` [slices, coils, H, W] complex64 (fully
sampled for train/val), ``reconstruction_rss`` [slices, 320, 320] float32, an XML
``ismrmrd_header`` and attributes ``acquisition``, ``max``, ``norm``, ``patient_id``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from datamodules.sources.paths import MissingDataError, find_data_root

FASTMRI_HOW_TO_GET = (
    "fastMRI knee data cannot be redistributed: request it at https://fastmri.med.nyu.edu/ "
    "(free after accepting the NYU data use agreement), download e.g. knee_multicoil_val.tar.xz "
    "and unpack its .h5 files into a folder. Then run with dataset.source=fastmri and "
    "dataset.root=/path/to/multicoil_val (optionally dataset.file=file1000000.h5), or put the files "
    "in data/fastmri_knee/. Without it, the default dataset.source=embedded runs a semi-synthetic "
    "multi-coil problem on a real MR image."
)


@dataclass
class FastMRISlice:
    """One slice of a fastMRI volume: k-space ``(coils, H, W)`` complex64 and metadata."""

    kspace: np.ndarray
    path: Path
    slice: int
    num_slices: int
    rss: np.ndarray | None = None  # the file's reconstruction_rss of this slice, if stored
    attrs: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)  # encoding / recon matrix sizes from the ISMRMRD header


def find_volume(root: str | None, file: str | None) -> Path:
    """The ``.h5`` file to read: ``root`` may be the file itself or a folder (default: the
    fastmri_knee data folder, see :func:`find_data_root`); ``file`` picks a file in it
    (default: the first in name order)."""
    if root and Path(root).expanduser().is_file():
        return Path(root).expanduser()
    folder = find_data_root("fastmri_knee", root, FASTMRI_HOW_TO_GET)
    if file:
        path = folder / file
        if not path.is_file():
            raise MissingDataError(f"fastMRI file {path} does not exist.\n{FASTMRI_HOW_TO_GET}")
        return path
    files = sorted(folder.glob("*.h5"))
    if not files:
        raise MissingDataError(f"no fastMRI .h5 files in {folder}.\n{FASTMRI_HOW_TO_GET}")
    return files[0]


def _header_sizes(xml: bytes | str) -> dict:
    """Encoded and reconstructed matrix sizes from the ISMRMRD XML (fastmri's query helper)."""
    import xml.etree.ElementTree as etree

    from fastmri.data.mri_data import et_query

    root = etree.fromstring(xml)
    sizes = {}
    for name, path in (("encoding_size", "encodedSpace"), ("recon_size", "reconSpace")):
        try:
            sizes[name] = tuple(int(et_query(root, ["encoding", path, "matrixSize", d])) for d in "xyz")
        except RuntimeError:  # element missing in this header
            pass
    return sizes


def read_slice(path: str | Path, slice_index: int | None = None) -> FastMRISlice:
    """Read slice ``slice_index`` (``None`` = the middle slice; negative counts from the end)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        if "kspace" not in f:
            raise KeyError(f"{path} has no 'kspace' dataset: not a fastMRI raw-data file")
        kspace = f["kspace"]
        if kspace.ndim != 4:
            raise ValueError(
                f"{path}: kspace has shape {kspace.shape}; expected multi-coil [slices, coils, H, W] "
                "(single-coil files are not supported)"
            )
        n = kspace.shape[0]
        index = n // 2 if slice_index is None else int(slice_index)
        if not -n <= index < n:
            raise IndexError(f"slice {index} out of range: {path.name} has {n} slices")
        index %= n
        data = np.asarray(kspace[index]).astype(np.complex64)
        rss = np.asarray(f["reconstruction_rss"][index]) if "reconstruction_rss" in f else None
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        header = _header_sizes(f["ismrmrd_header"][()]) if "ismrmrd_header" in f else {}
    return FastMRISlice(kspace=data, path=path, slice=index, num_slices=n, rss=rss, attrs=attrs, header=header)
