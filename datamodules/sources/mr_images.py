"""Real MR images that ship inside PyPI wheels (no download): the offline ground truths
of the semi-synthetic multi-coil MRI task. Magnitude images in [0, 1], ``(H, W)``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# name -> (package, file, description). pydicom-data bundles the larger real scans.
EMBEDDED_MR = {
    "shoulder": ("pydicom-data", "MR2_UNCR.dcm", "T1 spin-echo shoulder, Philips 1.5 T, 1024²"),
    "abdomen": ("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm", "T1 gradient-echo abdomen, Siemens, 484²"),
    "head_small": ("pydicom", "MR_small.dcm", "spin-echo head, 64²"),
}


def _dicom_path(package: str, filename: str) -> Path:
    if package == "pydicom-data":
        try:
            from data_store import DataStore
        except ImportError as err:  # pragma: no cover - pydicom-data is a project dependency
            raise ImportError("pydicom-data is not installed: `pip install pydicom-data==1.0.0`") from err
        return Path(DataStore().get_path(filename))
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files" / filename


def load_mr_image(name: str, size: int | None = None) -> tuple[torch.Tensor, str]:
    """An embedded real MR image, normalised to max 1 and (optionally) resized to
    ``size``² with antialiasing. Returns the image ``(H, W)`` float32 and a label."""
    import pydicom

    if name not in EMBEDDED_MR:
        raise KeyError(f"unknown embedded MR image {name!r}; valid: {', '.join(EMBEDDED_MR)}")
    package, filename, what = EMBEDDED_MR[name]
    pixels = pydicom.dcmread(_dicom_path(package, filename)).pixel_array.astype(np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"{filename}: expected one 2D frame, got shape {pixels.shape}")
    img = torch.from_numpy(pixels)
    img = (img - img.min()) / (img.max() - img.min())
    if size is not None and tuple(img.shape) != (size, size):
        img = F.interpolate(img[None, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0]
        img = img.clamp_min(0) / img.max()
    return img.contiguous(), f"{package} {filename} ({what})"
