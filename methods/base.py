"""The method contract: the DIP LightningModule every variant builds on.

A method file writes ``training_step`` (its algorithm box) and returns a dict::

    {"loss": L,                  # the objective of this iteration (traced)
     "x": x_k,                   # the reconstruction x^(k) (scored, traced, picked by stopping rules)
     "iterates": {"u": u_k},     # optional named secondary iterates (each gets a PSNR column)
     "scalars": {"beta": b_k}}   # optional named numbers (each gets a trace column)

The module owns everything else:

* **Iterations.** One ``training_step`` call is one iteration of the method, however many
  optimiser steps it takes; ``self.iteration`` is its number k (1 … ``run.max_steps`` in
  the reconstruction stage). The run length, the trace stride and the peak / early-stop /
  final iterations all count these iterations, for every method.
* **Stages** (:meth:`stages`): optional preparatory stages (learn a mask, pre-train) run
  before the reconstruction stage; their iterations are numbered ≤ 0 and only the trace
  sees them. :meth:`on_stage_start` is called when a stage begins.
* **Optimisation.** Parameters come in named groups (:meth:`parameter_groups`: ``net``,
  ``input`` when ``learn_input``, and whatever a method adds), each with its own learning
  rate and optimiser type. Automatic (default): return the loss and Lightning steps one
  optimiser holding every group. Manual (``automatic_optimization = False``): one
  optimiser per group; call :meth:`gradient_step` (several groups, one backward) or
  :meth:`closure_step` (L-BFGS). Gradient-norm clipping at ``grad_clip`` is done by the
  module in both modes (never by the Trainer).
* **Randomness** inside a method (input perturbations, noisy realisations, subsets, Gumbel
  noise) comes from one seeded generator per run: :meth:`randn_like`, :meth:`rand_like`,
  :attr:`generator`.
* **No ground truth.** The module gets a :class:`~datamodules.task.Measurement`; scoring
  is the metric callbacks' job (scoring/callbacks.py).
* **Requirements.** :attr:`requires` / :meth:`requirements` name the task capabilities
  the method needs (``datamodules.registry.CAPABILITIES``); suites skip other pairs.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

import lightning as L
import torch

from core.results import MethodKind
from core.schema import NonNegativeFloat, PositiveFloat, PositiveInt, Range
from datamodules.operators.base import hutchinson_frobenius_sq
from datamodules.task import Measurement
from methods.inputs import input_size, network_input
from methods.networks import NetConfig, UNetConfig, build_network
from methods.pretraining import WarmStartConfig, pretrained_network
from methods.protocol import MethodProtocol

# foreach: one multi-tensor kernel per update instead of one per parameter (the default on CUDA only); the same
# elementwise arithmetic, bitwise equal traces on CPU (checked: issue 22), and faster
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": functools.partial(torch.optim.Adam, foreach=True), "sgd": functools.partial(torch.optim.SGD, foreach=True),
    "lbfgs": torch.optim.LBFGS,
    # Adam whose second-moment estimate never decreases (Reddi et al. 2018): no step-size bursts after long
    # stretches of small gradients, the spikes that reset a DIP's fit at large lr (docs/conventions.md §12)
    "amsgrad": functools.partial(torch.optim.Adam, amsgrad=True, foreach=True)}


# mean | ½‖Ax−y‖² (eq 3) | ÷‖A‖⁴ (handbook) | ‖Ax−y‖²/‖A‖_F² (docs/conventions.md §1)
DataTerm = Literal["mse", "half_sse", "half_sse_normalised", "normalised"]


@dataclass
class DIPConfig:
    """Settings shared by all DIP methods (docs/conventions.md §§1–3)."""

    lr: PositiveFloat = 1e-3  # learning rate of the network parameters
    optimizer: Literal["adam", "amsgrad", "sgd"] = "adam"
    grad_clip: Annotated[float, Range(gt=0)] | None = 1.0  # gradient-norm clipping (Survey B handbook: 1); null = off
    loss: DataTerm = "mse"
    input: Literal["noise", "fbp", "adjoint", "reference"] = "noise"  # reference: the task's reference image (Ref-G)
    input_dist: Literal["gaussian", "uniform"] = "gaussian"  # gaussian: scale·N(0,1) | uniform: U[0, scale)
    input_channels: PositiveInt = 1
    input_scale: NonNegativeFloat = 0.1
    input_noise_std: NonNegativeFloat = 0.0  # N(0, std²) added to z every step (original DIP: 1/30)
    learn_input: bool = False  # optimise z too (parameter group "input")
    input_lr: PositiveFloat | None = None  # learning rate of z; null = lr
    net: NetConfig = field(default_factory=UNetConfig)
    # start from a network pre-trained FBP → GT on synthetic ellipses (Survey B §5.1; methods/pretraining.py;
    # needs input: fbp); null = random initialisation
    warm_start: WarmStartConfig | None = None


@dataclass
class NormalisedDIPConfig(DIPConfig):
    """Survey B's methods: the data term ‖Ax − y‖²/‖A‖_F² (docs/conventions.md §1)."""

    loss: DataTerm = "normalised"


