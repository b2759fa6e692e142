"""Double over-parameterisation, DOP (You, Zhu, Qu, Ma, NeurIPS 2020; Survey A §III-C3,
eqs 18–19): the sparse corruption of y modelled as g⊙g − h⊙h, with small initialisation and
discrepant learning rates."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch

from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt, Range
from methods.base import DIPConfig, DIPModule, ParamGroup
from methods.registry import register_method


@dataclass
class DOPConfig(DIPConfig):
    # Reference code: github.com/ChongYou/robust-image-recovery (denoising.py): plain SGD, lr 1 on θ and
    # 500 on (g, h) (--alg sgd --lr 1 --lr_c 500), 150 000 iterations. These are the defaults: the
    # implicit bias that keeps s = g⊙g − h⊙h sparse needs gradient steps proportional to g (SGD).
    # Survey A Fig. 6 states Adam, lr 1e-4 (no ratio); survey_a_fig6 sets that explicitly.
    # Measured (32² astronaut crop, salt-and-pepper density 0.3, noisy 9.7 dB, 3-scale 16-channel
    # U-Net, peak / final dB): code's SGD lr 1 ratio 500: 23.8 / 22.7 after 300 steps (after 150: 98 % of
    # s's energy on the corrupted entries); with Adam s does not stay sparse (Adam's per-entry step does not
    # depend on g's size, which the small-initialisation bias needs) and absorbs the image: lr 1e-4
    # ratio 500: 12.2 / 12.1 (300 steps), ratio 1: 16.3 / 12.3 (1000 steps, 42 % of s's energy on the
    # corrupted entries); lr 1e-3 ratio 10: 15.6 / 11.4; lr 1e-2 ratio 1: 16.4 / 11.1, ratio 0.1:
    # 17.4 / 12.2; vanilla DIP (Adam lr 1e-2): 18.4 / 10.1.
    optimizer: Literal["adam", "sgd"] = "sgd"  # of both θ and (g, h) (code: sgd; Survey A Fig. 6: adam)
    lr: PositiveFloat = 1.0  # of θ (code --lr 1 with sgd; Survey A Fig. 6: 1e-4 with adam)
    lr_ratio: PositiveFloat = 500.0  # α = lr(g, h) / lr(θ) of eq 19, λ = 1/α (code: --lr_c 500 / --lr 1)
    init_scale: Annotated[float, Range(gt=0)] = 1e-5  # g, h ~ init_scale·N(0, 1) (code: normal_()*1e-5)
    grad_clip: Annotated[float, Range(gt=0)] | None = None  # the code does not clip
    # z: 32 channels of U[0, 0.1) perturbed by N(0, (1/30)²) every step (code: get_noise(32, 'noise'),
    # reg_noise_std = 1/30, as the original DIP)
    input_dist: Literal["gaussian", "uniform"] = "uniform"
    input_channels: PositiveInt = 32
    input_noise_std: NonNegativeFloat = 1 / 30


@register_method("double_overparam", DOPConfig,
                 "double over-parameterisation (DOP): sparse corruption g⊙g − h⊙h with discrepant learning rates",
                 "Survey A eqs (18)-(19); You et al. NeurIPS 2020", smoke_config={"lr": 0.01, "lr_ratio": 1.0})
class DoubleOverparam(DIPModule):
    """min_{θ,g,h} ℓ(A f_θ(z) + g⊙g − h⊙h, y)  (eq 18), g and h of y's shape initialised at
    ``init_scale``·N(0, 1) from the run's generator, both groups stepped on the same loss with
    learning rates lr (θ) and α·lr (g, h) (eq 19: the ratio α acts as the weight 1/λ of ‖s‖₁).

    ``x`` is f_θ(z) (the image). The recovered sparse term s = g⊙g − h⊙h (measurement space;
    :meth:`sparse_term`) is reported by the scalars ``s_l1`` = mean|s| and ``s_sparsity_ratio`` =
    ‖s‖₁ / (√n ‖s‖₂) ∈ (0, 1]: 1 for a vector of constant magnitude, √(k/n) for k equal spikes.
    (Not a named iterate: its PSNR against the image would mean nothing.)"""

    automatic_optimization = False  # two optimisers (θ and g, h), one backward

    def __init__(self, cfg: DOPConfig, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.g = torch.nn.Parameter(torch.zeros_like(problem.y))
        self.h = torch.nn.Parameter(torch.zeros_like(problem.y))
        with torch.no_grad():  # small initialisation, seeded by the run's generator
            self.g.copy_(cfg.init_scale * self.randn_like(self.g))
            self.h.copy_(cfg.init_scale * self.randn_like(self.h))

    def parameter_groups(self):
        return [*super().parameter_groups(),
                ParamGroup("corruption", [self.g, self.h], self.cfg.lr * self.cfg.lr_ratio, self.cfg.optimizer)]

    def sparse_term(self) -> torch.Tensor:
        return self.g * self.g - self.h * self.h  # s = g⊙g − h⊙h

    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input())
        loss = self.data_fidelity(self.physics.A(x) + self.sparse_term(), batch["y"])  # eq 18
        self.gradient_step(loss)  # θ and (g, h), each with its own optimiser and learning rate
        with torch.no_grad():
            s = self.sparse_term()
            l1, l2 = s.abs().sum(), s.pow(2).sum().sqrt()
            ratio = l1 / (l2 * s.numel() ** 0.5) if l2 > 0 else torch.zeros(())
        return {"loss": loss, "x": x.detach(), "scalars": {"s_l1": l1 / s.numel(), "s_sparsity_ratio": ratio}}
