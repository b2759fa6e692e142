"""Interface of classical baselines (FBP, TV, zero-filled, CG-SENSE, …)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from core.results import MethodKind
from datamodules.task import Measurement
from methods.protocol import MethodProtocol


class Baseline(MethodProtocol):
    """A reconstruction without a network. ``reconstruct`` returns the image in the
    task's reconstruction space, shape ``(1, *problem.x_shape)``. Like DIP methods it sees
    the measurement only; ``oracle(x)`` scores an image against the ground truth, for
    baselines whose paper protocol tunes a weight against it (Survey B's TV), which then
    says so in ``info``. Iterative baselines may return a trace (rows ``{"step", "loss",
    "psnr"}``) via ``self.trace``."""

    kind = MethodKind.BASELINE
    method_name: str = "baseline"

    def __init__(self, cfg, problem: Measurement, oracle: Callable[[torch.Tensor], float] | None = None):
        self.cfg = cfg
        self.problem = problem
        self.oracle = oracle
        self.trace: list[dict] = []
        self.info: dict = {}

    def reconstruct(self) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
