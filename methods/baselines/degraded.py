"""The task's degraded image taken as the reconstruction (the noisy image for
denoising, the masked image for inpainting, FBP for CT, zero-filled for MRI)."""
from __future__ import annotations

from dataclasses import dataclass

from methods.baselines.base import Baseline
from methods.registry import register_method


@dataclass
class DegradedConfig:
    pass


@register_method("degraded", DegradedConfig, "the degraded input image (noisy / masked / FBP / zero-filled)", "reference")
class DegradedInput(Baseline):
    def reconstruct(self):
        return self.problem.degraded
