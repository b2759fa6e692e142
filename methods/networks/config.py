"""Network configs, one dataclass per architecture chosen by ``name`` (configs mirror
code), and the registry that maps a name to its config class and network class."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch.nn as nn

from core.registry import TaggedRegistry
from core.schema import NonNegativeInt, PositiveInt


@dataclass
class ConvNetConfig:
    """Fields shared by the encoder–decoder networks. ``skip_channels[s]`` is the width
    of the skip connection that joins the decoder on its way up from scale ``s`` (scale 0
    = full resolution; entry 0 unused by ``unet``). Defaults are Survey B's 6×128, skips
    [0,0,0,0,4,4]."""

    name: str
    scales: PositiveInt = 6
    channels: PositiveInt = 128
    skip_channels: list[NonNegativeInt] = field(default_factory=lambda: [0, 0, 0, 0, 4, 4])
    norm: Literal["group", "batch", "none"] = "group"
    upsample: Literal["nearest", "bilinear"] = "nearest"
    output: Literal["auto", "sigmoid", "linear"] = "auto"  # auto: sigmoid for [0,1] tasks, linear for signed

    def __post_init__(self):
        if len(self.skip_channels) != self.scales:
            raise ValueError(f"skip_channels needs one entry per scale ({self.scales}), got {self.skip_channels}")


@dataclass
class UNetConfig(ConvNetConfig):
    """Survey B §6.2 U-Net (after Barbano et al. 2022): GroupNorm, LeakyReLU, nearest
    upsampling, skips at the two lowest scales."""

    name: Literal["unet"] = "unet"

    @property
    def min_size(self) -> int:
        """Smallest input side: the lowest scale must be 1 pixel (2 with BatchNorm, which
        needs more than one value per channel in training mode)."""
        return 2 ** (self.scales - 1) + (self.norm == "batch")


@dataclass
class SkipNetConfig(ConvNetConfig):
    """Original DIP encoder–decoder (Ulyanov et al. 2018), skips at every scale where
    ``skip_channels`` is non-zero. Same defaults as ``unet`` (results stay comparable);
    the paper's own net is ``norm=batch, upsample=bilinear, skip_channels=[4]*scales``."""

    name: Literal["skipnet"] = "skipnet"

    @property
    def min_size(self) -> int:
        """Smallest input side: the 3×3 reflection-padded conv after the deepest
        downsampling needs 2 pixels, i.e. 2**scales + 1."""
        return 2**self.scales + 1


NETWORKS = TaggedRegistry("network")  # name -> (config class, network class built as cls(cfg, in, out, sigmoid))
register_network = NETWORKS.register
network_configs = NETWORKS.configs
NetConfig = NETWORKS.field_type  # the type of a ``net`` field


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(num_groups=min(4, channels), num_channels=channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: group, batch, none")


def build_network(cfg, in_channels: int, out_channels: int, sigmoid: bool) -> nn.Module:
    return NETWORKS.component(cfg)(cfg, in_channels, out_channels, sigmoid)
