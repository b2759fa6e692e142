"""BART ``pics`` with an ℓ1-wavelet penalty (compressed-sensing SENSE, Lustig et al.
2007; Uecker et al. 2015): min_x ½‖M F S x − y‖² + λ‖Ψx‖₁ with the task's own coil maps,
solved by BART (FISTA by default). A classical compressed-sensing reference for MRI."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.schema import NonNegativeFloat, PositiveInt
from datamodules.sources.bart_io import BART_HOW_TO_INSTALL, bart_executable, run_bart, to_bart
from methods.baselines.base import Baseline
from methods.registry import register_method


@dataclass
class BartPicsConfig:
    regularization: NonNegativeFloat = 0.01  # λ of the wavelet ℓ1 penalty (in pics' internally scaled units)
    iterations: PositiveInt = 100
    options: str = ""  # extra pics options, e.g. "-m" (ADMM)


@register_method("bart_pics", BartPicsConfig, "BART pics, ℓ1-wavelet compressed-sensing SENSE (needs BART)",
                 "Lustig et al. 2007; BART", smoke_config={"iterations": 5})
class BartPics(Baseline):
    requires = frozenset({"mri_multicoil"})

    @classmethod
    def skip(cls, cfg: BartPicsConfig, task) -> str | None:
        if bart_executable() is None:
            return f"bart_pics needs the BART binary, which is not installed here: {BART_HOW_TO_INSTALL}"
        return super().skip(cfg, task)

    def reconstruct(self):
        physics = self.problem.physics
        command = f"pics -S -R W:3:0:{self.cfg.regularization:g} -i {self.cfg.iterations} {self.cfg.options}".strip()
        kspace = torch.view_as_complex(self.problem.y[0].detach().cpu().float().contiguous()).numpy()
        maps = physics.maps_complex().detach().cpu().numpy()
        image = np.squeeze(run_bart(command, to_bart(kspace), to_bart(maps))).astype(np.complex64)
        self.info = {"bart_command": command}
        x = torch.view_as_real(torch.from_numpy(image)).permute(2, 0, 1)[None]
        return x.to(self.problem.y.device, self.problem.y.dtype)
