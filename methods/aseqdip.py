"""Autoencoding sequential DIP, aSeqDIP (Alkhouri et al. 2024; Survey B Algorithm 8, eqs 36–37; Survey A eq 15)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Literal

import torch

from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt, Tunable
from methods.base import DIPModule, NormalisedDIPConfig
from methods.registry import register_method


@dataclass
class ASeqDIPConfig(NormalisedDIPConfig):
    # Defaults: the original paper's settings as Survey A Fig. 6 states them (natural-image denoising;
    # official Aseq_DIP_denoising.py: MSE(f, y) + λ·MSE(f, z), 2 inner steps). Both terms are per-pixel
    # means there, as in our `normalised` D + λ·mean(·) (docs/conventions.md §1), so λ carries over.
    # Survey B handbook (walnut, implementations.md §1.5 item 6): lr 1e-4, 5 inner steps, FBP input,
    # 0.01·(m/n)·Σ(f − z)² next to Σ(Af − y)²/‖A‖⁴, i.e. both terms m × a mean (per measurement, per
    # pixel). Our data term is a per-pixel mean already, so we drop m/n; in our units the handbook's
    # weight is λ = 0.01·m·‖A‖⁴/‖A‖_F² ≈ 41 at 501² (‖A‖² = 46.5, ‖A‖_F² = 4084, m = 7680 for our simulated walnut;
    # 13 at 64²): it depends on size and geometry, so pass it per suite, not as a default.
    lr: PositiveFloat = 1e-4  # Survey A Fig. 6 (handbook 1e-4; official CT 2e-4)
    # λ of eq 36, on a per-pixel mean (Survey A Fig. 6; official denoising/CT 1, deblur 5)
    lam: Annotated[NonNegativeFloat, Tunable(0.1, 100.0)] = 1.0
    # N_sub of Alg. 8 (official denoising/inpainting/deblurring 2; CT 10; handbook 5)
    inner_steps: Annotated[PositiveInt, Tunable(1, 10, integer=True)] = 2
    # z⁽⁰⁾: "degraded" = the task's classical image: the noisy / masked / blurred photo, FBP for CT,
    # zero-filled for MRI, as the official scripts per task (handbook: FBP; Survey B text: Aᵀy = "adjoint")
    input: Literal["degraded", "noise", "fbp", "adjoint"] = "degraded"
    input_channels: PositiveInt | None = None  # None = the image's channels (eq 37 feeds f_θ(z) back as z)

    def __post_init__(self):
        if self.learn_input:
            raise ValueError("aSeqDIP replaces z by f_θ(z) (eq 37); it does not learn it (learn_input: false)")


@register_method("aseqdip", ASeqDIPConfig, "autoencoding sequential DIP: input replaced by the output every N steps",
                 "Survey B Alg. 8, eqs (36)-(37); Survey A eq (15)", smoke_config={"lr": 0.01})
class ASeqDIP(DIPModule):
    """K stages of N network steps on  D(A f_θ(z⁽ᵏ⁻¹⁾)) + λ·mean((f_θ(z⁽ᵏ⁻¹⁾) − z⁽ᵏ⁻¹⁾)²)  (eq 36),
    then z⁽ᵏ⁾ = f_θ(z⁽ᵏ⁻¹⁾) without gradient (eq 37); one Adam for the whole run.

    One iteration is one network step (docs/conventions.md §2): the input is replaced after
    every N-th iteration, so K = run.max_steps / N. ``x`` is the network output of the
    step; the input z⁽ᵏ⁾ after the step (Alg. 8 returns z_K) is the named iterate ``z``."""

    automatic_optimization = False  # the input update (line 7) needs θ after the step

    def __init__(self, cfg, problem, seed, max_steps):
        channels = cfg.input_channels or problem.x_shape[0]
        base_cfg = replace(cfg, input="noise" if cfg.input == "degraded" else cfg.input, input_channels=channels)
        super().__init__(base_cfg, problem, seed, max_steps)
        self.cfg = replace(cfg, input_channels=channels)
        if cfg.input == "degraded":  # local input kind (methods/inputs.py has noise / fbp / adjoint)
            self.z = problem.degraded.detach().clone().to(self.z)
        if tuple(self.z.shape[1:]) != tuple(problem.x_shape):
            raise ValueError(f"aSeqDIP needs z in image space {problem.x_shape}, got {tuple(self.z.shape[1:])}")

    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input())  # 3: x̃ = f_θ(z⁽ᵏ⁻¹⁾)
        penalty = (x - self.z).pow(2).mean()
        loss = self.data_fidelity(self.physics.A(x), batch["y"]) + self.cfg.lam * penalty  # 4: L(θ), eq 36
        self.gradient_step(loss, "net")  # 5: gradient step on θ
        if self.iteration % self.cfg.inner_steps == 0:  # 7: end of stage k: z⁽ᵏ⁾ = f_θ(z⁽ᵏ⁻¹⁾), eq 37
            with torch.no_grad():
                self.z = self.net(self.z)
        return {"loss": loss, "x": x.detach(), "iterates": {"z": self.z}, "scalars": {"autoencoding": penalty.detach()}}
