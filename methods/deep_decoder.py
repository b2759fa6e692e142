"""Deep Decoder (Heckel & Hand 2019; Survey A §III-C1; Survey B §3.2, eq (8), Prop. 1)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from methods.base import DIPConfig, DIPModule
from methods.networks.decoder import DeepDecoderConfig
from methods.registry import register_method


@dataclass
class DeepDecoderMethodConfig(DIPConfig):
    lr: PositiveFloat = 0.008  # Survey A Fig. 6 (reference code fit(): LR = 0.01)
    grad_clip: PositiveFloat | None = None  # reference fit.py: no gradient clipping
    input: Literal["noise"] = "noise"  # a fixed random seed of the network's low resolution (n0 = k × seed pixels)
    input_dist: Literal["gaussian", "uniform"] = "uniform"  # reference fit.py: uniform_() · 1/10
    input_scale: NonNegativeFloat = 0.1  # reference fit.py: 1/10
    input_channels: PositiveInt | None = None  # None = net.channels k (reference: num_channels_up[0] = k)
    net: DeepDecoderConfig = field(default_factory=DeepDecoderConfig)  # 6 layers × 128 channels (Survey A)


@register_method("deep_decoder", DeepDecoderMethodConfig,
                 "Deep Decoder: under-parameterised 1×1-conv decoder with a fixed low-resolution random seed",
                 "Heckel & Hand 2019; Survey A §III-C1, Fig. 6; Survey B §3.2 eq (8)",
                 smoke_config={"net": {"layers": 3, "channels": 8}})
class DeepDecoderDIP(DIPModule):
    """min_θ ℓ(A G_θ(z₀), y) with G the deep decoder (Survey B eq (8): x⁽ⁱ⁺¹⁾ = cn(ReLU(Uᵢ x⁽ⁱ⁾ Cᵢ)))
    and z₀ a fixed random seed of shape (k, ⌈H/2^(d−1)⌉, ⌈W/2^(d−1)⌉); Adam on θ, as vanilla DIP.
    The regularisation is the architecture: fewer parameters than pixels (Survey A: 100,224 for
    6 × 128 against 786,432 values of a 512² RGB image), so it cannot fit noise (Prop. 1)."""

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(replace(cfg, input_channels=cfg.input_channels or cfg.net.channels), problem, seed, max_steps)

    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input())  # G_θ(z₀)
        loss = self.data_fidelity(self.physics.A(x), batch["y"])
        return {"loss": loss, "x": x.detach()}
