"""Vanilla DIP with the FBP image as network input (Survey B Alg. 1; Table 2 row
"Vanilla DIP (FBP input)")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.schema import PositiveFloat
from methods.base import DIPModule, NormalisedDIPConfig
from methods.registry import register_method


@dataclass
class VanillaDIPFBPInputConfig(NormalisedDIPConfig):
    lr: PositiveFloat = 1e-4  # handbook run_dip.py --lr 1e-4 (implementations.md §1.5)
    # z = x_FBP (handbook --model_inp fbp, its argparse default); adjoint: z = Aᵀy / max|Aᵀy| for non-CT linear tasks
    input: Literal["fbp", "adjoint"] = "fbp"


@register_method("vanilla_dip_fbp_input", VanillaDIPFBPInputConfig, "vanilla DIP with the FBP image (or Aᵀy) as input",
                 "Survey B Alg. 1, Table 2 (FBP input)", smoke_config={"input": "adjoint"})
class VanillaDIPFBPInput(DIPModule):
    """min_θ ℓ(A f_θ(z), y) with z = x_FBP fixed (Survey B eq 3, Alg. 1): vanilla DIP whose
    input is the task's FBP image instead of noise."""

    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input())  # 2: x̃ = f_θ(z), z = x_FBP
        loss = self.data_fidelity(self.physics.A(x), batch["y"])  # 3: L(θ) = ℓ(A x̃, y)
        return {"loss": loss, "x": x.detach()}  # 4: gradient step on θ (Lightning)
