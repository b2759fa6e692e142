"""The NTK filter (Survey A eq. (6), A-F4): what DIP trained by plain gradient descent would
output if the network stayed linear around its initialisation,

    f_{t+1} = f_t − η K ∇ₓℓ(A f_t, y),   K = J Jᵀ at θ₀,   f_0 = f_θ₀(z),

which for ℓ = ½‖Ax − y‖² is eq. (6), f_{t+1} = f_t + η K (Aᵀy − AᵀA f_t). ∇ₓℓ is taken by autograd
for the configured data term, so η is the DIP run's ``lr`` whatever the loss scaling (with
``mse`` the effective step of eq. (6) is 2η/m).

The run mirrors a gradient-descent DIP run with the same settings: the same seed, network,
input and data term give the same θ₀, z and f_0 (DIPModule builds them), and iteration k
reports f_{k−1} exactly as DIP's iteration k reports f_θₖ₋₁(z) (docs/conventions.md §2), so
both traces line up. Nothing is trained. K is formed once (n × n: n = C·H·W must be small,
e.g. a 1-D signal), in float64; its eigenvalues (= singular values, K is symmetric PSD) and
condition number are stored with the run (``ntk_singular_values``, ``ntk_condition_number``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch

from core.schema import PositiveInt, Range
from methods.base import DIPConfig, DIPModule, ParamGroup
from methods.networks import NetConfig
from methods.networks.cnn1d import CNN1DConfig
from methods.ntk import condition_number, empirical_ntk
from methods.registry import register_method


@dataclass
class NTKFilterConfig(DIPConfig):
    optimizer: Literal["sgd"] = "sgd"  # eq. (5): plain gradient descent (the DIP run it mirrors must use sgd too)
    grad_clip: Annotated[float, Range(gt=0)] | None = None  # must stay null: eq. (5) has no clipping
    net: NetConfig = field(default_factory=CNN1DConfig)  # Survey A Fig. 4: 1-D CNN, 3 × 256, ReLU
    max_size: PositiveInt = 4096  # largest n = C·H·W for which K (n × n, float64) is formed

    def __post_init__(self):
        if self.grad_clip is not None:
            raise ValueError("the NTK filter models gradient descent without clipping: set method.grad_clip: null "
                             "(and the same for the DIP run it mirrors)")
        if self.learn_input or self.input_noise_std > 0:
            raise ValueError("the NTK filter needs a fixed network input: set method.learn_input: false and "
                             "method.input_noise_std: 0")


@register_method("ntk_filter", NTKFilterConfig,
                 "NTK filter: gradient descent on the network linearised at its initialisation (K = J Jᵀ)",
                 "Survey A eq. (6), Fig. 4", smoke_config={"net": {"name": "cnn1d", "hidden_layers": 2, "channels": 16}})
class NTKFilter(DIPModule):
    automatic_optimization = False

    def __init__(self, cfg: NTKFilterConfig, problem, seed: int, max_steps: int):
        super().__init__(cfg, problem, seed, max_steps)
        n = int(torch.tensor(problem.x_shape).prod())
        if n > cfg.max_size:
            raise ValueError(f"the NTK filter forms the n × n kernel; n = {n} exceeds method.max_size = {cfg.max_size} "
                             "(use a smaller signal or image, or raise method.max_size)")
        self.kernel: torch.Tensor | None = None
        self.f: torch.Tensor | None = None
        self.info: dict = {}

    def parameter_groups(self) -> list[ParamGroup]:
        return []  # nothing is trained

    def configure_optimizers(self):
        return None

    def on_train_start(self) -> None:
        """K = J Jᵀ at θ₀ and f_0 = f_θ₀(z) (float64)."""
        self.kernel, self.f = empirical_ntk(self.net, self.z, torch.float64)
        values = torch.linalg.eigvalsh(self.kernel).flip(0)
        self.info = {"ntk_singular_values": values.tolist(), "ntk_condition_number": condition_number(values),
                     "ntk_size": int(values.numel())}

    def training_step(self, batch, batch_idx):
        x = self.f.reshape(1, *self.problem.x_shape)  # iteration k reports f_{k−1}
        xk = x.to(batch["y"].dtype).requires_grad_(True)
        loss = self.data_fidelity(self.physics.A(xk), batch["y"])
        (grad,) = torch.autograd.grad(loss, xk)  # ∇ₓℓ(A f_t, y)
        self.f = self.f - self.cfg.lr * (self.kernel @ grad.reshape(-1).double())  # f_{t+1} = f_t − η K ∇ₓℓ
        return {"loss": loss.detach(), "x": x.detach().to(batch["y"].dtype)}
