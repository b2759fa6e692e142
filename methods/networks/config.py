"""One network config for both architectures (configs mirror code)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn


@dataclass
class NetConfig:
    """Architecture of the DIP network.

    name: ``unet`` (Survey B §6.2, after Barbano et al. 2022: GroupNorm, LeakyReLU,
    nearest upsampling, skips at the two lowest scales) or ``skipnet`` (Ulyanov et
    al. 2018 encoder–decoder: BatchNorm in training mode, bilinear upsampling, skips
    at every scale). ``skip_channels[s]`` is the width of the skip connection that
    joins the decoder on its way up from scale ``s`` (scale 0 = full resolution,
    entry 0 unused by ``unet``). Defaults are Survey B's 6×128, skips [0,0,0,0,4,4].
    """

    name: str = "unet"
    scales: int = 6
    channels: int = 128
    skip_channels: list = field(default_factory=lambda: [0, 0, 0, 0, 4, 4])
    norm: str = "group"  # group | batch | none
    upsample: str = "nearest"  # nearest | bilinear
    output: str = "auto"  # auto (sigmoid for [0,1] tasks, linear for signed) | sigmoid | linear


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(num_groups=min(4, channels), num_channels=channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: group, batch, none")


def build_network(cfg: NetConfig, in_channels: int, out_channels: int, sigmoid: bool) -> nn.Module:
    from methods.networks.skipnet import SkipNet
    from methods.networks.unet import UNet

    if len(cfg.skip_channels) != cfg.scales:
        raise ValueError(f"net.skip_channels needs one entry per scale ({cfg.scales}), got {cfg.skip_channels}")
    nets = {"unet": UNet, "skipnet": SkipNet}
    if cfg.name not in nets:
        raise ValueError(f"unknown network {cfg.name!r}; valid: {', '.join(nets)}")
    return nets[cfg.name](cfg, in_channels, out_channels, sigmoid)
