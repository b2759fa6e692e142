"""Subspace DIP (Barbano et al., TMLR 2024; Survey B §5.2, eq 39): the parameters move only in a
sparse low-dimensional subspace spanned by the pre-training trajectory, and its k coefficients
are optimised with L-BFGS."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
from torch.func import functional_call

from core.schema import PositiveFloat, PositiveInt, Range
from methods.base import DIPModule, NormalisedDIPConfig, ParamGroup
from methods.pretraining import WarmStartConfig
from methods.registry import register_method


@dataclass
class SubspaceDIPConfig(NormalisedDIPConfig):
    input: Literal["noise", "fbp", "adjoint", "reference"] = "fbp"  # the pre-trained network's input (§5.1)
    warm_start: WarmStartConfig | None = field(default_factory=WarmStartConfig)  # θ̂ and the snapshots θ⁽ⁱ⁾
    dim: PositiveInt = 32  # k, the subspace dimension (top-k left singular vectors of the K snapshots)
    sparsity: Annotated[float, Range(gt=0, le=1)] = 0.25  # d_τ / p: fraction of parameters kept by leverage score
    lr: PositiveFloat = 1.0  # L-BFGS step length (with the strong-Wolfe line search)
    optimizer: Literal["adam", "amsgrad", "sgd", "lbfgs"] = "lbfgs"
    lbfgs_max_iter: PositiveInt = 1  # L-BFGS iterations per method iteration
    lbfgs_history: PositiveInt = 10
    grad_clip: Annotated[float, Range(gt=0)] | None = None  # clipping would break the line search's consistency


def subspace_basis(snapshots: torch.Tensor, dim: int, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Survey B §5.2: Θ = [θ⁽¹⁾ … θ⁽ᴷ⁾] ≈ U S Vᵀ (SVD of the ``(K, p)`` snapshots), U ∈ ℝ^{p×k} the
    top-``dim`` left singular vectors; leverage scores ρᵢ = Σⱼ Uᵢⱼ²; the mask M keeps the ``keep``
    parameters of largest ρ. Returns ``(index, Q)``: the kept parameter indices (ascending) and an
    orthonormal basis Q ∈ ℝ^{keep×k} of span(MU) restricted to them (QR of the kept rows of U, so
    L-BFGS sees a well-conditioned parameterisation of the same subspace)."""
    count, p = snapshots.shape
    if dim > count:
        raise ValueError(f"method.dim = {dim} exceeds the {count} pre-training snapshots; lower method.dim or raise "
                         "method.warm_start.snapshots")
    if keep < dim:
        raise ValueError(f"method.sparsity keeps {keep} parameters, fewer than method.dim = {dim}; raise method.sparsity")
    u = torch.linalg.svd(snapshots.double().T, full_matrices=False).U[:, :dim]
    leverage = u.pow(2).sum(1)
    index = torch.sort(torch.argsort(leverage, descending=True, stable=True)[:keep]).values
    q, _ = torch.linalg.qr(u[index])
    return index, q.float()


@register_method("subspace_dip", SubspaceDIPConfig,
                 "Subspace DIP: k coefficients of a sparse subspace of the pre-training trajectory, L-BFGS",
                 "Survey B §5.2 eq (39); Barbano et al. TMLR 2024",
                 smoke_config={"dim": 2, "sparsity": 0.5, "warm_start": {
                     "steps": 8, "snapshots": 4, "n_train": 8, "n_val": 2, "batch_size": 4, "checkpoint_every": 8}})
class SubspaceDIP(DIPModule):
    """θ = γ(c) = θ̂ + M U c (eq 39), θ̂ pre-trained (eq 38); minimise L(γ(c)) = ℓ(A f_γ(c)(z), y)
    over c ∈ ℝᵏ (c₀ = 0: the first iterate is the pre-trained network's output) by L-BFGS, one
    L-BFGS step per iteration through the contract's closure path. Only c is trainable."""

    automatic_optimization = False
    loss_may_settle = True  # L-BFGS converges in k dimensions: an unchanged loss is a minimum, not a dead run
    requires = frozenset({"ct", "fbp"})

    def __init__(self, cfg: SubspaceDIPConfig, problem, seed, max_steps):
        if cfg.warm_start is None:
            raise ValueError("subspace_dip builds its subspace from the pre-training: method.warm_start cannot be null")
        super().__init__(cfg, problem, seed, max_steps)
        self.names = [name for name, _ in self.net.named_parameters()]
        self.shapes = [p.shape for _, p in self.net.named_parameters()]
        theta = torch.cat([p.detach().reshape(-1) for p in self.net.parameters()])
        self.keep = max(1, round(cfg.sparsity * theta.numel()))  # d_τ
        index, basis = subspace_basis(self.pretrained.snapshots, cfg.dim, self.keep)
        self.net.requires_grad_(False)  # θ̂ is fixed; γ(c) is built functionally
        self.register_buffer("theta", theta.clone())
        self.register_buffer("index", index)
        self.register_buffer("basis", basis)
        self.c = torch.nn.Parameter(torch.zeros(cfg.dim))

    def parameters_at(self, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """γ(c) = θ̂ + M U c, split into the network's named parameters."""
        flat = self.theta.index_add(0, self.index, self.basis @ c)
        return dict(zip(self.names, (t.reshape(s) for t, s in zip(flat.split([s.numel() for s in self.shapes]),
                                                                     self.shapes))))

    def output(self, c: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.parameters_at(c), (self.network_input(),))

    def parameter_groups(self):
        return [ParamGroup("coefficients", [self.c], self.cfg.lr, self.cfg.optimizer,
                           {"max_iter": self.cfg.lbfgs_max_iter, "history_size": self.cfg.lbfgs_history,
                            "line_search_fn": "strong_wolfe"} if self.cfg.optimizer == "lbfgs" else {})]

    def forward(self) -> torch.Tensor:
        return self.output(self.c)

    def training_step(self, batch, batch_idx):
        first = {}

        def loss_fn():
            x = self.output(self.c)  # f_γ(c)(z)
            loss = self.data_fidelity(self.physics.A(x), batch["y"])  # L(γ(c)), eq (39)
            first.setdefault("x", x.detach())  # x^(k): the output at c_(k−1), before the step
            return loss

        if self.cfg.optimizer == "lbfgs":
            loss = self.closure_step("coefficients", loss_fn)
        else:
            loss = loss_fn()
            self.gradient_step(loss, "coefficients")
        return {"loss": loss.detach(), "x": first["x"], "scalars": {"coefficient_norm": self.c.detach().norm()}}

    def run_metrics(self) -> dict:
        return {**super().run_metrics(), "subspace": {"dim": self.cfg.dim, "kept_parameters": self.keep,
                                                      "snapshots": len(self.pretrained.snapshot_steps)}}
