"""Natural-image restoration tasks besides denoising (Survey A Fig 5): inpainting with
hole-to-image ratio 0.25, linear Gaussian/motion deblurring, and nonlinear deblurring.

Every task is a real image (scikit-image photo or CBSD68) with a *simulated*
degradation; noise σ is on the 0–255 scale like ``denoising``, drawn with its own
seed (``noise_seed``) and added after the operator. PSNR: full image, data range 1
(conventions.md §7). ``reference`` (every task here) adds a second image as
``extras["reference"]`` for the Ref-G input (``method.input=reference``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch

from core.schema import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from datamodules.operators.blur import BlurOperator, make_kernel
from datamodules.operators.inpainting import MaskOperator, make_mask
from datamodules.operators.nonlinear_blur import LearnedBlur, NonlinearBlur
from datamodules.registry import register_dataset
from datamodules.task import ImageMetric, Task
from datamodules.tasks.denoising import NaturalImageConfig, gaussian_noise, natural_image, reference_image, with_reference

# DPS (Chung et al. 2023) measurement noise 0.05 on [0, 1] images, the setting of the
# deblurring comparisons that Survey A's Fig 5 takes from aSeqDIP [8].
DPS_SIGMA = 0.05 * 255

FULL_IMAGE_PSNR = "PSNR on the full image, data range 1"
NATURAL_LINEAR = with_reference({"linear", "real_image", "natural_image"})  # + "reference_image" with a reference


def _noise_note(sigma: float) -> str:
    return f"simulated Gaussian noise σ={sigma:g}/255" if sigma > 0 else "no noise"


def _with_reference(cfg: NaturalImageConfig, gt: torch.Tensor, extras: dict, provenance: str) -> tuple[dict, str]:
    """``extras`` and ``provenance`` with the task's reference image (if ``cfg.reference`` is set)."""
    ref, label = reference_image(cfg, gt)
    return {**extras, **ref}, provenance + (f", {label}" if label else "")


def _metric() -> ImageMetric:
    return ImageMetric(data_range=1.0, description=FULL_IMAGE_PSNR)


# -- inpainting ---------------------------------------------------------------------------


@dataclass
class InpaintingConfig(NaturalImageConfig):
    # random (missing pixels) | box (one rectangular hole) | blocks (missing square blocks)
    mask_type: Literal["random", "box", "blocks"] = "random"
    hole_ratio: Annotated[float, Range(ge=0, lt=1)] = 0.25  # fraction of missing pixels (Survey A Fig 5: 0.25)
    block_size: PositiveInt = 8  # cell size of mask_type=blocks
    mask_seed: NonNegativeInt = 0  # seed of the mask (fixed across DIP seeds)
    sigma: NonNegativeFloat = 0.0  # noise std on the observed pixels, 0–255 scale


@register_dataset("inpainting", InpaintingConfig,
                  "inpainting of a natural image (real image, simulated hole mask, Survey A Fig 5)",
                  capabilities=NATURAL_LINEAR, smoke_config={"crop": 16})
def build_inpainting(cfg: InpaintingConfig) -> Task:
    gt, label = natural_image(cfg)
    mask = make_mask(cfg.mask_type, tuple(gt.shape[-2:]), cfg.hole_ratio, cfg.mask_seed, cfg.block_size)
    physics = MaskOperator(mask, gt.shape[1])
    sigma = cfg.sigma / 255.0
    y = physics.A(gt + gaussian_noise(gt.shape, sigma, cfg.noise_seed))  # holes stay 0
    extras, provenance = _with_reference(cfg, gt, {"mask": mask.bool()}, (
        f"{label}, simulated {cfg.mask_type} mask with hole ratio {physics.hole_ratio:.3f} "
        f"(mask seed {cfg.mask_seed}), {_noise_note(cfg.sigma)}"))
    return Task(
        name="inpainting",
        gt=gt,
        y=y,
        physics=physics,
        degraded=y.clamp(0, 1),  # the masked image, holes black
        metric=_metric(),
        provenance=provenance,
        extras=extras,
        info={"sigma": sigma, "hole_ratio": physics.hole_ratio},
    )


# -- linear deblurring --------------------------------------------------------------------


@dataclass
class DeblurConfig(NaturalImageConfig):
    kernel_size: PositiveInt = 13  # odd PSF size in pixels
    padding: Literal["reflect", "circular", "replicate", "constant"] = "reflect"  # boundary (all with exact adjoints)
    sigma: NonNegativeFloat = DPS_SIGMA  # noise std, 0–255 scale (12.75 = 0.05, DPS)

    def __post_init__(self):
        super().__post_init__()
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred blur), got {self.kernel_size}")
        if self.crop is not None and self.kernel_size // 2 >= self.crop:
            raise ValueError(f"kernel_size = {self.kernel_size} is too large for crop = {self.crop}; "
                             "use a smaller kernel_size or a larger crop")


@dataclass
class GaussianDeblurConfig(DeblurConfig):
    kernel_sigma: PositiveFloat = 2.0  # Gaussian PSF std in pixels


@dataclass
class MotionDeblurConfig(DeblurConfig):
    kernel_seed: NonNegativeInt = 0  # seed of the random motion trajectory
    motion_length_scale: PositiveFloat = 0.3  # Matérn length scale of the trajectory (deepinv default)
    motion_std: PositiveFloat = 0.25  # std of the trajectory Gaussian process (deepinv default)


