"""DIP + RED by accelerated proximal gradient (Survey B Algorithm 5; DeepRED, Mataev et al. 2019;
APG for RED, Reehorst & Schniter 2018)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import deepinv as dinv
import torch

from core.schema import NonNegativeFloat, PositiveFloat, Range, Tunable
from methods.base import DIPModule
from methods.denoisers import DenoiserSplittingConfig, build_denoiser
from methods.registry import register_method


@dataclass
class DIPREDAPGConfig(DenoiserSplittingConfig):
    # Survey B handbook (implementations.md §1.5 item 7) unless noted. Its penalty L·ρ·½Σ(x − u)²,
    # ρ = 0.01/n, next to ‖Ax − y‖²/‖A‖⁴ is λ ≈ 0.005·‖A‖⁴/‖A‖_F² ≈ 2.6e-3 in our units at 501² (‖A‖_F² = 4084,
    # simulated walnut; docs/conventions.md §13), i.e. RED switched off. λ was measured instead: 64² denoising,
    # σ = 25/255, TV denoiser, 1500 steps, lr 0.01, 4-scale 32-channel U-Net, no EMA; peak / final dB (vanilla DIP
    # 27.6 / 21.7): λ = 0.25: 27.4 / 22.1, 1: 28.1 / 23.9, 2.5: 26.6 / 25.8, 10: diverges (x chases u)
    # (measured as 2λ with the coupling written ½λL; docs/conventions.md §13).
    lam: Annotated[NonNegativeFloat, Tunable(9.21e-4, 20.0)] = 1.0  # λ of Alg. 5 line 5, on a per-pixel mean; measured, see above
    mixing: Annotated[float, Range(ge=1)] = 1.2  # L of Alg. 5 (L > 1; 1 = u ← D_σ(v)); handbook --mixing_weight 1.2,
    # which the handbook parses but never passes (it runs with L = 1, where its u = D/L − (1 − 1/L)v, a sign
    # away from line 10, does not matter); used here, with line 10 as printed
    sigma: PositiveFloat = 0.01  # σ of the denoiser D_σ (handbook --denoise_strength 0.01)


@register_method("dip_red_apg", DIPREDAPGConfig, "DIP + RED (regularisation by denoising) by accelerated proximal gradient",
                 "Survey B Alg. 5",
                 smoke_config={"lr": 0.01, "inner_steps": 2, "denoiser": {"name": "tv", "n_it_max": 10}})
class DIPREDAPG(DIPModule):
    """min_θ D(A f_θ(z)) + λ·ρ_RED(f_θ(z)),  ρ_RED(x) = ½ xᵀ(x − D_σ(x)),  ∇ρ_RED = x − D_σ(x)  (Survey B §4.3).

    Per iteration one Adam step on D(A f_θ(z)) + λL·mean((f_θ(z) − u)²) (Alg. 5 lines 4–6); every
    N_sub-th iteration the Nesterov extrapolation v = x⁽ᵏ⁾ + (t_{k−1} − 1)/t_k·(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾) and
    the RED gradient step u = v − (1/L)(v − D_σ(v)) = (1/L) D_σ(v) + (1 − 1/L) v (lines 8–10, with
    deepinv's ``RED`` prior). ``x`` is the EMA of f_θ(z) when ``exp_weight`` > 0 (the raw output is
    the iterate ``raw``); ``u`` is an iterate; ``t`` a scalar."""

    automatic_optimization = False  # auxiliary updates after the network step

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.red = dinv.optim.RED(build_denoiser(cfg.denoiser))
        self.register_buffer("u", torch.zeros(1, *problem.x_shape))  # 1: u⁽⁰⁾ = 0
        self.t, self.x_prev, self.avg = 1.0, None, None  # t₀ = 1

    def training_step(self, batch, batch_idx):
        cfg = self.cfg
        x = self.net(self.network_input())  # 4: x̃ = f_θ(z)
        loss = self.data_fidelity(self.physics.A(x), batch["y"]) + cfg.lam * cfg.mixing * (x - self.u).pow(2).mean()  # 5 (§13)
        self.gradient_step(loss, "net")  # 6
        if self.iteration % cfg.inner_steps == 0:
            with torch.no_grad():
                x_k = self.net(self.z)  # x⁽ᵏ⁾ = f_θ(z) after N_sub steps
                t_next = (1 + math.sqrt(1 + 4 * self.t**2)) / 2  # 8: t_k
                v = x_k if self.x_prev is None else x_k + (self.t - 1) / t_next * (x_k - self.x_prev)  # 9 (t₀ = 1: v = x⁽¹⁾)
                self.u = v - self.red.grad(v, sigma_denoiser=cfg.sigma) / cfg.mixing  # 10
                self.t, self.x_prev = t_next, x_k
        x = x.detach()
        self.avg = x if self.avg is None else cfg.exp_weight * self.avg + (1 - cfg.exp_weight) * x
        iterates = {"u": self.u, **({"raw": x} if cfg.exp_weight > 0 else {})}
        return {"loss": loss, "x": self.avg, "iterates": iterates, "scalars": {"t": self.t}}
