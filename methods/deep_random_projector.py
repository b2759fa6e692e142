"""Deep Random Projector, DRP (Li, Wang, Zhuang & Sun, CVPR 2023; Survey A §III-C4, eq (20))."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import torch.nn as nn

from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt, Tunable
from methods.base import DIPConfig, DIPModule, ParamGroup
from methods.dip_tv_joint import mean_tv
from methods.networks import NetConfig, SkipNetConfig
from methods.registry import register_method

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


def norm_affine_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The affine weights and biases of every normalisation layer (BatchNorm, GroupNorm, …) of ``module``."""
    return [p for m in module.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)]


def drp_network() -> SkipNetConfig:
    # DRP code (1_Denoising/train_denoising.py): the original DIP "skip" net reduced to num_scales=1,
    # 64 channels (Main_Start.py width = 64), 4 skip channels, bilinear upsampling, BatchNorm
    return SkipNetConfig(scales=1, channels=64, skip_channels=[4], norm="batch", upsample="bilinear")


@dataclass
class DRPConfig(DIPConfig):
    # Defaults: the official code's denoising settings (1_Denoising/Main_Start.py, train_denoising.py);
    # super-resolution uses lr 0.5, TV 0.75, 1 input channel; inpainting lr 0.05, TV 0.01, 2 channels.
    lr: PositiveFloat = 0.1  # Adam lr of the normalisation parameters (and of z, input_lr = null)
    grad_clip: PositiveFloat | None = None  # DRP code: no gradient clipping
    # λ of eq (20) on the mean anisotropic TV (DRP tv1_loss = Σ|D₁x|+|D₂x| / n). Range: on its own network the CT
    # calibration chose 2, the top of the old range 0.05-2 (and MRI its bottom), so it spans 0.01-20
    tv_weight: Annotated[NonNegativeFloat, Tunable(0.01, 20.0)] = 0.45
    root_fidelity: bool = True  # DRP code: sqrt(MSE) + λ·TV; false: ℓ + λ·TV as written in Survey A eq (20)
    input_norm: bool = True  # f′ starts with a BatchNorm on z (Survey A eq (20); DRP code BNNet), affine trained
    learn_input: bool = True  # z is optimised (eq (20): min over z and θ_BN)
    input_channels: PositiveInt = 3  # DRP code input_c = 3 (denoising)
    input_scale: NonNegativeFloat = 0.1  # DRP code: z = 0.1·N(0, 1) ("Choice 1"; input_dist gaussian)
    net: NetConfig = field(default_factory=drp_network)

    def __post_init__(self):
        if not self.learn_input:
            raise ValueError("DRP optimises the input z (Survey A eq (20)); learn_input must be true")


@register_method("deep_random_projector", DRPConfig,
                 "Deep Random Projector: train only the input and the normalisation layers of a frozen random "
                 "reduced-depth net, + TV", "Li et al. CVPR 2023; Survey A §III-C4, eq (20)",
                 smoke_config={"net": {"channels": 8}})
class DeepRandomProjector(DIPModule):
    """min_{z, θ_N} D(A f′_θ(z)) + λ·TV(f′_θ(z))  (Survey A eq (20)): every convolution of f′ keeps its
    random initial weights; only z and the affine parameters θ_N of the normalisation layers (the input
    BatchNorm and the network's own) are optimised, by one Adam. D is √MSE in the DRP code
    (``root_fidelity``), TV the anisotropic mean of deepinv's forward differences (``mean_tv``).
    Works with any registered network that has normalisation layers (the deep decoder too)."""

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.input_norm = nn.BatchNorm2d(self.z.shape[1]) if cfg.input_norm else nn.Identity()
        self.norm_params = norm_affine_parameters(self.input_norm) + norm_affine_parameters(self.net)
        if not norm_affine_parameters(self.net):
            raise ValueError(f"DRP trains only normalisation layers, and net {cfg.net.name!r} with norm = "
                             f"{getattr(cfg.net, 'norm', None)!r} has none; use net.norm: batch (or group)")
        trainable = {id(p) for p in self.norm_params}
        for p in self.net.parameters():
            p.requires_grad_(id(p) in trainable)  # the random projector: convolutions frozen

    def parameter_groups(self):
        return [ParamGroup("norm", self.norm_params, self.cfg.lr, self.cfg.optimizer),
                ParamGroup("input", [self.z], self.cfg.input_lr or self.cfg.lr, self.cfg.optimizer)]

    def training_step(self, batch, batch_idx):
        x = self.net(self.input_norm(self.network_input()))  # f′_θ(z)
        fidelity = self.data_fidelity(self.physics.A(x), batch["y"])
        if self.cfg.root_fidelity:
            fidelity = fidelity.sqrt()
        tv = mean_tv(x, "anisotropic")
        loss = fidelity + self.cfg.tv_weight * tv  # eq (20)
        return {"loss": loss, "x": x.detach(), "scalars": {"tv": tv.detach()}}
