"""DIP + weighted TV by ADMM (Cascarano et al. 2021; Survey B eqs 26–30)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import deepinv as dinv
import torch

from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt, Tunable
from methods.base import DIPModule, NormalisedDIPConfig
from methods.registry import register_method


@dataclass
class DIPWTVADMMConfig(NormalisedDIPConfig):
    lr: PositiveFloat = 1e-3  # Cascarano et al.'s code (ADMM-DIPTV and cDIP-RED-DIP-WTV notebooks: LR = 1e-3)
    # γ of eqs (27)-(30), written γ·mean‖·‖² next to our un-halved ℓ (docs/conventions.md §13): the ADMM-DIPTV
    # notebook's (beta_t/2)·MSE next to an un-halved MSE with beta_t = 10 (also the handbook's admm_wtv.py
    # admm_weight) is γ = beta_t/2 = 5
    admm_weight: Annotated[PositiveFloat, Tunable(5e-4, 50.0)] = 5.0
    # adaptive: α_i = s·ℓ(A f_θ(z), y) / ‖(D f_θ(z))_i‖ re-evaluated at every update (Survey B §4.2; s below);
    # fixed: α_i = tv_weight (plain TV)
    weights: Literal["adaptive", "fixed"] = "adaptive"
    # s: ADMM-DIPTV notebook weight ‖Af−y‖²/(6hw)/‖q_i‖ (RGB, n = 3hw) = ℓ/(2‖q_i‖) in our units. Survey B's
    # "for example" α_i = (1/n)‖Af−y‖²/‖(Df)_i‖ (for ½‖Af−y‖² + Σα_i‖·‖) would be s = 2: measured on a 32² σ=50
    # denoising task (200 steps, lr 0.01) it flattens the image (final 12.9 dB < 15.0 dB noisy); s = 0.5: peak 20.2 dB
    adaptive_scale: PositiveFloat = 0.5
    tv_weight: NonNegativeFloat = 5e-4  # fixed weights: as dip_tv_joint's tv_weight (handbook 1e-5 in our units)
    update_every: PositiveInt = 1  # K: u- and λ-updates every K network steps (cDIP-RED-DIP-WTV notebook: inner_iter = 1)


def nabla(x: torch.Tensor) -> torch.Tensor:
    """D x: forward differences (B, C, H, W, 2), deepinv's TV discretisation, channel by channel."""
    return dinv.models.TVDenoiser.nabla(x)


@register_method("dip_wtv_admm", DIPWTVADMMConfig, "DIP + weighted TV by ADMM (split u = D f_θ(z))",
                 "Survey B eqs (26)-(30); Cascarano et al. 2021")
class DIPWTVADMM(DIPModule):
    """min_θ ℓ(A f_θ(z), y) + mean_i α_i ‖(D f_θ(z))_i‖₂ (Survey B eq 26, per-pixel mean) by ADMM
    on the split u = D f_θ(z) with the scaled dual w = λ/γ (eqs 27–30):

        θ ← one gradient step on ℓ(A f_θ(z), y) + γ · mean‖D f_θ(z) − u + w‖²        (28)
        u ← prox_{(α/2γ)‖·‖₂,₁}(D f_θ(z) + w)  (deepinv L12Prior: group shrinkage)   (29)
        w ← w + (D f_θ(z) − u),   i.e. λ ← λ + γ(D f_θ(z) − u)                       (30)

    (29)-(30) run every K-th network step, at the start of the next iteration on its output
    x⁽ᵏ⁾ = f_θ(z) (the θ after the K-th step; no extra network evaluation). Adaptive weights
    α_i = s·ℓ/‖(Dx)_i‖ are recomputed from that x at every update. Complex images: channel-wise.
    As every term of our loss is Survey B's times 2/n (docs/conventions.md §13), γ and w are the
    paper's and α (a norm, not a square) is twice the paper's, hence α/2γ in (29)."""

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        grad_shape = (1, *problem.x_shape, 2)
        self.register_buffer("v", torch.zeros(grad_shape))  # u of eq (27) (v here: u is HQS's image iterate)
        self.register_buffer("w", torch.zeros(grad_shape))  # scaled dual w = λ/γ
        self.shrink = dinv.optim.L12Prior(l2_axis=-1)

    def tv_weights(self, x: torch.Tensor, dx: torch.Tensor, y: torch.Tensor) -> torch.Tensor | float:
        """α_i, shape (1, C, H, W, 1) for adaptive weights (Survey B §4.2), else a number."""
        if self.cfg.weights == "fixed":
            return self.cfg.tv_weight
        level = self.weight_level(x, y)
        return self.cfg.adaptive_scale * level / torch.linalg.vector_norm(dx, dim=-1, keepdim=True).clamp_min(1e-8)

    def weight_level(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | float:
        """The numerator of the adaptive weights: the data term ℓ(A x, y) (Survey B §4.2)."""
        return self.data_fidelity(self.physics.A(x), y)

    def admm_update(self, x: torch.Tensor, y: torch.Tensor, step: float = 1.0) -> None:
        """Eqs (29)-(30) at the network output x (dual ascent step ``step``; ADMM: 1)."""
        dx = nabla(x)
        alpha = self.tv_weights(x, dx, y)
        self.v = self.shrink.prox(dx + self.w, gamma=alpha / (2 * self.cfg.admm_weight))  # (29)
        self.w = self.w + step * (dx - self.v)  # (30), scaled form

    def training_step(self, batch, batch_idx):
        y = batch["y"]
        x = self.net(self.network_input())
        if self.iteration > 1 and (self.iteration - 1) % self.cfg.update_every == 0:
            with torch.no_grad():
                self.admm_update(x.detach(), y)  # (29), (30) after K network steps
        fidelity = self.data_fidelity(self.physics.A(x), y)
        split = (nabla(x) - self.v + self.w).pow(2).sum(-1).mean()
        loss = fidelity + self.cfg.admm_weight * split  # (28); grows with the dual, fidelity decreases
        return {"loss": loss, "x": x.detach(), "scalars": {"fidelity": fidelity.detach(),
            "dual_norm": 2 * self.cfg.admm_weight * self.w.pow(2).sum(-1).mean().sqrt(),  # RMS of our dual 2γw (paper: γw; §13)
            "primal_residual": (nabla(x.detach()) - self.v).pow(2).sum(-1).mean().sqrt()}}
