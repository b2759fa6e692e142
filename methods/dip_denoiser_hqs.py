"""DIP + denoiser by half-quadratic splitting (Survey B §4.3, eqs 32–33 with u ← D_σ; Algorithm 4
with the TV prox replaced by a denoiser)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import deepinv as dinv
import numpy as np
import torch

from core.schema import NonNegativeFloat, PositiveFloat, Tunable
from methods.base import DIPModule
from methods.denoisers import DenoiserSplittingConfig, build_denoiser
from methods.registry import register_method


@dataclass
class DIPDenoiserHQSConfig(DenoiserSplittingConfig):
    # Survey B handbook (implementations.md §1.5 item 8, overeng_rundip.py) unless noted. Its penalty
    # (60/σ_k)·mean((x − u)²) next to ‖Ax − y‖²/‖A‖⁴ is λ ≈ 60·‖A‖⁴/‖A‖_F² ≈ 32 in our units at 501²
    # (‖A‖² = 46.5, ‖A‖_F² = 4084, simulated walnut; docs/conventions.md §1, §13).
    # λ was measured: 64² denoising, σ = 25/255, TV denoiser, 1500 steps,
    # lr 0.01, 4-scale 32-channel U-Net, no EMA; peak / final dB (vanilla DIP 27.6 / 21.7): λ = 0.015:
    # 27.7 / 23.6, 0.025: 27.9 / 25.0, 0.05: 28.0 / 26.7, 0.15: 25.3 / 24.4, 0.5: 21.5 / 19.9 (measured as
    # 2λ with the coupling written ½μ_k; docs/conventions.md §13).
    # λ of eq 32 / Alg. 4 line 3: μ_k = λ/σ_k, on a per-pixel mean; measured
    splitting: Annotated[NonNegativeFloat, Tunable(1e-3, 3.0)] = 0.05
    sigma_max: PositiveFloat = 0.5  # σ_1 of the log-spaced decreasing schedule σ_k (handbook: 0.5 → 0.01)
    sigma_min: PositiveFloat = 0.01  # σ_K (handbook)

    def __post_init__(self):
        if self.sigma_min > self.sigma_max:
            raise ValueError(f"sigma_min = {self.sigma_min} must not exceed sigma_max = {self.sigma_max} (σ_k decreases)")


@register_method("dip_denoiser_hqs", DIPDenoiserHQSConfig, "DIP + plug-and-play denoiser by half-quadratic splitting",
                 "Survey B §4.3 eqs (32)-(33), Alg. 4 with a denoiser",
                 smoke_config={"lr": 0.01, "inner_steps": 2, "denoiser": {"name": "tv", "n_it_max": 10}})
class DIPDenoiserHQS(DIPModule):
    """min_{θ,u} D(A f_θ(z)) + μ_k·mean((f_θ(z) − u)²) + J(u), alternately (Survey B eqs 32–33):
    one Adam step on θ per iteration, and every N_sub-th iteration u ← D_{σ_k}(f_θ(z)), the prox
    of J replaced by a denoiser (deepinv's ``PnP`` prior), with σ_k log-spaced from σ_max down to
    σ_min over the run and μ_k = λ/σ_k increasing. ``x`` is the EMA of f_θ(z) when ``exp_weight``
    > 0 (the raw output is the iterate ``raw``); ``u`` is an iterate; ``sigma`` and ``mu`` scalars."""

    automatic_optimization = False  # the u-update follows the network step

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.prior = dinv.optim.PnP(build_denoiser(cfg.denoiser))
        self.sigmas = np.geomspace(cfg.sigma_max, cfg.sigma_min, max(1, max_steps // cfg.inner_steps)).tolist()
        self.register_buffer("u", torch.zeros(1, *problem.x_shape))  # Alg. 4 line 1: u⁽⁰⁾ = 0
        self.avg = None

    def training_step(self, batch, batch_idx):
        cfg = self.cfg
        sigma = self.sigmas[min((self.iteration - 1) // cfg.inner_steps, len(self.sigmas) - 1)]  # σ_k of outer step k
        mu = cfg.splitting / sigma  # Alg. 4 line 3: μ_k = λ/σ_k
        x = self.net(self.network_input())  # 5: x̃ = f_θ(z)
        loss = self.data_fidelity(self.physics.A(x), batch["y"]) + mu * (x - self.u).pow(2).mean()  # 6 (eq 32; no ½: §13)
        self.gradient_step(loss, "net")  # 7
        if self.iteration % cfg.inner_steps == 0:
            with torch.no_grad():
                self.u = self.prior.prox(self.net(self.z), sigma_denoiser=sigma)  # 9 (eq 33): u⁽ᵏ⁾ = D_{σ_k}(f_θ(z))
        x = x.detach()
        self.avg = x if self.avg is None else cfg.exp_weight * self.avg + (1 - cfg.exp_weight) * x
        iterates = {"u": self.u, **({"raw": x} if cfg.exp_weight > 0 else {})}
        return {"loss": loss, "x": self.avg, "iterates": iterates, "scalars": {"sigma": sigma, "mu": mu}}
