"""The 1-D CNN of Survey A Fig. 4 (A-F4): ``hidden_layers`` convolutions of ``channels``
channels with ReLU, then a linear convolution to the output channels (Survey A: 3 hidden
layers, 256 channels, ReLU, trained by gradient descent). It maps a 1-D signal stored as a
1 × N image, (B, C, 1, N) (docs/conventions.md §17), to one of the same length ("same"
padding, stride 1), so it runs on tasks with the capability ``signal_1d`` only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn as nn

from core.schema import PositiveInt
from methods.networks.config import register_network


@dataclass
class CNN1DConfig:
    """1-D CNN: ``hidden_layers`` × (conv ``kernel_size``, ``channels`` channels, ReLU) + a linear conv."""

    name: Literal["cnn1d"] = "cnn1d"
    hidden_layers: PositiveInt = 3  # Survey A Fig. 4: 3; its condition-number remark: 15
    channels: PositiveInt = 256  # Survey A Fig. 4
    kernel_size: PositiveInt = 3
    padding: Literal["zeros", "reflect", "circular"] = "zeros"
    output: Literal["auto", "sigmoid", "linear"] = "auto"  # auto: linear on signed tasks (signal_1d), sigmoid on [0, 1]
    requires: ClassVar[frozenset[str]] = frozenset({"signal_1d"})  # task capabilities this network needs

    def __post_init__(self):
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size = {self.kernel_size} must be odd (the output keeps the input's length)")


@register_network("cnn1d", CNN1DConfig)
class CNN1D(nn.Module):
    def __init__(self, cfg: CNN1DConfig, in_channels: int, out_channels: int, sigmoid: bool):
        super().__init__()
        self.sigmoid = sigmoid
        layers: list[nn.Module] = []
        cin = in_channels
        for _ in range(cfg.hidden_layers):
            layers += [nn.Conv1d(cin, cfg.channels, cfg.kernel_size, padding="same", padding_mode=cfg.padding), nn.ReLU()]
            cin = cfg.channels
        layers.append(nn.Conv1d(cin, out_channels, cfg.kernel_size, padding="same", padding_mode=cfg.padding))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[2] != 1:
            raise ValueError(f"cnn1d takes a 1-D signal stored as (B, C, 1, N), got shape {tuple(z.shape)}")
        x = self.body(z[:, :, 0])[:, :, None]
        return torch.sigmoid(x) if self.sigmoid else x
