"""Discrepancy-constrained DIP with adaptive weighted TV (Cascarano et al. 2023; Survey B eq 31)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from core.schema import NonNegativeFloat, PositiveFloat
from methods.dip_wtv_admm import DIPWTVADMM, DIPWTVADMMConfig, nabla
from methods.registry import register_method
from scoring.noise import estimate_noise_sigma, task_noise_sigma


@dataclass
class DIPConstrainedConfig(DIPWTVADMMConfig):
    tau: PositiveFloat = 1.0  # τ of eq (31) (cDIP-RED-DIP-WTV notebooks: tau = 1)
    # task: σ = noise_sigma if set, else the task's stated σ, else estimated; estimate: always estimate_noise_sigma(y, A)
    noise_level: Literal["task", "estimate"] = "task"
    noise_sigma: NonNegativeFloat | None = None  # σ in the units of y (overrides the task's)
    # γ_r of the residual split r = A f_θ(z) − y, written γ_r·ℓ (docs/conventions.md §13). The cDIP notebook's
    # mu_r = 1 on a mean squared error (1 on our ℓ) let the TV split (γ = 5) dominate: on a 32² σ=50 denoising task
    # the residual ended 1.7–3.8× above the bound after 200 steps; γ_r = γ = 5 held it within ±10% of the bound
    # (measured, lr 0.01)
    residual_weight: PositiveFloat = 5.0
    # η: ascent step of both scaled duals, w ← w + η(D f − v), w_r ← w_r + η(A f − y − r). The cDIP-RED notebooks'
    # PGDA takes η = 0.001 (u += 0.001·(out − x), u_r += 0.001·(res − r)) after one Adam step on θ. Exact ADMM's η = 1
    # (our old default) needs θ minimised between dual steps: after one step, w_r, which the ball never bounds
    # (‖w_r‖ = (‖q‖ − ρ)₊), integrates the residual excess; measured on 32² σ=50 denoising (default net, lr 1e-3):
    # ‖w_r‖ = 17ρ by iteration 130, the loss 96× its first value, stored as diverged at 139; η = 0.001: converges
    dual_step: PositiveFloat = 1e-3


@register_method("dip_constrained", DIPConstrainedConfig, "DIP constrained by the discrepancy principle, adaptive WTV",
                 "Survey B eq (31); Cascarano et al. 2023")
class DIPConstrained(DIPWTVADMM):
    """min_θ mean_i α_i ‖(D f_θ(z))_i‖  s.t.  ‖A f_θ(z) − y‖² ≤ τ σ² m   (Survey B eq 31, Morozov),

    m the number of measured entries, σ the noise std (the task's, else estimated from y and A:
    scoring/noise.py), α_i adaptive (dip_wtv_admm). Solved, as Survey B states and Cascarano et
    al.'s cDIP-RED-DIP-WTV code does, by alternating proximal gradient descent-ascent (PGDA) on
    the splits v = D f_θ(z), r = A f_θ(z) − y with scaled duals w, w_r; with x = f_θ(z) at
    iteration k (one network step per iteration; r = w_r = v = w = 0 at k = 1, so the first
    step is vanilla DIP's plus γ·mean‖D x‖²):

        v ← prox_{(α/2γ)‖·‖₂,₁}(D x + w)                (the TV split's proximal step)
        r ← proj_{‖r‖ ≤ ρ}(A x − y + w_r),  ρ = √(τ m) σ   (projection on the discrepancy ball)
        w ← w + η (D x − v),   w_r ← w_r + η (A x − y − r)   (dual ascent, step η)
        θ ← one gradient step on  γ·mean‖D x − v + w‖² + γ_r·ℓ(A x, y + r − w_r)   (no ½: §13)

    (the first three lines every K-th iteration, on that iteration's output, as dip_wtv_admm).
    With r taken at the same x, the data term's x-gradient is 2γ_r (‖q‖ − ρ)₊ Aᵀq̂ / ‖A‖_F² for
    q = A x − y + w_r (default ℓ = ‖·‖²/‖A‖_F²): the constraint reaches θ as the hinge of the ball (zero inside it),
    shifted by its dual. The ascent step is small (η = 10⁻³, the notebooks') because θ takes
    one step, not ADMM's minimisation, between dual steps: the discrepancy dual is not bounded
    (‖w_r‖ = (‖q‖ − ρ)₊ with η = 1, whereas the TV dual w = q − shrink(q) stays below α/γ), so
    with η = 1 it integrates the whole excess at every step while the network is outside the
    ball, and the loss grows with it."""

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        known = cfg.noise_sigma if cfg.noise_sigma is not None else task_noise_sigma(problem.info)
        if cfg.noise_level == "task" and known is not None:
            self.sigma = known
        else:
            self.sigma = estimate_noise_sigma(problem.y, problem.physics)
        y = torch.view_as_real(problem.y) if problem.y.is_complex() else problem.y  # σ is per real component
        self.m = int(torch.count_nonzero(y))  # measured entries (holes and unsampled k-space are stored as 0)
        self.radius = math.sqrt(cfg.tau * self.m) * self.sigma  # ρ: ‖A x − y‖ ≤ √(τ m) σ
        self.register_buffer("r", torch.zeros_like(problem.y))
        self.register_buffer("w_r", torch.zeros_like(problem.y))

    def project(self, q: torch.Tensor) -> torch.Tensor:
        """proj_{‖r‖ ≤ ρ}(q)."""
        return q * min(1.0, self.radius / max(float(q.norm()), 1e-30))

    def training_step(self, batch, batch_idx):
        y = batch["y"]
        x = self.net(self.network_input())
        if self.iteration > 1 and (self.iteration - 1) % self.cfg.update_every == 0:
            with torch.no_grad():
                self.admm_update(x.detach(), y, self.cfg.dual_step)  # v ← prox, w ← w + η(D x − v)
                residual = self.physics.A(x.detach()) - y
                self.r = self.project(residual + self.w_r)
                self.w_r = self.w_r + self.cfg.dual_step * (residual - self.r)
        Ax = self.physics.A(x)
        split = (nabla(x) - self.v + self.w).pow(2).sum(-1).mean()
        loss = self.cfg.admm_weight * split + self.cfg.residual_weight * self.data_fidelity(Ax, y + self.r - self.w_r)  # §13
        discrepancy = float((Ax.detach() - y).pow(2).sum()) / max(self.radius**2, 1e-30)
        return {"loss": loss, "x": x.detach(), "scalars": {
            "discrepancy": discrepancy,  # ‖Ax − y‖² / (τσ²m): ≤ 1 inside the constraint set
            "residual_dual": float(self.w_r.norm()) / max(self.radius, 1e-30),  # ‖w_r‖ / ρ
            "dual_norm": 2 * self.cfg.admm_weight * self.w.pow(2).sum(-1).mean().sqrt(), "sigma": self.sigma}}