def _blur_task(name: str, cfg: DeblurConfig, kernel: torch.Tensor, what: str) -> Task:
    gt, label = natural_image(cfg)
    physics = BlurOperator(kernel, gt.shape[1:], cfg.padding)
    sigma = cfg.sigma / 255.0
    with torch.no_grad():
        y = physics.A(gt) + gaussian_noise(gt.shape, sigma, cfg.noise_seed)
    extras, provenance = _with_reference(cfg, gt, {"kernel": kernel},
                                         f"{label}, simulated {what} ({cfg.padding} boundary), {_noise_note(cfg.sigma)}")
    return Task(
        name=name,
        gt=gt,
        y=y,
        physics=physics,
        degraded=y.clamp(0, 1),
        metric=_metric(),
        provenance=provenance,
        extras=extras,
        info={"sigma": sigma},
    )


@register_dataset("deblur_gaussian", GaussianDeblurConfig,
                  "Gaussian deblurring of a natural image (real image, simulated blur and noise)",
                  capabilities=NATURAL_LINEAR, smoke_config={"crop": 16, "kernel_size": 5})
def build_deblur_gaussian(cfg: GaussianDeblurConfig) -> Task:
    kernel = make_kernel("gaussian", cfg.kernel_size, sigma=cfg.kernel_sigma)
    return _blur_task("deblur_gaussian", cfg, kernel,
                      f"{cfg.kernel_size}×{cfg.kernel_size} Gaussian blur σ={cfg.kernel_sigma:g} px")


@register_dataset("deblur_motion", MotionDeblurConfig,
                  "motion deblurring of a natural image (real image, simulated random motion blur and noise)",
                  capabilities=NATURAL_LINEAR, smoke_config={"crop": 16, "kernel_size": 5})
def build_deblur_motion(cfg: MotionDeblurConfig) -> Task:
    kernel = make_kernel("motion", cfg.kernel_size, seed=cfg.kernel_seed, length_scale=cfg.motion_length_scale,
                         trajectory_std=cfg.motion_std)
    return _blur_task("deblur_motion", cfg, kernel,
                      f"{cfg.kernel_size}×{cfg.kernel_size} random motion blur (kernel seed {cfg.kernel_seed})")


# -- nonlinear deblurring -----------------------------------------------------------------


@dataclass
class NonlinearDeblurConfig(DeblurConfig):
    blur: Literal["gaussian", "motion"] = "motion"  # the linear blur before the response curve
    kernel_sigma: PositiveFloat = 2.0  # blur=gaussian
    kernel_seed: NonNegativeInt = 0  # blur=motion
    motion_length_scale: PositiveFloat = 0.3
    motion_std: PositiveFloat = 0.25
    response: Literal["tanh", "gamma"] = "tanh"  # camera response after the blur (see operators/nonlinear_blur.py)
    response_alpha: PositiveFloat = 1.0  # tanh: g(u) = tanh(αu)/tanh(α)
    response_gamma: PositiveFloat = 2.2  # gamma: g(u) ∝ (u+ε)^(1/γ)
    model_path: str | None = None  # a learned blur model (.pt2 torch.export or TorchScript) replacing blur+response

    def __post_init__(self):
        if self.model_path is None:  # a learned model has no kernel
            super().__post_init__()
        else:
            NaturalImageConfig.__post_init__(self)


@register_dataset(
    "deblur_nonlinear",
    NonlinearDeblurConfig,
    "nonlinear deblurring of a natural image (real image, simulated blur + camera response, or a user's learned blur model)",
    capabilities=with_reference({"real_image", "natural_image"}),
    smoke_config={"crop": 16, "kernel_size": 5},
)
def build_deblur_nonlinear(cfg: NonlinearDeblurConfig) -> Task:
    gt, label = natural_image(cfg)
    sigma = cfg.sigma / 255.0
    extras: dict[str, torch.Tensor] = {}
    if cfg.model_path:
        physics = LearnedBlur.from_path(cfg.model_path, gt.shape[1:])
        what = f"learned blur model {cfg.model_path}"
    else:
        kernel = make_kernel(cfg.blur, cfg.kernel_size, sigma=cfg.kernel_sigma, seed=cfg.kernel_seed,
                             length_scale=cfg.motion_length_scale, trajectory_std=cfg.motion_std)
        physics = NonlinearBlur(BlurOperator(kernel, gt.shape[1:], cfg.padding), cfg.response,
                                cfg.response_alpha, cfg.response_gamma)
        param = f"α={cfg.response_alpha:g}" if cfg.response == "tanh" else f"γ={cfg.response_gamma:g}"
        what = (f"{cfg.kernel_size}×{cfg.kernel_size} {cfg.blur} blur + {cfg.response} camera response {param} "
                "(analytic stand-in for Survey A's learned blur)")
        extras["kernel"] = kernel
    with torch.no_grad():
        Ax = physics.A(gt)
        y = Ax + gaussian_noise(Ax.shape, sigma, cfg.noise_seed)
        # shown/scored as "degraded": the blurred photo mapped back through the known
        # response curve (no deblurring); a learned model has no inverse, so y itself.
        degraded = physics.inverse_curve(y.clamp(0, 1)) if isinstance(physics, NonlinearBlur) else y
    if degraded.shape != gt.shape:
        raise ValueError(f"the blur model maps {tuple(gt.shape[1:])} images to {tuple(y.shape[1:])}; "
                         "deblur_nonlinear needs a blurred image of the same shape")
    extras, provenance = _with_reference(cfg, gt, extras, f"{label}, simulated {what}, {_noise_note(cfg.sigma)}")
    return Task(
        name="deblur_nonlinear",
        gt=gt,
        y=y,
        physics=physics,
        degraded=degraded.clamp(0, 1),
        metric=_metric(),
        provenance=provenance,
        extras=extras,
        info={"sigma": sigma},
    )
