"""CT slices from DICOM files: the AAPM/Mayo low-dose CT challenge data as distributed
(``.IMA``/``.dcm``, one slice per file), and the real 512² head CT that ships in the
pydicom-data wheel (``693_UNCR.dcm``), the embedded default for a fresh clone.

Intensities: Hounsfield units are mapped linearly to attenuation relative to water,
μ/μ_water = 1 + HU/1000 (air 0, water 1), clipped at 0 and divided by a normaliser
so the image lies in [0, 1] (the slice maximum by default, or 1 + hu_max/1000).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.sources.paths import find_data_root

EMBEDDED_CT = "693_UNCR.dcm"
DICOM_SUFFIXES = (".dcm", ".ima")
AAPM_HOW_TO_GET = (
    "The AAPM/Mayo Low Dose CT Grand Challenge data are distributed by TCIA (collection 'LDCT-and-Projection-data', "
    "https://www.cancerimagingarchive.net) under a data use agreement, so they cannot be bundled. After download, "
    "put the DICOM/IMA slices (e.g. L067/full_1mm/*.IMA) under data/aapm/ or pass dataset.root=/path/to/them. "
    "Without them use dataset.source=embedded (a real head CT from the pydicom-data wheel)."
)


def read_ct_slice(path: Path) -> tuple[np.ndarray, float]:
    """One DICOM CT slice in Hounsfield units (modality LUT applied) and its pixel
    spacing in mm (row spacing; NaN if absent)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    if getattr(ds, "Modality", "CT") != "CT":
        raise ValueError(f"{path} is a {ds.Modality} image, not CT")
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    spacing = float(ds.PixelSpacing[0]) if "PixelSpacing" in ds else float("nan")
    return hu, spacing


def hu_to_unit(hu: np.ndarray, hu_max: float | None = None) -> tuple[np.ndarray, float]:
    """x = max(0, 1 + HU/1000) / s in [0, 1], and the normaliser s (μ = s·x·μ_water)."""
    rel = np.clip(1.0 + hu / 1000.0, 0.0, None)
    s = float(rel.max()) if hu_max is None else 1.0 + hu_max / 1000.0
    if s <= 0:
        raise ValueError("the slice has no attenuation above air; cannot normalise it")
    return np.clip(rel / s, 0.0, 1.0).astype(np.float32), s


def embedded_ct_path() -> Path:
    """Path of the head CT bundled with pydicom-data."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(EMBEDDED_CT)
    if path is None:
        raise FileNotFoundError(f"{EMBEDDED_CT} not found: install the pydicom-data wheel (pip install pydicom-data==1.0.0)")
    return Path(path)


def dicom_files(folder: Path) -> list[Path]:
    """All ``.dcm``/``.IMA`` files under ``folder`` (recursively), sorted by path."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in DICOM_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .dcm/.IMA files under {folder}")
    return files


def pick_file(folder: Path, image: str | int) -> Path:
    """A slice by index into the sorted file list (``3``) or by file name/stem."""
    files = dicom_files(folder)
    if isinstance(image, int) or str(image).isdigit():
        index = int(image)
        if not 0 <= index < len(files):
            raise IndexError(f"slice index {index} out of range: {folder} has {len(files)} DICOM files")
        return files[index]
    matches = [p for p in files if p.name == image or p.stem == image]
    if not matches:
        raise KeyError(f"no DICOM file {image!r} under {folder} (e.g. {', '.join(p.name for p in files[:5])})")
    return matches[0]


def load_ct_slice(source: str, image: str | int = 0, root: str | None = None) -> tuple[np.ndarray, float, str]:
    """HU image, pixel spacing (mm) and provenance label.

    source: ``"embedded"`` (pydicom-data head CT) or ``"aapm"`` (a folder of AAPM/Mayo
    DICOM/IMA files found via :func:`find_data_root`)."""
    if source == "embedded":
        hu, spacing = read_ct_slice(embedded_ct_path())
        return hu, spacing, f"real head CT {EMBEDDED_CT} (pydicom-data wheel)"
    if source == "aapm":
        folder = find_data_root("aapm", root, AAPM_HOW_TO_GET)
        path = pick_file(folder, image)
        hu, spacing = read_ct_slice(path)
        return hu, spacing, f"AAPM/Mayo CT slice {path.relative_to(folder)}"
    raise KeyError(f"unknown CT source {source!r}; valid: embedded, aapm")
