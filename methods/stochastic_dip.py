"""Stochastic DIP (Survey B §5.3): each iteration's gradient uses one random subset of the
measurement rows (CT angles), rescaled so that it is unbiased."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.schema import PositiveInt
from datamodules.operators.subsets import angle_block_operators, angle_subsets
from methods.base import DIPModule, NormalisedDIPConfig
from methods.registry import register_method


@dataclass
class StochasticDIPConfig(NormalisedDIPConfig):
    subsets: PositiveInt = 4  # N_b: the angles split into N_b interleaved subsets, one drawn per iteration


@register_method("stochastic_dip", StochasticDIPConfig,
                 "Stochastic DIP: each step's data term on one random subset of the CT angles, unbiasedly rescaled",
                 "Survey B §5.3", smoke_config={"subsets": 2})
class StochasticDIP(DIPModule):
    """Split ℓ(Ax, y) = Σ_b ℓ_b(A_b x, y_b) over N_b angle subsets; iteration k draws b uniformly
    from the run's generator and steps θ on w_b·ℓ_b(A_b f_θ(z), y_b), with w_b chosen so that
    E_b[w_b ∇ℓ_b] = ∇ℓ: w_b = N_b for the summed data terms (Survey B: N_b/2·‖A_b f_θ(z) − y_b‖²),
    and N_b·m_b/m for ``loss: mse`` (a mean over the m_b entries of y_b, m in all)."""

    requires = frozenset({"ct", "linear"})
    unbatchable = ("draws each iteration's angle block from its own seeded generator inside training_step; runs "
                   "optimised together (docs/conventions.md §19) would share one draw")

    def __init__(self, cfg: StochasticDIPConfig, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.subset_angles = angle_subsets(problem.y.shape[-2], cfg.subsets)
        self.blocks = torch.nn.ModuleList(angle_block_operators(self.physics, self.subset_angles))
        m = problem.y.numel()
        self.weights = [cfg.subsets * (len(a) * problem.y.shape[-1] / m if cfg.loss == "mse" else 1.0)
                        for a in self.subset_angles]

    def subset_loss(self, x: torch.Tensor, y: torch.Tensor, b: int) -> torch.Tensor:
        """w_b·ℓ_b(A_b x, y_b)."""
        angles = torch.as_tensor(self.subset_angles[b], device=y.device)
        return self.weights[b] * self.data_fidelity(self.blocks[b].A(x), y.index_select(-2, angles))

    def training_step(self, batch, batch_idx):
        b = int(torch.randint(len(self.blocks), (1,), generator=self.generator, device=self.z.device))  # 1: draw b
        x = self.net(self.network_input())  # 2: x̃ = f_θ(z)
        loss = self.subset_loss(x, batch["y"], b)  # 3: w_b ℓ_b(A_b x̃, y_b)
        return {"loss": loss, "x": x.detach(), "scalars": {"subset": b}}  # 4: gradient step on θ (Lightning)

    def run_metrics(self) -> dict:
        return {**super().run_metrics(), "stochastic": {"subsets": len(self.blocks),
                                                        "rows_per_step": int(self.blocks[0].out_shape[1])}}
