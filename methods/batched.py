"""Several runs of one DIP method that differ only in their seed, optimised together in one
process: the members' parameters and buffers stacked along a new leading axis, one
``training_step`` evaluated for all of them with ``torch.func.functional_call`` under
``torch.func.vmap``, one backward of the members' summed losses (each member's gradient is
exactly its own: the members share no parameter), per-member gradient-norm clipping, and one
optimiser of the method's type over the stacked tensors (Adam / SGD / AMSGrad act elementwise,
so member i's update is the one its solo optimiser makes from the same gradient).

What differs from the solo run is only the floating-point evaluation order of the batched
kernels (vmap turns a convolution over B weight sets into one grouped convolution); the
tolerance this leaves is stated and tested in docs/conventions.md §19 and
tests/test_batched.py. Scoring, stopping rules, EMA and the divergence guard are the
benchmark's per-run callbacks, fed each member's slice of the outputs
(benchmark/batched.py).

Batchable: automatic-optimisation methods with one (reconstruction) stage, no fresh
randomness inside ``training_step`` and float32 precision. Everything else is refused by
:func:`unbatchable_reason` (a method class may also declare ``unbatchable = "<reason>"``) and
runs alone.
"""
from __future__ import annotations

import torch
from torch.func import functional_call, vmap

from methods.base import OPTIMIZERS, DIPModule


def unbatchable_reason(cls: type, cfg, precision: str = "32-true") -> str | None:
    """Why runs of method class ``cls`` with settings ``cfg`` cannot be optimised together
    (None: they can)."""
    declared = getattr(cls, "unbatchable", None)
    if declared:
        return declared
    if not issubclass(cls, DIPModule):
        return "not a DIP method (baselines run once, without seeds)"
    if getattr(cls, "automatic_optimization", True) is False:
        return ("manual optimisation: training_step steps its own optimisers (gradient_step / closure_step) and "
                "updates auxiliary variables between them; the batched loop drives one optimiser over stacked "
                "parameters")
    if getattr(cfg, "input_noise_std", 0) > 0:
        return ("input_noise_std > 0: each run draws its input perturbation from its own seeded generator inside "
                "training_step, which vmap cannot split per member")
    if getattr(cfg, "optimizer", "adam") not in ("adam", "amsgrad", "sgd"):
        return f"optimizer {cfg.optimizer!r} is not elementwise (a closure optimiser needs each run's own line search)"
    if precision != "32-true":
        return f"precision {precision!r}: batched runs are float32 only"
    return None


class _TrainingStep(torch.nn.Module):
    """``forward`` = the wrapped module's ``training_step``, so functional_call can run it."""

    def __init__(self, module: DIPModule):
        super().__init__()
        self.module = module

    def forward(self, y, batch_idx: int):
        out = self.module.training_step({"y": y}, batch_idx)
        if not isinstance(out, dict) or not isinstance(out.get("x"), torch.Tensor):
            raise TypeError("training_step must return a dict with 'x' and 'loss' (methods/base.py)")
        scalars = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in (out.get("scalars") or {}).items()}
        return out["loss"], out["x"], dict(out.get("iterates") or {}), scalars


def _without_running_stats(net: torch.nn.Module) -> list[str]:
    """BatchNorm in training mode normalises with the batch statistics; its running estimates
    are never read by a DIP run, and vmap cannot update them in place: stop tracking them
    (outputs unchanged). Returns the names of the buffers no longer used."""
    dropped = []
    for name, mod in net.named_modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            mod.track_running_stats = False
            dropped += [f"{name}.{b}" if name else b for b in ("running_mean", "running_var", "num_batches_tracked")]
    return dropped


class BatchedStep:
    """One iteration of ``len(members)`` runs at once. ``members``: DIPModules of one class and
    config, differing in seed; the first is the template whose ``training_step`` is traced."""

    def __init__(self, members: list[DIPModule]):
        if len({type(m) for m in members}) != 1:
            raise ValueError("a batch holds runs of one method")
        self.members, self.template = members, members[0]
        self.n = len(members)
        dropped = {f"net.{b}" for b in _without_running_stats(self.template.net)}
        named = [dict(m.named_parameters()) for m in members]
        self.params = {f"module.{k}": torch.stack([p[k].detach() for p in named]).requires_grad_()
                       for k in named[0]}
        buffers = [dict(m.named_buffers()) for m in members]
        self.buffers = {f"module.{k}": torch.stack([b[k] for b in buffers]) for k in buffers[0] if k not in dropped}
        self.wrapper = _TrainingStep(self.template)
        self.clip = self.template.cfg.grad_clip
        self.optimizers = self._optimizers(named[0])
        self._step = vmap(self._one, in_dims=(0, 0, 0, None), randomness="error")

    def _optimizers(self, names: dict) -> list[torch.optim.Optimizer]:
        """The method's parameter groups, each over the stacked tensors; one optimiser (automatic
        optimisation holds every group in one, methods/base.py ``configure_optimizers``)."""
        by_id = {id(p): f"module.{k}" for k, p in names.items()}
        groups = [g for g in self.template.parameter_groups() if g.params]
        first = groups[0]
        return [OPTIMIZERS[first.optimizer]([{"params": [self.params[by_id[id(p)]] for p in g.params], "lr": g.lr,
                                               "name": g.name} for g in groups], **first.options)]

    def _one(self, params, buffers, y, batch_idx):
        return functional_call(self.wrapper, (params, buffers), (y, batch_idx), strict=False)

    def __call__(self, ys: torch.Tensor, batch_idx: int) -> list[dict]:
        """Step every member once from its measurement ``ys[i]``; returns each member's
        ``training_step``-style output (detached)."""
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss, x, iterates, scalars = self._step(self.params, self.buffers, ys, batch_idx)
        loss.sum().backward()  # d(Σ_i L_i)/dθ_i = dL_i/dθ_i: the members share nothing
        if self.clip:
            self._clip_per_member(self.clip)
        for opt in self.optimizers:
            opt.step()
        loss, x = loss.detach(), x.detach()
        return [{"loss": loss[i], "x": x[i], "iterates": {k: v[i].detach() for k, v in iterates.items()},
                 "scalars": {k: float(v[i]) for k, v in scalars.items()}} for i in range(self.n)]

    def _clip_per_member(self, max_norm: float) -> None:
        """``torch.nn.utils.clip_grad_norm_`` of each member's gradients on its own."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(self.n, -1), 2, dim=1) for g in grads], dim=1)
        total = torch.linalg.vector_norm(norms, 2, dim=1)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))

    def write_back(self) -> None:
        """Copy each member's optimised parameters into its own module."""
        with torch.no_grad():
            for i, m in enumerate(self.members):
                for k, p in m.named_parameters():
                    p.copy_(self.params[f"module.{k}"][i])
