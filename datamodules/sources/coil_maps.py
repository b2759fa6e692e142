"""Coil sensitivity maps: ESPIRiT maps from BART ``ecalib`` (Survey A §IV: "sensitivity
maps for the coils are generated using the BART toolbox"; Uecker et al. 2014), cached on
disk, and smooth simulated maps for the semi-synthetic data.

All maps are complex ``(coils, H, W)`` numpy arrays.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from datamodules.sources import paths
from datamodules.sources.bart_io import bart_version, from_bart, run_bart, to_bart

DEFAULT_ECALIB_OPTIONS = "-m1"  # one ESPIRiT map set, BART's default threshold and calibration size


def cache_dir() -> Path:
    """``$DIPBENCH_CACHE/coil_maps``, else ``coil_maps`` in the user's cache folder
    (:func:`datamodules.sources.paths.cache_root`)."""
    return paths.cache_dir("coil_maps")


def cache_key(kspace: np.ndarray, options: str, version: str) -> str:
    """sha256 of the k-space handed to ecalib (shape, dtype, bytes), the options and BART's version."""
    k = np.ascontiguousarray(kspace, dtype=np.complex64)
    h = hashlib.sha256()
    h.update(repr((k.shape, str(k.dtype), " ".join(options.split()), version)).encode())
    h.update(k.tobytes())
    return h.hexdigest()


def ecalib_maps(
    kspace: np.ndarray, options: str = DEFAULT_ECALIB_OPTIONS, use_cache: bool = True
) -> tuple[np.ndarray, dict]:
    """ESPIRiT maps of coil-first k-space ``(coils, H, W)`` by ``bart ecalib <options>``.

    ``kspace`` is the data the maps are estimated from (here: the acquired, undersampled
    k-space; ecalib uses its fully sampled centre). Only the first map set is returned.
    Returns ``(maps, info)``; ``info`` says whether the disk cache was hit and where.
    """
    options = " ".join(options.split())
    version = bart_version()
    key = cache_key(kspace, options, version)
    path = cache_dir() / f"{key}.npy"
    if use_cache and path.is_file():
        return np.load(path), {"cache": "hit", "path": str(path), "options": options, "bart": version}
    maps = from_bart(run_bart(f"ecalib {options}".strip(), to_bart(kspace))).astype(np.complex64)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as tmp:
            np.save(tmp, maps)
        os.replace(tmp.name, path)  # atomic: concurrent runs never read a half-written file
    return maps, {"cache": "miss" if use_cache else "off", "path": str(path), "options": options, "bart": version}


def coil_support(maps: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Where the coils see the object: Σ_c |S_c|² > ``threshold`` · its maximum, ``(H, W)`` bool.
    ESPIRiT maps are exactly zero outside ecalib's support (and Σ_c |S_c|² ≈ 1 inside)."""
    energy = (np.abs(np.asarray(maps)) ** 2).sum(0)
    peak = float(energy.max()) if energy.size else 0.0
    if peak <= 0:
        raise ValueError("the coil maps are zero everywhere: no coil support")
    return energy > threshold * peak


def simulated_maps(coils: int, height: int, width: int, width_fraction: float = 0.6) -> np.ndarray:
    """Smooth birdcage-like maps: ``coils`` receivers evenly spaced on a circle around the
    field of view, each with a Gaussian magnitude fall-off and a linear phase along its
    direction, normalised so that Σ_c |S_c|² = 1 at every pixel (then Sᴴ S = I)."""
    if coils < 1:
        raise ValueError("coils must be >= 1")
    y, x = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    angles = 2 * np.pi * np.arange(coils) / coils
    maps = []
    for a in angles:
        cy, cx = 1.2 * np.sin(a), 1.2 * np.cos(a)
        dist2 = (y - cy) ** 2 + (x - cx) ** 2
        along = y * np.sin(a) + x * np.cos(a)
        maps.append(np.exp(-dist2 / (2 * width_fraction**2)) * np.exp(1j * (a + 0.5 * np.pi * along)))
    maps = np.stack(maps)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    return maps.astype(np.complex64)
