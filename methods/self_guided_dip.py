"""Self-guided DIP (Liang et al. 2025; Survey B Algorithm 7, eqs 34–35; Survey A eq 14)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Literal

import torch

from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt, Range, Tunable
from methods.base import DIPModule, NormalisedDIPConfig
from methods.registry import register_method


@dataclass
class SelfGuidedDIPConfig(NormalisedDIPConfig):
    # Defaults: the original paper's settings as Survey A Fig. 6 states them (natural-image denoising).
    # Their terms are both ‖·‖² over pixels, i.e. at A = I the ratio of two per-pixel means, which is
    # exactly our `normalised` D + λ·mean(·) (docs/conventions.md §1), so λ carries over unchanged.
    # Survey B handbook (walnut, implementations.md §1.5 item 5): lr 1e-4, lr_z 0.1, α 0.01 on
    # N·Σₙ‖f(z+ηₙ) − z‖² (each realisation; eq 34 and we: the mean x̃) next to ‖Ax̄ − y‖²/‖A‖⁴,
    # 4 realisations, rel. noise 0.01·max z, EMA 0.99, FBP input. In our units that α is
    # ≈ 0.01·N²·n·‖A‖⁴/‖A‖_F² ≈ 2e4 at 501² (‖A‖² = 46.5, ‖A‖_F² = 4084 for our simulated walnut), and it changes
    # with the image size: pass it per suite, not as a default.
    lr: PositiveFloat = 3e-4  # Survey A Fig. 6 (handbook: 1e-4)
    # λ of Alg. 7 line 4, on a per-pixel mean (Survey A Fig. 6); see above for the handbook
    lam: Annotated[NonNegativeFloat, Tunable(0.01, 1e5)] = 0.1
    learn_input: bool = True  # z is optimised with θ (Alg. 7 line 5), parameter group "input"
    input_lr: PositiveFloat | None = 0.1  # Adam lr of z (official demo and handbook: 0.1)
    input_dist: Literal["gaussian", "uniform"] = "uniform"  # official demo: z = rand(·), U[0, 1)
    input_scale: NonNegativeFloat = 1.0
    input_channels: PositiveInt | None = None  # None = the image's channels (eq 34 compares f_θ(z+η) with z)
    realisations: PositiveInt = 4  # N_η of Alg. 7 line 3 (handbook 4)
    rel_noise: NonNegativeFloat = 0.5  # η ~ U[0, rel_noise·max|z|): Liang et al. max|z|/2 (Survey B §4.4); handbook 0.01
    ema_weight: Annotated[float, Range(ge=0, lt=1)] = 0.99  # α of Alg. 7 line 6 / γ of eq 35 (handbook exp_weight 0.99)
    ema_init: Literal["zero", "first"] = "zero"  # x⁽⁰⁾ = 0 (Alg. 7 line 1, handbook) | x⁽¹⁾ = x̃ (as run.ema_decay)


@register_method("self_guided_dip", SelfGuidedDIPConfig, "self-guided DIP: learnable input, noisy-input average, EMA output",
                 "Survey B Alg. 7, eqs (34)-(35); Survey A eq (14)",
                 smoke_config={"realisations": 2, "lr": 0.01})
class SelfGuidedDIP(DIPModule):
    """min_{θ,z} D(A x̃) + λ·mean((x̃ − z)²),  x̃ = (1/N) Σᵢ f_θ(z + ηᵢ),  ηᵢ ~ U[0, ρ·max|z|)  (eq 34),
    both θ and z by Adam; the reconstruction is the EMA x⁽ᵏ⁾ = α x⁽ᵏ⁻¹⁾ + (1−α) x̃ (eq 35).

    ``x`` is the EMA; the raw average x̃ is the named iterate ``raw``. Manual optimisation
    gives θ and z their own Adam and their own gradient clipping, as the handbook does. The N
    realisations go through the network as one batch (a BatchNorm net normalises over all N)."""

    automatic_optimization = False

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(replace(cfg, input_channels=cfg.input_channels or problem.x_shape[0]), problem, seed, max_steps)
        if tuple(self.z.shape[1:]) != tuple(problem.x_shape):
            raise ValueError(f"self-guided DIP needs z in image space {problem.x_shape}, got {tuple(self.z.shape[1:])}")
        self.ema: torch.Tensor | None = None

    def training_step(self, batch, batch_idx):
        z = self.z
        zs = z.expand(self.cfg.realisations, *z.shape[1:])  # the N realisations as one batch (as the handbook)
        x = self.net(zs + self.cfg.rel_noise * z.detach().abs().max() * self.rand_like(zs))
        x = x.mean(0, keepdim=True)  # 3: x̃ = (1/N) Σᵢ f_θ(z + ηᵢ),  ηᵢ ~ U[0, ρ·max|z|)
        penalty = (x - z).pow(2).mean()
        loss = self.data_fidelity(self.physics.A(x), batch["y"]) + self.cfg.lam * penalty  # 4: L(θ, z)
        self.gradient_step(loss)  # 5: step on (θ, z): groups "net" and "input"
        x = x.detach()
        prev = self.ema if self.ema is not None else torch.zeros_like(x) if self.cfg.ema_init == "zero" else x
        self.ema = self.cfg.ema_weight * prev + (1 - self.cfg.ema_weight) * x  # 6: x⁽ᵏ⁾ = α x⁽ᵏ⁻¹⁾ + (1 − α) x̃
        return {"loss": loss, "x": self.ema, "iterates": {"raw": x}, "scalars": {"self_guidance": penalty.detach()}}
