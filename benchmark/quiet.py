"""Quiet Lightning: one helper for the CLI and the executor workers (both import it downward)."""
from __future__ import annotations

import warnings


def quiet_lightning() -> None:
    """Lightning's info logs and its harmless warnings silenced (CLI and workers)."""
    import logging

    import lightning.pytorch  # noqa: F401  (it sets its loggers' levels on import; override after)

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")
    warnings.filterwarnings("ignore", message=".*IterableDataset.*")
