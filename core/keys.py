"""Names of stored metrics and trace columns: one home, imported by the callbacks that
write them, the runner and the reports that read them.

metrics.json: ``peak_psnr``, ``peak_step``, ``peak_ssim``, ``final_psnr``, ``final_ssim``,
``final_step``, ``final_loss``, ``final_data_residual``, ``first_psnr``, ``ema_final_psnr``, …; per stopping rule
``es.<rule>.psnr|ssim|step|stop_step|data_residual`` (``es.<rule>.gap_db``, peak − pick, is
derived by the reports); per named iterate
``iterate.<name>.final_psnr|peak_psnr|peak_step``; ``has_ground_truth`` (False: every
PSNR/SSIM key is absent, docs/conventions.md §11).

trace.parquet: ``step`` (iteration, ≤ 0 in preparatory stages), ``stage``, ``loss``,
``data_residual`` (‖Ax − y‖₂), ``wall_time_s`` (seconds since training started), ``psnr``,
``ssim`` (every ``ssim_every``-th row), ``psnr_ema``, ``es.<rule>.g`` (the rule's monitored value),
``psnr_<iterate>``, and each scalar a method returns.
"""
from __future__ import annotations

PEAK_PSNR, PEAK_STEP, PEAK_SSIM = "peak_psnr", "peak_step", "peak_ssim"
FINAL_PSNR, FINAL_SSIM, FINAL_STEP, FINAL_LOSS = "final_psnr", "final_ssim", "final_step", "final_loss"
DEGRADED_PSNR = "degraded_psnr"
RESIDUAL, FINAL_RESIDUAL = "data_residual", "final_data_residual"  # data residual ‖Ax − y‖₂ (trace column, final metric)
HAS_GT = "has_ground_truth"
FIRST_PSNR = "first_psnr"  # PSNR of x^(1), the first reconstruction iterate
WALL_TIME = "wall_time_s"  # trace column: seconds since training started (metrics.json: the whole run's)
TRACE_RESERVED = {"step", "stage", "loss", "psnr", "ssim", "psnr_ema", RESIDUAL, WALL_TIME}


def es(rule: str, what: str) -> str:
    """Metric key of a stopping rule's result, e.g. ``es.running_variance.psnr``."""
    return f"es.{rule}.{what}"


def es_rules(keys) -> list[str]:
    """Stopping rules present among metric keys, in order of appearance."""
    return list(dict.fromkeys(k.split(".")[1] for k in keys if isinstance(k, str) and k.startswith("es.") and k.count(".") == 2))


def es_image(rule: str) -> str:
    """Name of a stopping rule's picked image in ``images.npz``, e.g. ``es_running_variance``."""
    return f"es_{rule}"


def iterate_image(name: str) -> str:
    """Name of a named iterate's final image in ``images.npz``, e.g. ``iterate_u``."""
    return f"iterate_{name}"


def iterate(name: str, what: str) -> str:
    """Metric key of a named secondary iterate, e.g. ``iterate.u.final_psnr``."""
    return f"iterate.{name}.{what}"


def iterate_psnr_column(name: str) -> str:
    return f"psnr_{name}"
