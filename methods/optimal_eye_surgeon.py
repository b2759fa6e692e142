"""Optimal Eye Surgeon, OES (Ghosh et al., ICML 2024; Survey A §III-C2, eq 17): prune the
network at initialisation with a mask learned from the measurement, then train the sparse
subnetwork."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
from torch.distributions import Bernoulli, kl_divergence
from torch.nn.utils import parametrize

from core.schema import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range, Tunable
from methods.base import DIPConfig, DIPModule, ParamGroup, Stage
from methods.registry import register_method

MASK_FORMAT = "dipbench-oes-mask-v1"


@dataclass
class OESConfig(DIPConfig):
    # Reference code: github.com/Avra98/Optimal-Eye-Surgeon (dip_mask.py, configs/config_mask.yaml,
    # src/utils/quant.py, train_sparse.py); Survey A Fig. 6 for the learning rates.
    # fraction of weights kept (Survey A Fig. 6; config_mask.yaml 0.05)
    sparsity: Annotated[float, Range(gt=0, lt=1), Tunable(0.01, 0.5)] = 0.05
    mask_lr: PositiveFloat = 1e-2  # Adam lr of the mask logits (Survey A Fig. 6; config_mask.yaml lr 0.01)
    lr: PositiveFloat = 1e-3  # Adam lr of the kept weights in stage 2 (Survey A Fig. 6; train_sparse() default: 0.01)
    mask_steps: NonNegativeInt = 60000  # stage-1 iterations (config_mask.yaml max_steps 60000); 0 with mask_path
    kl_weight: NonNegativeFloat = 1e-9  # λ of eq 17 on the KL summed over all weights (config_mask.yaml kl 1e-9)
    temperature: PositiveFloat = 0.2  # Gumbel-softmax temperature τ (quant.py soft_quantize: 0.2)
    # z: 32 channels of U[0, 0.1) (dip_mask.py: get_noise(32, "noise", …), the original DIP input)
    input_dist: Literal["gaussian", "uniform"] = "uniform"
    input_channels: PositiveInt = 32
    mask_path: str | None = None  # load this mask (saved by save_mask, e.g. learned on another image) instead of stage 1
    save_mask: str | None = None  # write the learned mask here after stage 1 (a .pt file; reuse it with mask_path)

    def __post_init__(self):
        if self.mask_path is not None and not Path(self.mask_path).expanduser().is_file():
            raise ValueError(f"method.mask_path = {self.mask_path!r} is not a file; learn a mask first with "
                             "method.save_mask=/path/mask.pt (same method.net and run.seed), or unset method.mask_path")


class Masked(torch.nn.Module):
    """Parametrisation w ↦ w ⊙ m (torch.nn.utils.parametrize); the method sets ``mask``:
    a relaxed Bernoulli sample in stage 1, the fixed 0/1 mask in stage 2."""

    def __init__(self, shape: torch.Size):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


@register_method("optimal_eye_surgeon", OESConfig,
                 "Optimal Eye Surgeon: a Bernoulli mask learned at initialisation (Gumbel-softmax + KL), then the "
                 "sparse subnetwork is trained", "Survey A eq (17); Ghosh et al. ICML 2024",
                 smoke_config={"mask_steps": 3, "sparsity": 0.5, "lr": 0.01})
class OptimalEyeSurgeon(DIPModule):
    """Stage ``mask`` (eq 17): with the random initial weights θ_in frozen, learn logits l of
    Bernoulli keep-probabilities p = σ(l) by Adam on

        ℓ(A G(θ_in ⊙ m, z), y) + λ Σᵢ KL(Ber(pᵢ) ‖ Ber(s)),   m = σ((l + log u − log(1 − u)) / τ),

    the binary Gumbel-softmax (concrete) relaxation of m ~ Ber(p), u ~ U(0, 1) from the run's
    generator (``F.gumbel_softmax`` draws from the global RNG, not from it). Then C(p*): keep the
    ⌊s·d⌋ weights with the largest p over the whole network (ties broken by the run's generator,
    as the reference's random choice among ties). Stage ``reconstruct``: train θ ⊙ m with Adam;
    the masked entries get zero gradient, so they never change and contribute exactly zero.

    The mask covers every parameter of the network (weights, biases, normalisation), as the
    reference's ``model.parameters()``. ``mask_path`` loads a mask (``save_mask`` of another
    run: a mask learned on another image transfers, Survey A §III-C2) instead of stage 1."""

    automatic_optimization = False  # stage 1 steps the logits, stage 2 the weights

    def __init__(self, cfg: OESConfig, problem, seed, max_steps):
        super().__init__(cfg, problem, seed, max_steps)
        named = [(name, p) for name, p in self.net.named_parameters()]
        self.param_names = [name for name, _ in named]
        self.param_count = sum(p.numel() for _, p in named)
        self.keep = int(cfg.sparsity * self.param_count)  # ⌊s·d⌋ (reference make_mask_with_sparsity: int(s·d))
        if self.keep < 1:
            raise ValueError(f"method.sparsity = {cfg.sparsity} keeps no weight of the {self.param_count} of this "
                             "network; use a larger sparsity or a larger method.net")
        self.masks: list[Masked] = []
        self.targets: list[tuple[torch.nn.Module, str]] = []  # (module, parameter name) per mask
        for name, p in named:
            path, _, attr = name.rpartition(".")
            module = self.net.get_submodule(path)
            mask = Masked(p.shape)
            parametrize.register_parametrization(module, attr, mask)
            self.masks.append(mask)
            self.targets.append((module, attr))
        if cfg.mask_path is not None:
            self.set_hard_mask(load_mask(cfg.mask_path, self.param_names, [m.mask.shape for m in self.masks]))
            self.mask_logits = torch.nn.ParameterList()
        else:  # logits σ⁻¹(1/2) = 0: p = 1/2 (reference quant_initialization, q = 2)
            self.mask_logits = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros_like(p)) for _, p in named])
            self.net.requires_grad_(False)  # stage 1: θ_in frozen

    def stages(self):
        mask_steps = 0 if self.cfg.mask_path is not None else self.cfg.mask_steps
        return [Stage("mask", mask_steps, reconstruction=False), Stage("reconstruct", self.max_steps)]

    def parameter_groups(self):
        return [*super().parameter_groups(), ParamGroup("mask", list(self.mask_logits), self.cfg.mask_lr, "adam")]

    def on_stage_start(self, stage):
        if stage.reconstruction and self.cfg.mask_path is None:
            self.set_hard_mask(self.top_mask())
            if self.cfg.save_mask:
                save_mask(self.cfg.save_mask, self.param_names, self.hard_masks(), self)
            self.net.requires_grad_(True)
            self.reseed_generator()  # stage 2 draws from a freshly seeded generator: a loaded mask reproduces it

    # -- the mask ---------------------------------------------------------------------------
    def keep_probabilities(self) -> torch.Tensor:
        return torch.cat([torch.sigmoid(logit.detach()).flatten() for logit in self.mask_logits])

    def top_mask(self) -> list[torch.Tensor]:
        """C(p): 1 for the ⌊s·d⌋ largest keep-probabilities of the whole network, else 0."""
        with torch.no_grad():
            flat = torch.cat([logit.flatten() for logit in self.mask_logits])
            order = torch.randperm(flat.numel(), generator=self.generator, device=flat.device)  # seeded tie-break
            top = order[torch.argsort(flat[order], descending=True, stable=True)[: self.keep]]
            hard = torch.zeros_like(flat)
            hard[top] = 1.0
            return list(hard.split([m.mask.numel() for m in self.masks]))

    def set_hard_mask(self, masks: list[torch.Tensor]) -> None:
        for par, m in zip(self.masks, masks):
            par.mask = m.detach().reshape(par.mask.shape).to(par.mask.device, par.mask.dtype)

    def hard_masks(self) -> list[torch.Tensor]:
        return [m.mask.detach().bool() for m in self.masks]

    def original_weights(self) -> list[torch.Tensor]:
        """The trained tensors θ (``parametrizations.<name>.original``), in mask order."""
        return [module.parametrizations[attr].original for module, attr in self.targets]

    def effective_weights(self) -> list[torch.Tensor]:
        """The weights the network computes with, θ ⊙ m, in mask order."""
        return [getattr(module, attr) for module, attr in self.targets]

    def training_step(self, batch, batch_idx):
        if self.reconstructing:  # stage 2: train the kept weights of θ ⊙ m
            x = self.net(self.network_input())
            loss = self.data_fidelity(self.physics.A(x), batch["y"])
            self.gradient_step(loss, *(g for g in self._group_names if g != "mask"))
            return {"loss": loss, "x": x.detach(), "scalars": {"kept_fraction": self.keep / self.param_count}}
        tau = self.cfg.temperature  # stage 1, eq 17
        tiny = torch.finfo(self.z.dtype).tiny
        for par, logit in zip(self.masks, self.mask_logits):
            u = self.rand_like(logit).clamp(tiny, 1 - torch.finfo(self.z.dtype).eps)
            par.mask = torch.sigmoid((logit + torch.log(u) - torch.log1p(-u)) / tau)  # relaxed m ~ Ber(σ(l))
        x = self.net(self.z)
        prior = torch.tensor(self.cfg.sparsity, device=x.device)
        kl = sum(kl_divergence(Bernoulli(logits=logit), Bernoulli(probs=prior)).sum() for logit in self.mask_logits)
        loss = self.data_fidelity(self.physics.A(x), batch["y"]) + self.cfg.kl_weight * kl
        self.gradient_step(loss, "mask")
        return {"loss": loss, "x": x.detach(),
                "scalars": {"kl": kl.detach(), "mean_keep_probability": self.keep_probabilities().mean()}}


def save_mask(path: str, names: list[str], masks: list[torch.Tensor], module: OptimalEyeSurgeon) -> None:
    """Write the 0/1 mask per parameter name, with the settings it was learned with."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": MASK_FORMAT, "masks": {n: m.cpu() for n, m in zip(names, masks)},
                "sparsity": module.cfg.sparsity, "seed": module.seed,
                "net": dataclasses.asdict(module.cfg.net)}, target)


def load_mask(path: str, names: list[str], shapes: list[torch.Size]) -> list[torch.Tensor]:
    """The masks of a ``save_mask`` file in the order of ``names``; a clear error if they do
    not fit this network."""
    data = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != MASK_FORMAT:
        raise ValueError(f"method.mask_path = {path!r} is not an OES mask file (written by method.save_mask)")
    masks = data["masks"]
    wrong = [n for n, s in zip(names, shapes) if n not in masks or tuple(masks[n].shape) != tuple(s)]
    wrong += sorted(set(masks) - set(names))
    if wrong:
        raise ValueError(f"method.mask_path = {path!r} was learned for another network (its net: {data.get('net')}); "
                         f"parameter {wrong[0]!r} does not match this one; use the same method.net settings (and "
                         "run.seed for the same initial weights) as the run that saved it")
    return [masks[n].float() for n in names]
