"""DeepRED: DIP powered by RED (Mataev, Milanfar, Elad, ICCV Workshops 2019; Survey A §III-D),
solved by ADMM with fixed-point updates of the auxiliary image."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import deepinv as dinv
import torch

from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt, Range, Tunable
from methods.base import DIPConfig, DIPModule
from methods.denoisers import DenoiserConfig, NLMDenoiserConfig, build_denoiser
from methods.registry import register_method


@dataclass
class DeepREDConfig(DIPConfig):
    # Reference code github.com/GaryMataev/DeepRED, denoising.ipynb train_via_admm() (its
    # deblurring / super-resolution notebooks use lr 0.004 / 0.001, λ 0.02 / 0.05, μ 0.04 / 0.06).
    # Measured with these defaults (32² astronaut crop, σ = 25/255, noisy 20.7 dB, 3-scale 16-channel
    # U-Net, 300 steps, peak / final dB): f_θ(z) 27.1 / 26.2, x − u 27.5 / 27.2; vanilla DIP with the
    # same lr and input 26.7 / 25.2.
    lr: PositiveFloat = 0.008  # Adam lr of θ (code LR=0.008)
    grad_clip: Annotated[float, Range(gt=0)] | None = None  # the code does not clip
    # λ, weight of the RED term (code beta=.5, "lambda in the article")
    lam: Annotated[NonNegativeFloat, Tunable(0.05, 5.0)] = 0.5
    # μ, ADMM penalty (code mu=.5; its deblurring / super-resolution notebooks 0.04 / 0.06: the code tunes it per
    # task). It weighs a per-pixel mean against the data term ℓ, whose scale is the task's: on 15-coil k-space ℓ is a
    # mean over 15× more entries than pixels, so μ = 0.5 held f_θ(z) near the lagging x − u (measured on the MRI
    # calibration abdomen, 600 iterations, λ 0.05: peak 19.7 dB at μ 0.5, 20.9 at 0.033; vanilla DIP with the same
    # input 20.6, with its own input 24.6). Tuned per task family, as the code does. MRI calibration (2000 its): best at
    # λ 0.05, μ 0.005, still below vanilla DIP and still rising at 2000; on the abdomen 25.8 dB, 28.4 with vanilla's
    # input (1-channel Gaussian, no perturbation), vanilla 31.1: half the gap is this code's input, half the coupling
    # Natural images keep the code's μ 0.5 (λ tuned alone): the λ × μ sweep on denoising was flat (26.8-27.5 dB) and
    # picked λ = μ = 5, which on the calibration photo 0003 lost 1.7 dB on inpainting (26.55 vs 28.22 at λ 1.08,
    # μ 0.5) and ended at 19.1 dB on deblurring (24.1 at μ 0.5): μ is per task, as in the code, not per family
    mu: Annotated[PositiveFloat, Tunable(0.005, 5.0)] = 0.5
    sigma: PositiveFloat = 3 / 255  # σ passed to the denoiser (code sigma_f=3 on the 0–255 scale)
    update_every: PositiveInt = 10  # the denoised image D(x) is refreshed every n-th iteration (code update_iter=10)
    clip: bool = True  # clip x to [0, 1] on [0, 1]-range tasks (code np.clip(x, 0, 1)); never on signed images
    # The code's denoising notebook raises λ and μ by 0.03 (and the threshold by 0.01 dB) whenever
    # PSNR(f_θ(z), y) exceeds 20 dB; not in the paper nor its other notebooks: off by default.
    reg_increase: NonNegativeFloat = 0.0  # code (denoising only): 0.03
    reg_threshold: float = 20.0  # dB of PSNR(A f_θ(z), y), data range 1 (code threshold=20)
    reg_threshold_step: NonNegativeFloat = 0.01  # dB (code threshold_step=0.01)
    # z: 32 channels of U[0, 0.1) perturbed by N(0, 0.033²) every step (code: get_noise(32, 'noise'),
    # noise_factor=0.033); the output average of the code is run.ema_decay (0.99, docs/conventions.md §6)
    input_dist: Literal["gaussian", "uniform"] = "uniform"
    input_channels: PositiveInt = 32
    input_noise_std: NonNegativeFloat = 0.033
    # the code's denoising notebook uses non-local means (its super-resolution notebook BM3D)
    denoiser: DenoiserConfig = field(default_factory=NLMDenoiserConfig)


@register_method("deepred", DeepREDConfig, "DeepRED: DIP + RED with an external denoiser, by ADMM with fixed-point x-updates",
                 "Survey A §III-D; Mataev, Milanfar, Elad 2019", smoke_config={"lr": 0.01, "update_every": 2})
class DeepRED(DIPModule):
    """min_{θ,x} ℓ(A f_θ(z), y) + λ ρ(x)  s.t. x = f_θ(z),  ρ(x) = ½ xᵀ(x − D(x))  (RED,
    ∇ρ(x) = x − D(x), deepinv's ``RED`` prior), by ADMM with a scaled dual u. Per iteration k:

    1. one Adam step on θ for ℓ(A f_θ(z), y) + μ·mean((f_θ(z) − x + u)²)   (f⁽ᵏ⁾ = the output of
       this step, before the update);
    2. every ``update_every``-th iteration D̂ ← D_σ(x⁽ᵏ⁻¹⁾) (at first D̂ = x⁽⁰⁾, as the code);
       x⁽ᵏ⁾ = (λ D̂ + μ (f⁽ᵏ⁾ + u⁽ᵏ⁻¹⁾)) / (λ + μ), the fixed-point step of the x-subproblem's
       optimality condition λ(x − D(x)) + μ(x − f − u) = 0 (DeepRED eq 11), clipped to [0, 1];
    3. u⁽ᵏ⁾ = u⁽ᵏ⁻¹⁾ + f⁽ᵏ⁾ − x⁽ᵏ⁾, i.e. u is the running sum of the residuals f − x.

    x⁽⁰⁾ = the task's degraded image (the code: y), u⁽⁰⁾ = 0. The code refreshes D̂ in a
    background thread, so it lags one refresh behind; here it is synchronous. ``x`` is f⁽ᵏ⁾
    (the code's output average is ``run.ema_decay``); x and x − u (the output of the code's
    deblurring notebook) are the iterates ``admm_x`` and ``admm_x_minus_u``."""

    automatic_optimization = False  # the x- and u-updates follow the network step

    def __init__(self, cfg: DeepREDConfig, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.red = dinv.optim.RED(build_denoiser(cfg.denoiser))
        self.register_buffer("x_aux", problem.degraded.detach().clone().float())  # x⁽⁰⁾
        self.register_buffer("u", torch.zeros(1, *problem.x_shape))  # u⁽⁰⁾ = 0
        self.register_buffer("denoised", self.x_aux.clone())  # D̂ before the first refresh: x⁽⁰⁾ (code: f_x = x)
        self.lam, self.mu, self.threshold = cfg.lam, cfg.mu, cfg.reg_threshold
        self.clip_x = cfg.clip and problem.x_range == "unit"

    def training_step(self, batch, batch_idx):
        cfg = self.cfg
        f = self.net(self.network_input())
        loss = self.data_fidelity(self.physics.A(f), batch["y"]) + self.mu * (f - (self.x_aux - self.u)).pow(2).mean()
        self.gradient_step(loss, "net")  # 1
        with torch.no_grad():
            f = f.detach()
            if self.iteration % cfg.update_every == 0:  # 2: D̂ = D_σ(x⁽ᵏ⁻¹⁾)
                self.denoised = self.red.denoiser(self.x_aux, cfg.sigma)
            x = (self.lam * self.denoised + self.mu * (f + self.u)) / (self.lam + self.mu)
            self.x_aux = x.clamp(0, 1) if self.clip_x else x
            self.u = self.u + (f - self.x_aux)  # 3
            if cfg.reg_increase > 0:  # the code's schedule (denoising notebook)
                fit = -10 * torch.log10((self.physics.A(f) - batch["y"]).pow(2).mean())
                if fit > self.threshold:
                    self.lam, self.mu = self.lam + cfg.reg_increase, self.mu + cfg.reg_increase
                    self.threshold += cfg.reg_threshold_step
            primal = (f - self.x_aux).pow(2).mean().sqrt()
        return {"loss": loss, "x": f, "iterates": {"admm_x": self.x_aux, "admm_x_minus_u": self.x_aux - self.u},
                "scalars": {"primal_residual": primal, "lam": self.lam, "mu": self.mu}}
