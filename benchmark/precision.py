"""Numerical precision of a run (``run.precision``; docs/conventions.md §20): which choices
are allowed and what ``auto`` picks on this device. A precision is allowed when it keeps a
run's PSNR trace within ``TOLERANCE_DB`` of float32 at every trace point of a small run; the
measurement behind the refusals is benchmark/precision_drift.py
(``python -m benchmark.precision_drift``).
"""
from __future__ import annotations

import torch

TOLERANCE_DB = 0.1  # largest |PSNR(precision) − PSNR(float32)| allowed at any trace point of a small run
ALLOWED = ("32-true", "64-true")
REFUSED_REASON = (
    "{precision} cannot keep the PSNR trace within 0.1 dB of float32 at every trace point: measured "
    "(python -m benchmark.precision_drift; docs/conventions.md §20), bf16 autocast errs in the network's convolutions and "
    "gradients (the loss reduction and the data term already run in float32; keeping the operator in float32 changes "
    "nothing), and moves the trace of a 64² vanilla DIP run by more than 0.1 dB within its first trace points, over 20× "
    "what float32 rounding does at lr 1e-3; use run.precision: 32-true (or auto)")


def check_precision(precision: str) -> str | None:
    """Why ``precision`` is refused (None: allowed); ``auto`` is allowed and resolved per device."""
    if precision == "auto" or precision in ALLOWED:
        return None
    return REFUSED_REASON.format(precision=precision)


def auto_precision(device: str) -> tuple[str, str]:
    """(precision, why) that ``run.precision: auto`` uses on ``device`` (``cpu`` | ``cuda`` | …):
    the fastest choice that holds the tolerance. bf16 / fp16 autocast does not hold it on any
    device (module doc); TF32 matmuls round like bf16 in their inputs' mantissa and stay off."""
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return "32-true", "cuda: bf16/fp16 autocast and TF32 exceed the 0.1 dB trace tolerance (docs/conventions.md §20)"
    return "32-true", f"{device}: bf16 autocast exceeds the 0.1 dB trace tolerance (docs/conventions.md §20)"


def resolve_precision(precision: str, accelerator: str) -> tuple[str, dict]:
    """The Lightning precision a run uses and what is recorded in its metrics (``precision``)."""
    if precision != "auto":
        return precision, {"requested": precision, "used": precision}
    device = "cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else \
        "mps" if accelerator == "mps" else "cpu"
    used, why = auto_precision(device)
    return used, {"requested": "auto", "used": used, "device": device, "reason": why}
