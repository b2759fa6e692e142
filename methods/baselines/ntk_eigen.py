"""NTK eigenvectors of an untrained DIP network (Survey B §5.1, Fig. 3; B-F3): the top-k
eigenvectors of K = J Jᵀ at the initialisation θ₀ for a given network input (random noise or
the FBP image), and the untrained output f_θ₀(z) as the reconstruction.

The network and input are built exactly as a DIP run with ``run.seed = seed`` builds them
(methods/base.py), so the analysis describes that run's initialisation. Nothing is trained and
the ground truth is never seen: the eigenvectors are stored with the run (image
``ntk_basis``: (k, H, W), orthonormal as vectors of ℝⁿ; ``ntk_eigvec_1…`` the first
``show`` of them, sign fixed so the largest entry is positive) and the report measures how
much of the ground truth's energy their span holds (reports/theory.py). Eigenvalues,
residuals ‖Kv − λv‖/λ and the method used are stored as metrics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from core.schema import NonNegativeFloat, NonNegativeInt, PositiveInt
from methods.base import DIPConfig, network_mismatch
from methods.baselines.base import Baseline
from methods.networks import NetConfig, UNetConfig
from methods.ntk import top_eigenpairs
from methods.registry import register_method
from methods.vanilla_dip import VanillaDIP


@dataclass
class NTKEigenConfig:
    seed: NonNegativeInt = 0  # the DIP run's seed: network initialisation and noise input
    input: Literal["noise", "fbp", "adjoint"] = "noise"  # docs/conventions.md §3 (Survey B Fig. 3: noise vs FBP)
    input_dist: Literal["gaussian", "uniform"] = "gaussian"
    input_channels: PositiveInt = 1
    input_scale: NonNegativeFloat = 0.1
    net: NetConfig = field(default_factory=UNetConfig)
    k: PositiveInt = 64  # eigenvectors computed (the span's energy is reported for 1 … k)
    show: PositiveInt = 4  # eigenvectors stored as separate images (Survey B Fig. 3: 4)
    dense_limit: PositiveInt = 1024  # n ≤ this: K formed and diagonalised exactly; else subspace iteration
    power_iterations: PositiveInt = 4
    oversample: NonNegativeInt = 16

    def __post_init__(self):
        if self.show > self.k:
            raise ValueError(f"show = {self.show} eigenvectors but only k = {self.k} are computed; use show <= k")


@register_method("ntk_eigen", NTKEigenConfig, "top-k eigenvectors of the NTK J Jᵀ of the untrained network (analysis)",
                 "Survey B §5.1, Fig. 3", smoke_config={"k": 4, "net": {"scales": 2, "channels": 4, "skip_channels": [0, 4]},
                                                          "dense_limit": 256, "power_iterations": 1})
class NTKEigen(Baseline):
    @classmethod
    def requirements(cls, cfg: NTKEigenConfig) -> set[str]:
        return VanillaDIP.requirements(dip_config(cfg))

    @classmethod
    def skip(cls, cfg: NTKEigenConfig, task) -> str | None:
        return network_mismatch(cls.method_name, cfg, task) or super().skip(cfg, task)

    def reconstruct(self) -> torch.Tensor:
        cfg = self.cfg
        dip = VanillaDIP(dip_config(cfg), self.problem, cfg.seed, max_steps=1)  # θ₀ and z as the DIP run's
        dip.to("cuda" if torch.cuda.is_available() else "cpu")  # a paper-size U-Net's NTK needs a GPU
        n = dip.z.new_zeros(self.problem.x_shape).numel()
        values, vectors, residuals = top_eigenpairs(dip.net, dip.z, min(cfg.k, n), dense_limit=cfg.dense_limit,
                                                    oversample=cfg.oversample, power_iterations=cfg.power_iterations,
                                                    seed=cfg.seed)
        signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))  # largest entry positive
        c, h, w = self.problem.x_shape
        basis = (vectors * signs).T.reshape(-1, c, h, w)
        basis = basis.cpu()
        self.images = {"ntk_basis": basis.reshape(1, -1, c * h, w)}  # every eigenvector; channels stacked along H
        self.images.update({f"ntk_eigvec_{i + 1}": basis[i:i + 1] for i in range(min(cfg.show, len(basis)))})
        self.info = {"ntk_eigenvalues": values.tolist(), "ntk_eigen_residuals": residuals.tolist(),
                     "ntk_eigen_method": "exact (formed K)" if n <= cfg.dense_limit else
                     f"subspace iteration, {cfg.power_iterations} power steps, block {min(n, cfg.k + cfg.oversample)}",
                     "ntk_input": cfg.input, "n_params": sum(p.numel() for p in dip.net.parameters())}
        with torch.no_grad():
            return dip.net(dip.z).detach().cpu()  # the untrained output f_θ₀(z)


def dip_config(cfg: NTKEigenConfig) -> DIPConfig:
    """The DIP settings of the run whose initialisation is analysed."""
    return DIPConfig(input=cfg.input, input_dist=cfg.input_dist, input_channels=cfg.input_channels,
                     input_scale=cfg.input_scale, net=cfg.net)
