"""Methods that exercise the method contract (methods/base.py); registered on import.

They are real methods, small on purpose: the contract tests run them through the CLI
next to every method in ``methods/``. ``split_dip`` is the README's example of a
two-variable (splitting) method.
"""
from __future__ import annotations

from dataclasses import dataclass

import deepinv as dinv
import torch

from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from methods.base import DIPConfig, DIPModule, ParamGroup, Stage
from methods.registry import METHODS, register_method

TINY_NET = {"net": {"scales": 2, "channels": 8, "skip_channels": [0, 4]}}


# -- README example: half-quadratic splitting with a TV prior -------------------------------------
@dataclass
class SplitDIPConfig(DIPConfig):
    beta: PositiveFloat = 1.0  # coupling weight β of ‖f_θ(z) − u‖²
    lam: NonNegativeFloat = 1e-3  # TV weight λ
    inner_steps: PositiveInt = 3  # K network steps per u-update


class SplitDIP(DIPModule):
    """min_{θ,u} ℓ(A f_θ(z), y) + β‖f_θ(z) − u‖² + λ TV(u), by alternating K gradient steps
    on θ with the exact u-update u ← prox_{(λ/β) TV}(f_θ(z)) (deepinv's TV prior)."""

    automatic_optimization = False  # K optimiser steps per iteration

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.tv = dinv.optim.TVPrior(n_it_max=20)
        self.register_buffer("u", problem.degraded.clone())

    def training_step(self, batch, batch_idx):
        for _ in range(self.cfg.inner_steps):  # 1: K steps on θ
            x = self.net(self.network_input())
            loss = self.data_fidelity(self.physics.A(x), batch["y"]) + self.cfg.beta * (x - self.u).pow(2).mean()
            self.gradient_step(loss, "net")
        with torch.no_grad():  # 2: u ← prox_{λ/β·TV}(x)
            self.u = self.tv.prox(x.detach(), gamma=self.cfg.lam / self.cfg.beta)
        return {"loss": loss, "x": x.detach(), "iterates": {"u": self.u}, "scalars": {"beta": self.cfg.beta}}


# -- two optimisers, manual optimisation ----------------------------------------------------------
@dataclass
class OffsetDIPConfig(DIPConfig):
    offset_lr: PositiveFloat = 0.05  # SGD learning rate of the offset image b


class OffsetDIP(DIPModule):
    """x = f_θ(z) + b with θ by Adam and b by SGD (two optimisers, one backward per iteration)."""

    automatic_optimization = False

    def __init__(self, cfg, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        self.offset = torch.nn.Parameter(torch.zeros(1, *problem.x_shape))

    def parameter_groups(self):
        return [*super().parameter_groups(), ParamGroup("offset", [self.offset], self.cfg.offset_lr, "sgd")]

    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input()) + self.offset
        loss = self.data_fidelity(self.physics.A(x), batch["y"])
        self.gradient_step(loss)  # every group: net (Adam) and offset (SGD)
        return {"loss": loss, "x": x.detach(), "scalars": {"offset_norm": self.offset.norm()}}


# -- L-BFGS with a closure -------------------------------------------------------------------------
class LBFGSDIP(DIPModule):
    """Vanilla DIP's objective minimised by L-BFGS (a closure optimiser; few inner evaluations)."""

    automatic_optimization = False

    def parameter_groups(self):
        return [ParamGroup("net", list(self.net.parameters()), self.cfg.lr, "lbfgs", {"max_iter": 2, "history_size": 5})]

    def training_step(self, batch, batch_idx):
        def loss_fn():
            return self.data_fidelity(self.physics.A(self.net(self.z)), batch["y"])

        loss = self.closure_step("net", loss_fn)
        with torch.no_grad():
            x = self.net(self.z)
        return {"loss": loss, "x": x}


# -- a preparatory stage before the reconstruction ---------------------------------------------------
@dataclass
class WarmStartDIPConfig(DIPConfig):
    warmup_steps: PositiveInt = 3  # iterations fitting the degraded image before fitting y


class WarmStartDIP(DIPModule):
    """Stage "warmup" fits f_θ(z) to the degraded image; stage "reconstruct" is vanilla DIP."""

    def stages(self):
        return [Stage("warmup", self.cfg.warmup_steps, reconstruction=False), Stage("reconstruct", self.max_steps)]

    def on_stage_start(self, stage):
        self.stage_starts = [*getattr(self, "stage_starts", []), (stage.name, self.iteration)]

    def training_step(self, batch, batch_idx):
        x = self.net(self.network_input())
        if self.reconstructing:
            loss = self.data_fidelity(self.physics.A(x), batch["y"])
        else:
            loss = (x - self.problem.degraded.to(x.device)).pow(2).mean()
        return {"loss": loss, "x": x.detach()}


EXAMPLES = {
    "split_dip": (SplitDIP, SplitDIPConfig, "example: DIP + TV by half-quadratic splitting"),
    "offset_dip": (OffsetDIP, OffsetDIPConfig, "example: two optimisers (Adam on θ, SGD on an offset)"),
    "lbfgs_dip": (LBFGSDIP, DIPConfig, "example: L-BFGS with a closure"),
    "warmstart_dip": (WarmStartDIP, WarmStartDIPConfig, "example: a preparatory stage, then vanilla DIP"),
}
for _name, (_cls, _config, _description) in EXAMPLES.items():
    if _name not in METHODS:  # idempotent when imported by several test modules
        register_method(_name, _config, _description, "tests/example_methods.py", smoke_config=TINY_NET)(_cls)