def network_mismatch(method: str, cfg, task) -> str | None:
    """Why ``cfg.net`` cannot run on ``task``: a 2-D network on a 1-D signal (docs/conventions.md §17)."""
    net = getattr(cfg, "net", None)
    if net is not None and "signal_1d" in task.capabilities and "signal_1d" not in getattr(net, "requires", ()):
        return (f"{method} with net.name = {net.name!r} (a 2-D network) cannot run on the 1-D signal of {task.name}: "
                "it needs a 1-D network (method.net: {name: cnn1d})")
    return None


@dataclass(frozen=True)
class Stage:
    """A phase of a method. Exactly one stage reconstructs (the last); stages before it
    prepare (e.g. learn a mask) and are invisible to peak, stopping rules and final."""

    name: str
    iterations: int
    reconstruction: bool = True


@dataclass
class ParamGroup:
    """Parameters optimised together, with their own learning rate and optimiser type
    (``adam`` | ``sgd`` | ``lbfgs``) and extra optimiser options (betas, momentum, …)."""

    name: str
    params: list
    lr: float
    optimizer: str = "adam"
    options: dict = field(default_factory=dict)


class DIPModule(MethodProtocol, L.LightningModule):
    kind = MethodKind.DIP

    @classmethod
    def requirements(cls, cfg: DIPConfig) -> set[str]:
        """Capabilities needed with these settings (class requirements + the input/loss choices)."""
        needs = set(cls.requires)
        if cfg.input == "fbp":
            needs.add("fbp")
        if cfg.warm_start is not None:
            needs |= {"fbp", "ct"}
        if cfg.input == "reference":
            needs.add("reference_image")
        if cfg.input == "adjoint" or cfg.loss == "half_sse_normalised":
            needs.add("linear")
        return needs | set(getattr(cfg.net, "requires", ()))  # e.g. a 1-D network needs a 1-D signal

    @classmethod
    def skip(cls, cfg, task) -> str | None:
        """Also: a 2-D network cannot run on a 1-D signal (docs/conventions.md §17)."""
        return network_mismatch(cls.method_name, cfg, task) or super().skip(cfg, task)

    def __init__(self, cfg: DIPConfig, problem: Measurement, seed: int, max_steps: int):
        super().__init__()
        self.cfg, self.problem, self.seed, self.max_steps = cfg, problem, seed, max_steps
        self.physics = problem.physics
        size = input_size(cfg.net, problem.x_shape)  # the image's, or a network's low-resolution seed (deep decoder)
        if size != tuple(problem.x_shape[-2:]) and cfg.input != "noise":
            raise ValueError(f"net.name = {cfg.net.name!r} takes a low-resolution noise seed of size {size}; "
                             f"input = {cfg.input!r} is an image-size input (use input: noise)")
        z = network_input(cfg.input, problem, cfg.input_channels, cfg.input_dist, cfg.input_scale, seed,
                          size=size if cfg.input == "noise" else None)
        if cfg.learn_input:
            self.z = torch.nn.Parameter(z)
        else:
            self.register_buffer("z", z)
        sigmoid = cfg.net.output == "sigmoid" or (cfg.net.output == "auto" and problem.x_range == "unit")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # network initialisation depends on the run seed only
            self.net = build_network(cfg.net, z.shape[1], problem.x_shape[0], sigmoid)
        self.pretrained = None
        if cfg.warm_start is not None:  # Survey B §5.1: θ₀ = θ̂ of eq (38), the network fed the FBP image
            if cfg.input != "fbp":
                raise ValueError(f"method.warm_start pre-trains the network FBP → GT, so it needs method.input: fbp "
                                 f"(got {cfg.input!r})")
            self.pretrained = pretrained_network(cfg.warm_start, cfg.net, sigmoid, problem)
            self.net.load_state_dict(self.pretrained.state_dict)
        if hasattr(self.net, "output_size"):  # networks fed a seed smaller than the image learn the image size here
            self.net.output_size = tuple(problem.x_shape[-2:])
        if "support" in problem.extras:  # x vanishes outside a known support (MRI: the coil maps'): f_θ(z)·support
            self.register_buffer("support", problem.extras["support"].float())
            self.net.register_forward_hook(self._restrict_to_support)
        self.fidelity_scale = self._fidelity_scale(cfg.loss, problem)
        self._generator: torch.Generator | None = None
        self._group_names: list[str] = []
        self.schedule = self._check_stages(self.stages())
        self.total_iterations = sum(s.iterations for s in self.schedule)
        self.iteration, self.stage = 0, self.schedule[0]

    def _fidelity_scale(self, loss: str, problem: Measurement) -> float:
        linear = getattr(self.physics, "linear", False)
        if loss == "half_sse_normalised":
            return 1.0 / self.physics.norm() ** 4
        if loss == "normalised":  # ‖A‖_F² (docs/conventions.md §1); nonlinear operators count as A = I
            if linear:  # operators without their own frobenius_sq (plugins) get Hutchinson's estimate
                frobenius_sq = getattr(self.physics, "frobenius_sq", None)
                return 1.0 / (frobenius_sq() if frobenius_sq else hutchinson_frobenius_sq(self.physics))
            pixels = 1
            for n in problem.x_shape:
                pixels *= n
            return 1.0 / pixels
        return 1.0

    def run_metrics(self) -> dict:
        """Numbers about the run the method stores with its metrics (the runner adds them)."""
        if self.pretrained is None:
            return {}
        info = self.pretrained.info
        return {"pretrain": {"key": info["key"], "time_s": info["train_time_s"], "val_psnr": info["val_psnr"],
                             "steps": info["steps"]}}

    # -- stages and iteration numbering ----------------------------------------------------
    def stages(self) -> list[Stage]:
        """The method's stages; default: one reconstruction stage of ``max_steps`` iterations."""
        return [Stage("reconstruct", self.max_steps)]

    def on_stage_start(self, stage: Stage) -> None:
        """Called before the first iteration of every stage (e.g. freeze a mask)."""

    def _check_stages(self, stages: list[Stage]) -> list[Stage]:
        recon = [s for s in stages if s.reconstruction]
        if len(recon) != 1 or not stages[-1].reconstruction or recon[0].iterations != self.max_steps:
            raise ValueError(f"{type(self).__name__}.stages() must end with the one reconstruction stage of run.max_steps "
                             f"({self.max_steps}) iterations, got {stages}")
        if any(s.iterations < 0 for s in stages):
            raise ValueError(f"stage iterations must be >= 0, got {stages}")
        return [s for s in stages if s.iterations > 0]

    @property
    def reconstructing(self) -> bool:
        return self.stage.reconstruction

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        start = 0
        for stage in self.schedule:
            if batch_idx < start + stage.iterations:
                break
            start += stage.iterations
        prelude = self.total_iterations - self.max_steps
        self.iteration = batch_idx + 1 - prelude  # 1 … max_steps in the reconstruction stage, ≤ 0 before
        if batch_idx == start:
            self.stage = stage
            self.on_stage_start(stage)

    # -- pieces the algorithm boxes use ------------------------------------------------------
    def data_fidelity(self, Ax: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ℓ(Ax, y) in the configured scaling (docs/conventions.md §1)."""
        if self.cfg.loss == "mse":
            return torch.nn.functional.mse_loss(Ax, y)
        if self.cfg.loss == "normalised":
            return (Ax - y).pow(2).sum() * self.fidelity_scale
        return 0.5 * (Ax - y).pow(2).sum() * self.fidelity_scale

    def network_input(self) -> torch.Tensor:
        """z, perturbed by fresh seeded noise each step if ``input_noise_std`` > 0."""
        if self.cfg.input_noise_std <= 0:
            return self.z
        return self.z + self.cfg.input_noise_std * self.randn_like(self.z)

    def forward(self) -> torch.Tensor:
        return self.net(self.z)

    def _restrict_to_support(self, net, inputs, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on ``self.net``: every network output is zero outside ``extras["support"]``."""
        return output * self.support.to(output.dtype)

    @property
    def generator(self) -> torch.Generator:
        """The run's one generator for randomness inside the method (seeded by ``run.seed``)."""
        device = self.z.device
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed + 1)
        return self._generator

    def reseed_generator(self) -> None:
        """Restart the run's generator from its seed (e.g. at a stage start, so a stage's draws do not
        depend on how many the stages before it made)."""
        self._generator = None

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)

    def rand_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)

    # -- optimisation ----------------------------------------------------------------------
    def parameter_groups(self) -> list[ParamGroup]:
        """Named groups of trainable parameters; methods with extra variables add theirs."""
        groups = [ParamGroup("net", list(self.net.parameters()), self.cfg.lr, self.cfg.optimizer)]
        if self.cfg.learn_input:
            groups.append(ParamGroup("input", [self.z], self.cfg.input_lr or self.cfg.lr, self.cfg.optimizer))
        return groups

    def configure_optimizers(self):
        groups = [g for g in self.parameter_groups() if g.params]
        for g in groups:
            if g.optimizer not in OPTIMIZERS:
                raise ValueError(f"parameter group {g.name!r}: unknown optimizer {g.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        self._group_names = [g.name for g in groups]
        if self.automatic_optimization:
            kinds = {(g.optimizer, repr(sorted(g.options.items()))) for g in groups}
            if len(kinds) > 1:
                raise TypeError(f"{type(self).__name__}: parameter groups use different optimisers {sorted(kinds)}; "
                                "set automatic_optimization = False and step them with gradient_step()")
            first = groups[0]
            return OPTIMIZERS[first.optimizer]([{"params": g.params, "lr": g.lr, "name": g.name} for g in groups],
                                               **first.options)
        return [OPTIMIZERS[g.optimizer]([{"params": g.params, "lr": g.lr, "name": g.name}], **g.options) for g in groups]

    def optimizer(self, group: str):
        """The (Lightning-wrapped) optimiser of a parameter group, in manual optimisation."""
        if group not in self._group_names:
            raise KeyError(f"no parameter group {group!r}; groups: {', '.join(self._group_names)}")
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        return optimizers[self._group_names.index(group)]

    def clip(self, optimizer) -> None:
        """Clip the gradient norm of ``optimizer``'s parameters at ``cfg.grad_clip`` (if set)."""
        if self.cfg.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.cfg.grad_clip, gradient_clip_algorithm="norm")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        self.clip(optimizer)  # automatic optimisation: the module's setting, not the Trainer's

    def gradient_step(self, loss: torch.Tensor, *groups: str) -> None:
        """Manual optimisation: zero the named groups' gradients (all groups if none are
        named), backpropagate ``loss`` once, clip, and step each group's optimiser."""
        optimizers = [self.optimizer(g) for g in (groups or self._group_names)]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for opt in optimizers:
            self.clip(opt)
            opt.step()

    def closure_step(self, group: str, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Manual optimisation with a closure optimiser (L-BFGS): ``loss_fn()`` recomputes the
        loss; the module zeroes, backpropagates and clips inside the closure."""
        opt = self.optimizer(group)

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            self.manual_backward(loss)
            self.clip(opt)
            return loss

        return opt.step(closure=closure)
