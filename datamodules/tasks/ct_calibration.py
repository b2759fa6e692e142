"""``ct_calibration``: CT slices that are *not* the walnut, measured exactly like the walnut
twin (the walnut scanner's fan-beam geometry, line integrals in mm, Gaussian noise as a
fraction of mean |Ax|, PSNR in the inscribed circle), so that a method's CT weights can be
tuned on them and then applied to the walnut without ever tuning on the reported case
(``python -m benchmark tune``). Images: ``head``, the real head CT of the pydicom-data
wheel (μ/μ_max in [0, 1]), and ``ellipses``, a seeded random-ellipse phantom in the disk.
Measurements are simulated."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.schema import NonNegativeInt
from datamodules.registry import register_dataset
from datamodules.sources.dicom import hu_to_unit, load_ct_slice
from datamodules.task import Task
from datamodules.tasks.ct import SimulatedCTConfig, resize, scanner_task, simulate_walnut_scanner


@dataclass
class CTCalibrationConfig(SimulatedCTConfig):
    image: Literal["head", "ellipses"] = "head"
    phantom_seed: NonNegativeInt = 0  # ellipses: which random phantom
    image_size: int = 64  # the CPU twin's size


def random_ellipses(size: int, seed: int, count: int = 12) -> torch.Tensor:
    """A phantom of ``count`` random ellipses inside the inscribed disk, values in [0, 1]
    (a body ellipse of 0.5 plus additive inner ellipses, clipped)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    image = np.zeros((size, size))

    def ellipse(cx, cy, a, b, angle):
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        return (u / a) ** 2 + (v / b) ** 2 <= 1

    image[ellipse(0, 0, 0.85, 0.7, rng.uniform(0, np.pi))] = 0.5
    for _ in range(count):
        r = rng.uniform(0, 0.55)
        phi = rng.uniform(0, 2 * np.pi)
        a, b = rng.uniform(0.04, 0.3, size=2)
        image[ellipse(r * np.cos(phi), r * np.sin(phi), a, b, rng.uniform(0, np.pi))] += rng.uniform(-0.25, 0.45)
    return torch.from_numpy(np.clip(image, 0, 1).astype(np.float32))


@register_dataset("ct_calibration", CTCalibrationConfig,
                  "CT calibration slices (real head CT | random ellipses) measured like the walnut twin (simulated)",
                  capabilities={"linear", "fbp", "ct", "real_image"}, smoke_config={"image_size": 32, "n_angles": 8})
def build_ct_calibration(cfg: CTCalibrationConfig) -> Task:
    if cfg.image == "head":
        hu, _, source = load_ct_slice("embedded")
        gt = resize(torch.from_numpy(hu_to_unit(hu)[0]), cfg.image_size)
    else:
        gt = random_ellipses(cfg.image_size, cfg.phantom_seed)
        source = f"random-ellipse phantom (seed {cfg.phantom_seed})"
    gt, y, op, info = simulate_walnut_scanner(gt.clamp(0, 1), cfg)
    label = (f"{source}, {cfg.image_size}², {cfg.geometry}-beam measurement with the walnut scanner's geometry, "
             f"{cfg.n_angles} angles × {info['n_detectors']} detectors simulated with ASTRA ({cfg.projector}), "
             f"Gaussian noise {cfg.noise:g}·mean|Ax| (calibration data, not the walnut)")
    return scanner_task("ct_calibration", gt, y, op, label, info, cfg.fbp_iterations)
