"""DIP + TV, joint gradient-based optimisation (Baguer et al. 2020; Survey B Alg. 3, eq 21)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import deepinv as dinv
import torch

from core.schema import NonNegativeFloat, PositiveFloat, Tunable
from methods.base import DIPModule, NormalisedDIPConfig
from methods.registry import register_method


def mean_tv(x: torch.Tensor, kind: str = "isotropic") -> torch.Tensor:
    """TV as a per-pixel mean (docs/conventions.md §1): (1/n) Σ_{c,i} ‖(D x_c)_i‖ with D the
    forward differences of deepinv's TV (TVPrior.nabla), the 2-norm over the two directions (isotropic,
    Survey B §4.2) or the 1-norm (anisotropic, the handbook's tv_loss). Channel by channel:
    a complex image (2 real channels) gets TV(Re x) + TV(Im x), the TV whose prox deepinv's
    TVPrior computes. (vector_norm's subgradient at 0 is 0, so flat regions give no NaN.)"""
    d = dinv.models.TVDenoiser.nabla(x)  # (B, C, H, W, 2), the differences TVPrior uses
    norms = torch.linalg.vector_norm(d, dim=-1) if kind == "isotropic" else d.abs().sum(-1)
    return norms.mean()


@dataclass
class DIPTVJointConfig(NormalisedDIPConfig):
    lr: PositiveFloat = 1e-4  # handbook run_dip.py --lr 1e-4
    # α of eq (21). Handbook 1e-5 on its ÷‖A‖⁴ sum of residuals + summed TV; multiplying its loss by ‖A‖⁴/‖A‖_F²
    # gives our ℓ + (1e-5·n·‖A‖⁴/‖A‖_F²)·TV_mean: 1.3 on the Survey B walnut problem (60×128 rays at 501²:
    # ‖A‖² = 46.5, ‖A‖_F² = 4084, n = 501²), which survey_b_table2 sets. Default: measured under the spectral rule
    # (docs/conventions.md §1), on walnut 64² (tiny net, lr 5e-3, 2000 steps): α = 0 / 5e-4 / 5e-3 / 1e-2 peak
    # 25.3 / 25.1 / 20.6 / 18.2 dB; in today's units these α are 115× larger (0.058 for 5e-4).
    # Measured on walnut 64² (tiny net, lr 5e-3, 2000 steps): α = 0 / 5e-4 / 5e-3 / 1e-2 peak 25.3 / 25.1 / 20.6 / 18.2 dB
    tv_weight: Annotated[NonNegativeFloat, Tunable(1e-3, 3.0)] = 5e-4
    tv: Literal["isotropic", "anisotropic"] = "isotropic"  # Survey B §4.2 (isotropic) | handbook tv_loss (anisotropic)


@register_method("dip_tv_joint", DIPTVJointConfig, "DIP + TV, joint gradient steps on ℓ + α·TV(f_θ(z))",
                 "Survey B Alg. 3, eq (21); Baguer et al. 2020")
class DIPTVJoint(DIPModule):
    """min_θ ℓ(A f_θ(z), y) + α TV(f_θ(z)) by gradient steps through the (non-smooth) TV
    (Survey B eq 21, Alg. 3); TV is the per-pixel mean gradient magnitude."""

    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input())  # 2: x̃ = f_θ(z)
        fidelity = self.data_fidelity(self.physics.A(x), batch["y"])
        tv = mean_tv(x, self.cfg.tv)
        loss = fidelity + self.cfg.tv_weight * tv  # 3: L(θ) = ℓ(A x̃, y) + α TV(x̃)
        return {"loss": loss, "x": x.detach(), "scalars": {"tv": tv.detach(), "fidelity": fidelity.detach()}}  # 4: step
