"""DIP + denoiser by ADMM (Survey B Algorithm 6)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import deepinv as dinv
import torch

from core.schema import NonNegativeFloat, PositiveFloat, Tunable
from methods.base import DIPModule
from methods.denoisers import DenoiserSplittingConfig, build_denoiser
from methods.registry import register_method


@dataclass
class DIPDenoiserADMMConfig(DenoiserSplittingConfig):
    # Survey B handbook (implementations.md §1.5 item 9, overeng_rundip.py) unless noted. Its penalty
    # ½(10/n)‖x − u + λ‖² next to ‖Ax − y‖²/‖A‖⁴ is β ≈ 5·‖A‖⁴/‖A‖_F² ≈ 2.6 in our units at 501²
    # (‖A‖² = 46.5, ‖A‖_F² = 4084, simulated walnut; docs/conventions.md §1, §13).
    # β was measured: 64² denoising, σ = 25/255, TV denoiser with
    # σ = 0.01, 1500 steps, lr 0.01, 4-scale 32-channel U-Net, no EMA; peak / final dB (vanilla DIP
    # 27.6 / 21.7): β = 0.15: 28.0 / 21.9, 0.5: 28.0 / 23.2, 1.5: 28.5 / 24.9, 5: 28.4 / 28.2 (peak at 1497)
    # (measured as 2β with the coupling written ½β; docs/conventions.md §13).
    # ADMM coupling penalty β of Alg. 6 line 5, on a per-pixel mean; measured
    beta: Annotated[NonNegativeFloat, Tunable(0.05, 5000.0)] = 5.0
    sigma: PositiveFloat = 0.01  # σ of the denoiser D_σ (handbook --denoise_strength 0.01)


@register_method("dip_denoiser_admm", DIPDenoiserADMMConfig, "DIP + plug-and-play denoiser by ADMM",
                 "Survey B Alg. 6",
                 smoke_config={"lr": 0.01, "inner_steps": 2, "denoiser": {"name": "bm3d", "profile": "lc"}})  # default denoiser
class DIPDenoiserADMM(DIPModule):
    """min_θ D(A f_θ(z)) + J(f_θ(z)) by ADMM on the constraint x = u (Survey B Alg. 6): one Adam
    step per iteration on D(A f_θ(z)) + β·mean((f_θ(z) − u + λ)²), and every N_sub-th iteration
    u ← D_σ(x + λ) (the prox of J replaced by a denoiser, deepinv's ``PnP`` prior) and the scaled
    dual λ ← λ + (x − u), x = f_θ(z). ``x`` is the EMA of f_θ(z) when ``exp_weight`` > 0 (the raw
    output is the iterate ``raw``); ``u`` is an iterate; ``residual`` = RMS(x − u) a scalar."""

    automatic_optimization = False  # the u- and dual updates follow the network step

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.prior = dinv.optim.PnP(build_denoiser(cfg.denoiser))
        self.register_buffer("u", torch.zeros(1, *problem.x_shape))  # 1: u⁽⁰⁾ = 0
        self.register_buffer("dual", torch.zeros(1, *problem.x_shape))  # 1: λ⁽⁰⁾ = 0 (μ in Alg. 6)
        self.avg, self.residual = None, 0.0

    def training_step(self, batch, batch_idx):
        cfg = self.cfg
        x = self.net(self.network_input())  # 4: x̃ = f_θ(z)
        loss = self.data_fidelity(self.physics.A(x), batch["y"]) + cfg.beta * (x - self.u + self.dual).pow(2).mean()  # 5 (§13)
        self.gradient_step(loss, "net")  # 6
        if self.iteration % cfg.inner_steps == 0:
            with torch.no_grad():
                x_k = self.net(self.z)  # 8: x⁽ᵏ⁾ = f_θ(z)
                self.u = self.prior.prox(x_k + self.dual, sigma_denoiser=cfg.sigma)  # 9: u⁽ᵏ⁾ = D_σ(x⁽ᵏ⁾ + λ⁽ᵏ⁻¹⁾)
                self.dual = self.dual + (x_k - self.u)  # 10: λ⁽ᵏ⁾ = λ⁽ᵏ⁻¹⁾ + (x⁽ᵏ⁾ − u⁽ᵏ⁾)
                self.residual = float((x_k - self.u).pow(2).mean().sqrt())
        x = x.detach()
        self.avg = x if self.avg is None else cfg.exp_weight * self.avg + (1 - cfg.exp_weight) * x
        iterates = {"u": self.u, **({"raw": x} if cfg.exp_weight > 0 else {})}
        return {"loss": loss, "x": self.avg, "iterates": iterates, "scalars": {"residual": self.residual}}
