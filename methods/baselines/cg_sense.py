"""CG-SENSE (Pruessmann et al. 2001): conjugate gradients on the normal equations
(AᴴA + λI) x = Aᴴy of the multi-coil model y = M F S x; the classical reference of the
MRI task (Survey A Fig 5 row 1 compares DIP methods against such baselines)."""
from __future__ import annotations

from dataclasses import dataclass

from core.schema import NonNegativeFloat, PositiveInt
from datamodules.operators.mri import sense_least_squares
from methods.baselines.base import Baseline
from methods.registry import register_method


@dataclass
class CGSenseConfig:
    iterations: PositiveInt = 10  # CG steps from x = 0; few steps regularise by early stopping
    tikhonov: NonNegativeFloat = 0.0  # λ of the ℓ2 penalty λ‖x‖²


@register_method("cg_sense", CGSenseConfig, "CG-SENSE: CG on (AᴴA + λI)x = Aᴴy (multi-coil MRI)", "Pruessmann et al. 2001",
                 smoke_config={"iterations": 3})
class CGSense(Baseline):
    requires = frozenset({"mri_multicoil"})

    def reconstruct(self):
        physics = self.problem.physics
        self.info = {"cg_iterations": self.cfg.iterations, "tikhonov": self.cfg.tikhonov}
        return sense_least_squares(physics, self.problem.y, self.cfg.iterations, self.cfg.tikhonov)
