"""Deep decoder (Heckel & Hand 2019; Survey A §III-C1; Survey B §3.2 eq (8)): an
under-parameterised, convolution-free generator. Each of its ``layers`` layers is a 1×1
convolution (channel mixing, no bias), a fixed ×2 upsampling (not after the last layer),
ReLU and channel normalisation, x⁽ⁱ⁺¹⁾ = cn(ReLU(Uᵢ x⁽ⁱ⁾ Cᵢ)); a final 1×1 convolution
maps to the output channels (+ sigmoid for [0, 1] images). Layer order, bias-free
convolutions, bilinear upsampling and BatchNorm as channel normalisation follow the
reference code (github.com/reinhardh/supplement_deep_decoder, include/decoder.py,
``decodernw``); 6 layers × 128 channels with 3 output channels has 100,224 parameters, the
count Survey A gives.

Its input is a low-resolution seed, not an image-size tensor: ``cfg.input_size(H, W)`` is
the seed's size for an (H, W) output and the network must be told that output size
(``net.output_size = (H, W)``). Level i has side ⌈H / 2^(u−i)⌉ (u = layers − 1 upsamplings),
so every upsampling is about ×2 and the last one lands exactly on (H, W) for sizes not
divisible by 2^u (the reference code instead needs divisible sizes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.schema import PositiveInt
from methods.networks.config import register_network


@dataclass
class DeepDecoderConfig:
    """Deep decoder: ``layers`` 1×1-conv layers of ``channels`` channels, ``layers − 1`` upsamplings."""

    name: Literal["deep_decoder"] = "deep_decoder"
    # Survey A §III-C1: "six layers with a channel dimension of 128" (the reference code's
    # num_channels_up=[128]*5, which builds 6 channel-mixing layers and 5 upsamplings)
    layers: PositiveInt = 6
    channels: PositiveInt = 128  # k (Survey A; reference default 128)
    upsample: Literal["bilinear", "nearest"] = "bilinear"  # reference upsample_mode='bilinear' (Survey B §3.2)
    norm: Literal["batch", "none"] = "batch"  # channel normalisation: reference nn.BatchNorm2d after the ReLU
    output: Literal["auto", "sigmoid", "linear"] = "auto"  # auto: sigmoid for [0,1] tasks (reference need_sigmoid)

    @property
    def upsamplings(self) -> int:
        return self.layers - 1

    def level_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size of each level, seed first: ⌈(H, W) / 2^(u−i)⌉ for i = 0 … u."""
        u = self.upsamplings
        return [(math.ceil(height / 2 ** (u - i)), math.ceil(width / 2 ** (u - i))) for i in range(u + 1)]

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Size of the low-resolution seed for an (H, W) output (n0 = its number of pixels)."""
        return self.level_sizes(height, width)[0]

    @property
    def min_size(self) -> int:
        """Smallest square output: the first channel normalisation (after the first
        upsampling) needs more than one value per channel, i.e. ⌈H / 2^(u−1)⌉ ≥ 2."""
        return 2 ** (self.upsamplings - 1) + 1 if self.upsamplings else 2


@register_network("deep_decoder", DeepDecoderConfig)
class DeepDecoder(nn.Module):
    def __init__(self, cfg: DeepDecoderConfig, in_channels: int, out_channels: int, sigmoid: bool):
        super().__init__()
        self.cfg, self.sigmoid = cfg, sigmoid
        k = cfg.channels
        self.convs = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else k, k, 1, bias=False) for i in range(cfg.layers))
        self.norms = nn.ModuleList(nn.BatchNorm2d(k) if cfg.norm == "batch" else nn.Identity() for _ in range(cfg.layers))
        self.outc = nn.Conv2d(k, out_channels, 1, bias=False)
        self.output_size: tuple[int, int] | None = None  # (H, W) of the image; set by the method

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.output_size is None:
            raise ValueError("the deep decoder needs its output size (net.output_size = (H, W)) and a low-resolution "
                             "seed as input; the methods deep_decoder and deep_random_projector build both")
        sizes = self.cfg.level_sizes(*self.output_size)
        if tuple(z.shape[-2:]) != sizes[0]:
            raise ValueError(f"the deep decoder for a {self.output_size} output takes a seed of size {sizes[0]}, got "
                             f"{tuple(z.shape[-2:])} (an image-size input is not a deep decoder seed: see "
                             "DeepDecoderConfig.input_size)")
        x = z
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = conv(x)
            if i < self.cfg.upsamplings:  # U_i: ×2 (exactly onto the next level's size)
                x = F.interpolate(x, size=sizes[i + 1], mode=self.cfg.upsample,
                                  **({} if self.cfg.upsample == "nearest" else {"align_corners": False}))
            x = norm(F.relu(x))
        x = self.outc(x)
        return torch.sigmoid(x) if self.sigmoid else x
