"""Shared test fixtures. Real data lives outside the project (../shared/data); tests
that need it skip with a reason when it is absent (a user's fresh clone)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path of a real data folder in ../shared/data, or skip the test with a reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} not present (only on the development machines)")
    return path


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
