"""The DIP LightningModule every method builds on.

It owns what all DIP variants share: the network f_θ, its fixed input z, the forward
operator A (a submodule, so it follows the module's device), the data-fidelity term
and the optimiser. A method file only writes ``training_step`` (its algorithm box)
and returns ``{"loss": …, "x": current reconstruction}``; tracing, EMA, the oracle
best iterate and early stopping are callbacks (methods/callbacks.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L
import torch

from datamodules.task import Task
from methods.inputs import network_input
from methods.networks import NetConfig, build_network


@dataclass
class DIPConfig:
    """Settings shared by all DIP methods (conventions.md §§1–3, 9)."""

    lr: float = 1e-3
    optimizer: str = "adam"  # adam | sgd
    grad_clip: float | None = 1.0  # gradient-norm clipping (Survey B handbook: 1)
    loss: str = "mse"  # mse | half_sse (½‖Ax−y‖², eq 3) | half_sse_normalised (÷‖A‖⁴, handbook)
    input: str = "noise"  # noise | fbp | adjoint
    input_dist: str = "gaussian"  # gaussian: scale·N(0,1) | uniform: U[0, scale)
    input_channels: int = 1
    input_scale: float = 0.1
    input_noise_std: float = 0.0  # N(0, std²) added to z every step (original DIP: 1/30)
    net: NetConfig = field(default_factory=NetConfig)


class DIPModule(L.LightningModule):
    def __init__(self, cfg: DIPConfig, task: Task, seed: int):
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        self.physics = task.physics
        self.register_buffer("z", network_input(cfg.input, task, cfg.input_channels, cfg.input_dist, cfg.input_scale, seed))
        sigmoid = cfg.net.output == "sigmoid" or (cfg.net.output == "auto" and task.x_range == "unit")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # network initialisation depends on the run seed only
            self.net = build_network(cfg.net, self.z.shape[1], task.x_shape[0], sigmoid)
        self.fidelity_scale = self._fidelity_scale(cfg.loss)
        self._input_gen: torch.Generator | None = None

    def _fidelity_scale(self, loss: str) -> float:
        if loss in ("mse", "half_sse"):
            return 1.0
        if loss == "half_sse_normalised":
            if not getattr(self.physics, "linear", False):
                raise ValueError("loss=half_sse_normalised needs a linear operator (‖A‖); use mse or half_sse")
            return 1.0 / self.physics.norm() ** 4
        raise ValueError(f"unknown method.loss {loss!r}; valid: mse, half_sse, half_sse_normalised")

    # -- pieces the algorithm boxes use -------------------------------------------------
    def data_fidelity(self, Ax: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ℓ(Ax, y) in the configured scaling (conventions.md §1)."""
        if self.cfg.loss == "mse":
            return torch.nn.functional.mse_loss(Ax, y)
        return 0.5 * (Ax - y).pow(2).sum() * self.fidelity_scale

    def network_input(self) -> torch.Tensor:
        """z, perturbed by fresh seeded noise each step if ``input_noise_std`` > 0."""
        if self.cfg.input_noise_std <= 0:
            return self.z
        if self._input_gen is None or self._input_gen.device != self.z.device:
            self._input_gen = torch.Generator(device=self.z.device).manual_seed(self.seed + 1)
        noise = torch.randn(self.z.shape, generator=self._input_gen, device=self.z.device, dtype=self.z.dtype)
        return self.z + self.cfg.input_noise_std * noise

    def forward(self) -> torch.Tensor:
        return self.net(self.z)

    # -- Lightning ------------------------------------------------------------------------
    def trainable_parameters(self):
        return self.net.parameters()

    def configure_optimizers(self):
        optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
        if self.cfg.optimizer not in optimizers:
            raise ValueError(f"unknown method.optimizer {self.cfg.optimizer!r}; valid: {', '.join(optimizers)}")
        return optimizers[self.cfg.optimizer](self.trainable_parameters(), lr=self.cfg.lr)
