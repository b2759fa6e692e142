"""U-Net of Survey B §6.2 (after Barbano et al. 2022, educated DIP): strided-conv
encoder, nearest-neighbour upsampling decoder, GroupNorm + LeakyReLU, 1×1 skip
convolutions only where ``skip_channels`` is non-zero, sigmoid output."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods.networks.config import UNetConfig, norm_layer, register_network


def conv_block(cin: int, cout: int, kernel: int, norm: str, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2),
        norm_layer(norm, cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class Down(nn.Module):
    """Halve the resolution: strided 3×3 conv, then a 3×3 conv."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(conv_block(cin, cout, 3, norm, stride=2), conv_block(cout, cout, 3, norm))

    def forward(self, x):
        return self.body(x)


class Up(nn.Module):
    """Upsample to the encoder feature's size, concatenate its 1×1 skip features (if
    any), then two 3×3 convs (6×128 with skips [0,0,0,0,4,4] gives ≈3.0 M
    parameters, as Survey B §6.2 states)."""

    def __init__(self, cin: int, cout: int, skip: int, norm: str, mode: str):
        super().__init__()
        self.mode = mode
        self.skip = conv_block(cout, skip, 1, norm) if skip > 0 else None
        self.body = nn.Sequential(conv_block(cin + skip, cout, 3, norm), conv_block(cout, cout, 3, norm))

    def forward(self, x, encoder_feature):
        x = F.interpolate(x, size=encoder_feature.shape[-2:], mode=self.mode)
        if self.skip is not None:
            x = torch.cat([x, self.skip(encoder_feature)], dim=1)
        return self.body(x)


@register_network("unet", UNetConfig)
class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int, sigmoid: bool):
        super().__init__()
        c = cfg.channels
        self.inc = conv_block(in_channels, c, 3, cfg.norm)
        self.down = nn.ModuleList(Down(c, c, cfg.norm) for _ in range(cfg.scales - 1))
        # the decoder step leaving scale s (s = scales-1 … 1) uses skip_channels[s]
        self.up = nn.ModuleList(
            Up(c, c, cfg.skip_channels[s], cfg.norm, cfg.upsample) for s in range(cfg.scales - 1, 0, -1)
        )
        self.outc = nn.Conv2d(c, out_channels, 1)
        self.sigmoid = sigmoid

    def forward(self, z):
        features = [self.inc(z)]
        for down in self.down:
            features.append(down(features[-1]))
        x = features.pop()
        for up in self.up:
            x = up(x, features.pop())
        x = self.outc(x)
        return torch.sigmoid(x) if self.sigmoid else x
