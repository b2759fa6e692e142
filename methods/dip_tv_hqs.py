"""DIP + TV by half-quadratic splitting (Survey B Alg. 4, eqs 22–25)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import deepinv as dinv
import torch

from core.schema import PositiveFloat, PositiveInt, Tunable
from methods.base import DIPModule, NormalisedDIPConfig
from methods.registry import register_method


@dataclass
class DIPTVHQSConfig(NormalisedDIPConfig):
    lr: PositiveFloat = 1e-4  # handbook run_dip.py --lr 1e-4
    # λ of Alg. 4 (μ_k = λ/α_k). Handbook 1.0 on its ÷‖A‖⁴ sum of residuals; in our units (docs/conventions.md §1)
    # that is 1.0·‖A‖⁴/‖A‖_F² = 0.53 on the Survey B walnut problem (60×128 rays at 501²: ‖A‖² = 46.5,
    # ‖A‖_F² = 4084), which survey_b_table2 sets; the default was that value under the old spectral rule.
    # The HQS objective ℓ + β‖x−u‖²_mean + (2βα_k)·TV_mean(u) weighs TV by 2λ, whatever the schedule.
    splitting_strength: Annotated[PositiveFloat, Tunable(1e-3, 10.0)] = 2e-4
    tv_max: PositiveFloat = 0.5  # α_1, prox step of the first outer iteration (handbook run_dip.py "tv_min" 0.5)
    tv_min: PositiveFloat = 0.01  # α_K, of the last (handbook "tv_max" 1e-2: its names are swapped, the effect decreases)
    inner_steps: PositiveInt = 10  # N_sub network steps per u-update (handbook --inner_steps 10)
    tv_iterations: PositiveInt = 100  # iterations of deepinv's TV prox (handbook TVPrior(n_it_max=100))


@register_method("dip_tv_hqs", DIPTVHQSConfig, "DIP + TV by half-quadratic splitting (TV prox on u)",
                 "Survey B Alg. 4, eqs (22)-(25)", smoke_config={"inner_steps": 2, "tv_iterations": 10})
class DIPTVHQS(DIPModule):
    """min_{θ,u} ℓ(A f_θ(z), y) + β_k ‖f_θ(z) − u‖²_mean + TV-prox on u (Survey B eq 22, Alg. 4):
    one network step per iteration on the first two terms; every N_sub-th iteration closes
    outer step k with u ← prox_{α_k TV}(f_θ(z)) (deepinv TVPrior); α_k decreases geometrically
    from tv_max to tv_min over the K = ⌈max_steps / N_sub⌉ outer steps, β_k = λ / α_k.

    The u-update closing outer step k is done at the start of the next iteration, on that
    iteration's output x⁽ᵏ⁾ = f_θ(z) (θ after the N_sub-th step, Alg. 4 line 9), so it costs no
    extra network evaluation; the prox is cold-started (a fresh TVPrior), so u is a function
    of f_θ(z) and α_k only. A complex image is regularised channel-wise (TV(Re) + TV(Im))."""

    unbatchable = ("keeps its splitting variable u as module state, replaced inside training_step every N_sub-th "
                   "iteration by deepinv's TV prox (which updates its own tensors in place, refused by vmap); a "
                   "vmapped step is a pure function of the stacked parameters and buffers (docs/conventions.md §19)")

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        outer = max(1, math.ceil(max_steps / cfg.inner_steps))
        alphas = torch.logspace(math.log10(cfg.tv_max), math.log10(cfg.tv_min), outer, dtype=torch.float64)
        self.alphas = alphas.tolist()  # α_1 … α_K
        self.register_buffer("u", torch.zeros(1, *problem.x_shape))  # 1: u⁽⁰⁾ = 0

    def outer_step(self, iteration: int) -> int:
        """Index k (0-based) of the outer step that network iteration ``iteration`` belongs to."""
        return (iteration - 1) // self.cfg.inner_steps

    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input())  # 5: x̃ = f_θ(z)
        k = self.outer_step(self.iteration)
        if self.iteration > 1 and (self.iteration - 1) % self.cfg.inner_steps == 0:  # 9 (of outer step k−1)
            tv = dinv.optim.TVPrior(n_it_max=self.cfg.tv_iterations)
            self.u = tv.prox(x.detach(), gamma=self.alphas[k - 1])  # u⁽ᵏ⁻¹⁾ = prox_{α_{k−1} TV}(f_θ(z))
        beta = self.cfg.splitting_strength / self.alphas[k]  # 3: μ_k = λ / α_k
        fidelity = self.data_fidelity(self.physics.A(x), batch["y"])
        loss = fidelity + beta * (x - self.u).pow(2).mean()  # 6: L(θ) = ℓ(A x̃, y) + μ_k ‖x̃ − u⁽ᵏ⁻¹⁾‖²_mean
        return {"loss": loss, "x": x.detach(), "iterates": {"u": self.u},  # 7: gradient step on θ (Lightning)
                "scalars": {"fidelity": fidelity.detach(), "beta": beta, "tv_gamma": self.alphas[k - 1] if k > 0 else 0.0}}
