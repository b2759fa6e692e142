"""Noise level of a measurement: the σ a task states, or an estimate from y (and A).

Used by the discrepancy principle twice: as a constraint (``dip_constrained``, Survey B
eq 31) and as a stopping rule (``run.stopping.discrepancy``, scoring/stopping.py).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch

MAD_TO_SIGMA = 0.6745  # median |N(0, 1)|
# Left singular directions of A with singular value ≤ NULL_CUT·‖A‖₂ count as noise-only (see range_complement_sigma)
NULL_CUT = 1e-3
MIN_NULL_DIRECTIONS = 16  # fewer: too few samples for the estimate (relative std ≈ 1/√(2k) = 18 % at 16)
MAX_DENSE_ROWS = 8192  # AAᵀ is formed densely: 8192² doubles = 512 MiB (the real walnut: 7680 rows)


def estimate_noise_sigma(y: torch.Tensor, physics=None) -> float:
    """σ̂ of white noise in y, in y's units.

    With an operator given as an explicit matrix (``physics.to_scipy()``: the CT ray transforms,
    also the user's sinograms and the real walnut matrix): :func:`range_complement_sigma`, the
    RMS of y over the measurement directions no image can reach. Measured on simulated
    sinograms with known σ (walnut 32² with 8 and 60 angles, 64² fan and parallel, 128², 1 % and
    15 % noise): 0.96–1.01 σ; the image-domain estimate below is 2–12× too high there (sparse-view sinograms
    are not smooth at the detector pitch, not even along the detector axis: differences of
    order 1–6 along it are 2–12× too high at 1 % noise). Otherwise (no matrix, or none of its
    directions is noise-only): :func:`wavelet_mad_sigma`, which fits natural images."""
    if physics is not None and hasattr(physics, "to_scipy"):
        sigma = range_complement_sigma(y, physics.to_scipy())
        if sigma is not None:
            return sigma
        warnings.warn("estimate_noise_sigma: the operator has no noise-only measurement directions to estimate σ "
                      "from; using the wavelet MAD of y, which overestimates σ on sinograms: state the noise level "
                      "(method.noise_sigma or the task's noise_sigma)", stacklevel=2)
    return wavelet_mad_sigma(y)


def range_complement_sigma(y: torch.Tensor, matrix) -> float | None:
    """σ̂ = ‖U₀ᵀ y‖ / √k: the RMS of y's coordinates along the k left singular vectors U₀ of A
    whose singular values are ≤ ``NULL_CUT``·‖A‖₂ (the noise floor of the Picard plot; Hansen,
    *Discrete Inverse Problems*, 2010). A measured image x moves such a coordinate by at most
    ``NULL_CUT``·‖A‖₂‖x‖, so there y is noise: rays that miss the image grid, the directions
    beyond rank A when there are more rays than pixels, and those sparse-view CT cannot
    resolve. For white noise N(0, σ²) each coordinate is N(0, σ²), so σ̂² is unbiased; for
    noise whose variance varies over y (post-log Poisson data) it is the variance of the
    entries those directions weigh (rays through air: low), not the mean over y: measured
    0.41–0.60 × the RMS noise on the aapm task with Poisson noise (32²/64², I0 = 1e3–1e5;
    the wavelet MAD: 0.69–1.54 ×); such tasks should state σ.
    ``None`` if fewer than ``MIN_NULL_DIRECTIONS`` such directions exist or A has more than
    ``MAX_DENSE_ROWS`` rows (AAᵀ is formed and decomposed densely, once)."""
    m = matrix.shape[0]
    if m > MAX_DENSE_ROWS:
        return None
    gram = (matrix @ matrix.T).tocsr()
    top = float(gram.diagonal().max()) if m < 3 else float(  # ‖A‖₂² (ARPACK; fixed start: deterministic)
        scipy.sparse.linalg.eigsh(gram, k=1, which="LA", v0=np.ones(m), return_eigenvectors=False)[0])
    # eigenvalues of AAᵀ = squared singular values; LAPACK's dsyevr computes only those in the interval
    _, u = scipy.linalg.eigh(gram.toarray(), subset_by_value=(-np.inf, (NULL_CUT**2) * top), driver="evr")
    if u.shape[1] < MIN_NULL_DIRECTIONS:
        return None
    coords = u.T @ y.detach().cpu().double().numpy().reshape(m)
    return float(math.sqrt(np.mean(coords**2)))


def wavelet_mad_sigma(y: torch.Tensor) -> float:
    """σ̂ = median|d| / 0.6745 (Donoho–Johnstone MAD) over the finest diagonal Haar wavelet
    coefficients d = (a − b − c + e)/2 of the 2×2 blocks of y's last two axes (1-D data: the
    pairs d = (a − b)/√2), using only blocks inside the measured support (y ≠ 0: inpainting
    holes and unsampled k-space are stored as 0). Fits data whose finest scale is noise-dominated:
    measured within 4–6% on the natural-image tasks (denoising, inpainting, deblurring, 32²–64²;
    σ = 10/255 at 64²: 18 % high). Biased upwards where the signal dominates it: sparse-view
    sinograms (walnut 64², 1 % noise: 2.3× σ; 32², 8 angles: 3.3×) and k-space (trailing
    real/imag axis taken as channels; 0.108 for 0.013)."""
    t = y.detach().double()
    if t.dim() >= 5 and t.shape[-1] == 2:
        t = t.movedim(-1, 0)
    h, w = (1, t.shape[-1]) if t.dim() < 2 else t.shape[-2:]
    t = t.reshape(-1, h, w)
    if h == 1:  # 1-D measurement vector
        a, b = t[..., 0: w - 1: 2], t[..., 1:w:2]
        d, valid = (a - b) / math.sqrt(2), (a != 0) & (b != 0)
    else:
        t = t[:, : h // 2 * 2, : w // 2 * 2]
        a, b, c, e = t[:, 0::2, 0::2], t[:, 0::2, 1::2], t[:, 1::2, 0::2], t[:, 1::2, 1::2]
        d, valid = (a - b - c + e) / 2, (a != 0) & (b != 0) & (c != 0) & (e != 0)
    return float(d[valid].abs().median() / MAD_TO_SIGMA) if valid.any() else 0.0


def task_noise_sigma(info: dict) -> float | None:
    """The noise std in y's units as the task states it (datamodules/tasks/*.py), or None."""
    if "sigma" in info:  # natural-image tasks
        return float(info["sigma"])
    if "noise_sigma" in info:  # simulated walnut
        return float(info["noise_sigma"])
    if "noise_std" in info:  # simulated MRI: k-space noise before the task rescales y by info["scale"]
        return float(info["noise_std"]) * float(info.get("scale", 1.0))
    return None
