"""Vanilla DIP (Ulyanov et al. 2018; Survey B Algorithm 1, eq 3)."""
from __future__ import annotations

from dataclasses import dataclass

from methods.base import DIPConfig, DIPModule
from methods.registry import register_method


@dataclass
class VanillaDIPConfig(DIPConfig):
    pass


@register_method("vanilla_dip", VanillaDIPConfig, "vanilla Deep Image Prior", "Survey B Alg. 1; Survey A eq (3)")
class VanillaDIP(DIPModule):
    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input())  # 2: x̃ = f_θ(z)
        loss = self.data_fidelity(self.physics.A(x), batch["y"])  # 3: L(θ) = ℓ(A x̃, y)
        return {"loss": loss, "x": x.detach()}  # 4: gradient step on θ (Lightning)
