"""Filtered back-projection (the classical CT reference of Survey B §6 and Survey A
Fig 5): the task's FBP image — ASTRA FBP for parallel beam, an early-stopped LSQR
pseudo-inverse where ASTRA has no CPU FBP (fan beam, the walnut matrix)."""
from __future__ import annotations

from dataclasses import dataclass

from methods.baselines.base import Baseline
from methods.registry import register_method


@dataclass
class FBPConfig:
    pass


@register_method("fbp", FBPConfig, "filtered back-projection (LSQR pseudo-inverse where no CPU FBP exists)",
                 "Survey B §6; Survey A Fig 5")
class FBP(Baseline):
    requires = frozenset({"fbp"})

    def reconstruct(self):
        self.info = {"fbp_method": self.problem.info.get("fbp_method", "FBP")}
        return self.problem.extras["fbp"]
