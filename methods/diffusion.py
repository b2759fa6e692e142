"""Diffusion baselines and DIP–diffusion hybrids that need pretrained weights (Survey A Fig. 5
and §III-D): Score-MRI, MCG, DPS and uDiG-DIP. Not run here: this project ships no diffusion
weights and downloads nothing, and a method without its weights is not that method, so none
of them has a stand-in.

Plug-in point
-------------
Each method is registered (``python -m benchmark list`` shows it) with one option,
``method.checkpoint``: the local path of the pretrained weights (where to get them:
:data:`WEIGHTS`). Without it the method's ``skip`` says so, so suites skip it with that
reason (and constructing it directly raises
:class:`MissingWeightsError` naming the option and the weights' source). With it, the method
calls the sampler registered for its name::

    # my_samplers.py, loaded with  python -m benchmark run SUITE --plugins my_samplers.py
    from methods.diffusion import register_sampler

    @register_sampler("dps")
    def dps(problem, checkpoint, cfg, generator):  # -> image (1, *problem.x_shape)
        model = load_my_unet(checkpoint)           # e.g. deepinv.models.DiffUNet(pretrained=checkpoint)
        return run_dps(model, problem.y, problem.physics, generator)  # e.g. deepinv.sampling.DPS

``problem`` is the task's :class:`~datamodules.task.Measurement` (no ground truth), ``cfg`` the
method's config (``cfg.options``: free settings for the sampler) and ``generator`` a
``torch.Generator`` seeded with ``method.sample_seed``. Each is a ``Baseline`` (one sample per
setting; the run seed does not enter, ``sample_seed`` does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.registry import Registry
from core.schema import NonNegativeInt
from methods.baselines.base import Baseline
from methods.registry import register_method

# where each method's pretrained weights come from (the papers' official repositories)
WEIGHTS = {
    "score_mri": "Score-MRI (Chung & Ye, MedIA 2022): the fastMRI-knee NCSN++ checkpoint of github.com/HJ-harry/score-MRI "
                 "(weights/checkpoint_95.pth, downloaded by its install.sh)",
    "mcg": "MCG (Chung et al., NeurIPS 2022): the checkpoints listed in github.com/HJ-harry/MCG_diffusion's README "
           "(AAPM checkpoint_185.pth for sparse-view CT, ffhq_10m.pt / imagenet256.pt for inpainting)",
    "dps": "DPS (Chung et al., ICLR 2023): ffhq_10m.pt of github.com/DPS2022/diffusion-posterior-sampling, or OpenAI's "
           "guided-diffusion ImageNet 256×256 unconditional model",
    "udig_dip": "uDiG-DIP (Liang et al., ICASSP 2025), which ships no weights of its own: a pretrained score model of "
                "the image class, e.g. the fastMRI checkpoint of github.com/HJ-harry/score-MRI (MRI) or the AAPM "
                "checkpoint of github.com/HJ-harry/MCG_diffusion (CT)",
}

SAMPLERS = Registry("diffusion sampler")  # method name -> fn(problem, checkpoint, cfg, generator) -> image


def register_sampler(name: str):
    """Register ``fn(problem, checkpoint, cfg, generator) -> image`` as the sampler of method
    ``name`` (one of :data:`WEIGHTS`)."""
    if name not in WEIGHTS:
        raise ValueError(f"no diffusion method {name!r}; valid: {', '.join(WEIGHTS)}")

    return SAMPLERS.register(name, description=f"sampler of {name}")


class MissingWeightsError(ValueError):
    """A diffusion method was asked to run without ``method.checkpoint``."""


def missing_weights_message(name: str) -> str:
    return (f"{name} needs pretrained diffusion weights, which this project does not ship or download: set "
            f"method.checkpoint=/path/to/weights (from {WEIGHTS[name]}) and register its sampler "
            "(methods/diffusion.py)")


@dataclass
class DiffusionConfig:
    checkpoint: str | None = None  # local path of the pretrained weights (see methods/diffusion.py for the source)
    sample_seed: NonNegativeInt = 0  # seed of the sampler's generator
    options: dict = field(default_factory=dict)  # settings passed to the registered sampler (cfg.options)

    def __post_init__(self):
        if self.checkpoint is not None and not Path(self.checkpoint).expanduser().exists():
            raise ValueError(f"method.checkpoint = {self.checkpoint!r} does not exist; download the pretrained "
                             "weights (sources: methods/diffusion.py WEIGHTS) and give their local path")


class DiffusionMethod(Baseline):
    """A pretrained-diffusion method: runs the sampler registered for its name on the local
    checkpoint; refuses to run without one."""

    @classmethod
    def skip(cls, cfg: DiffusionConfig, task) -> str | None:
        if cfg.checkpoint is None:
            return missing_weights_message(cls.method_name)
        return super().skip(cfg, task)

    def __init__(self, cfg: DiffusionConfig, problem, oracle=None):
        super().__init__(cfg, problem, oracle)
        if cfg.checkpoint is None:
            raise MissingWeightsError(missing_weights_message(self.method_name))

    def reconstruct(self) -> torch.Tensor:
        name = self.method_name
        if name not in SAMPLERS:
            raise NotImplementedError(f"no sampler is registered for {name}: register one with "
                                      f"@methods.diffusion.register_sampler({name!r}) in a plugin file "
                                      "(--plugins file.py); see methods/diffusion.py")
        generator = torch.Generator().manual_seed(self.cfg.sample_seed)
        x = SAMPLERS[name].target(self.problem, str(Path(self.cfg.checkpoint).expanduser()), self.cfg, generator)
        if tuple(x.shape) != (1, *self.problem.x_shape):
            raise ValueError(f"the {name} sampler returned shape {tuple(x.shape)}; the task's images are "
                             f"(1, {', '.join(map(str, self.problem.x_shape))})")
        return x


@register_method("score_mri", DiffusionConfig, "Score-MRI: score-based diffusion sampling with data consistency "
                 "(needs pretrained weights: method.checkpoint)", "Survey A Fig. 5 [33]; Chung & Ye 2022")
class ScoreMRI(DiffusionMethod):
    requires = frozenset({"mri_multicoil"})  # a fastMRI-knee score model


@register_method("mcg", DiffusionConfig, "MCG: diffusion sampling with manifold-constrained gradients "
                 "(needs pretrained weights: method.checkpoint)", "Survey A Fig. 5 [39]; Chung et al. 2022")
class MCG(DiffusionMethod):
    requires = frozenset({"linear"})  # projections onto {x: Ax = y}


@register_method("dps", DiffusionConfig, "DPS: diffusion posterior sampling (needs pretrained weights: method.checkpoint)",
                 "Survey A Fig. 5 [4]; Chung et al. 2023")
class DPS(DiffusionMethod):
    requires = frozenset()  # linear and nonlinear A (gradients of ‖y − A x̂₀‖)


@register_method("udig_dip", DiffusionConfig, "uDiG-DIP: DIP whose input is refined by a pretrained diffusion model "
                 "(needs pretrained weights: method.checkpoint)", "Survey A §III-D [23]; Liang et al. 2025")
class UDiGDIP(DiffusionMethod):
    requires = frozenset({"linear"})  # MRI and sparse-view CT in the paper
