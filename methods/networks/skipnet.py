"""Encoder–decoder "skip" network of the original DIP (Ulyanov et al. 2018, supp.
material): at each scale a skip branch (1×1 conv) and a down branch (strided 3×3,
3×3) whose upsampled output is concatenated with the skip, then 3×3 and 1×1 convs.
Reflection padding; BatchNorm stays in training mode (conventions.md §4)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods.networks.config import SkipNetConfig, norm_layer, register_network


def conv(cin: int, cout: int, kernel: int, norm: str, stride: int = 1) -> nn.Sequential:
    pad = kernel // 2
    layers = [nn.ReflectionPad2d(pad)] if pad else []
    layers += [nn.Conv2d(cin, cout, kernel, stride=stride), norm_layer(norm, cout), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


class Level(nn.Module):
    """One scale: ``cat(skip(x), up(deeper(down(x))))`` then the decoder convs."""

    def __init__(self, cin: int, channels: int, skip: int, deeper: nn.Module | None, norm: str, mode: str):
        super().__init__()
        self.mode = mode
        self.skip = conv(cin, skip, 1, norm) if skip > 0 else None
        self.down = nn.Sequential(conv(cin, channels, 3, norm, stride=2), conv(channels, channels, 3, norm))
        self.deeper = deeper
        bn_in = channels + skip
        self.decode = nn.Sequential(norm_layer(norm, bn_in), conv(bn_in, channels, 3, norm), conv(channels, channels, 1, norm))

    def forward(self, x):
        d = self.down(x)
        if self.deeper is not None:
            d = self.deeper(d)
        d = F.interpolate(d, size=x.shape[-2:], mode=self.mode, **({} if self.mode == "nearest" else {"align_corners": False}))
        if self.skip is not None:
            d = torch.cat([self.skip(x), d], dim=1)
        return self.decode(d)


@register_network("skipnet", SkipNetConfig)
class SkipNet(nn.Module):
    def __init__(self, cfg: SkipNetConfig, in_channels: int, out_channels: int, sigmoid: bool):
        super().__init__()
        c = cfg.channels
        level = None
        for s in range(cfg.scales - 1, -1, -1):
            level = Level(in_channels if s == 0 else c, c, cfg.skip_channels[s], level, cfg.norm, cfg.upsample)
        self.body = level
        self.outc = nn.Conv2d(c, out_channels, 1)
        self.sigmoid = sigmoid

    def forward(self, z):
        x = self.outc(self.body(z))
        return torch.sigmoid(x) if self.sigmoid else x
