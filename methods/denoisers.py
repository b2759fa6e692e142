"""Pluggable Gaussian denoisers x̂ = D(x, σ), chosen by config (``method.denoiser.name``), for
the plug-and-play / RED methods (Survey B §4.3: RED-APG, denoiser HQS and ADMM; Survey A's
DeepRED). A denoiser is a deepinv ``Denoiser`` (an ``nn.Module``) called as ``D(x, σ)`` on
``(B, C, H, W)`` tensors, σ the noise standard deviation in image units; it never needs
gradients (callers use ``torch.no_grad``) and is a pure function of (x, σ).

Channels: a backend denoises as one image only the channel counts it models jointly (its
``joint_channels``: colour BM3D and colour DRUNet weights for 3 channels); any other image
is denoised channel by channel as grey images — in particular complex MR images (real and
imaginary part as 2 channels, ``x_range`` "signed") and 1-channel CT.

Measured at σ = 25/255 (PSNR in dB; time per call on the shared 2-core CPU; BM3D single-threaded,
the default, was as fast as on both cores):

| name | what | 64² grey camera / astronaut | 64² colour astronaut | time 64² / 501² grey |
|---|---|---|---|---|
| ``bm3d`` (default) | BM3D (Dabov et al. 2007), ``bm3d`` package | 31.4 / 28.5 | 30.5 (per channel: 28.4) | 0.3 s / 9.2 s |
| ``bm3d``, ``profile: lc`` | its low-complexity profile | 31.3 / 28.4 | 30.3 | 0.12 s / 2.8 s |
| ``tv`` | isotropic TV prox, deepinv ``TVDenoiser`` | 30.8 / 26.0 | 26.0 | 15 ms / 5.1 s |
| ``nlm`` | non-local means, scikit-image (DeepRED code's settings) | 30.4 / 26.9 | 27.0 (per channel) | 10 ms / 0.2 s |
| ``drunet`` | deepinv DRUNet, local weights file | Survey B §6's denoiser | | |

(noisy input: 20.2 dB). ``bm3d`` is the offline default: it needs no weights and is the best of
what deepinv 0.5.0 offers without downloads (at σ = 10, 25, 50/255 on the camera crop BM3D beats
TV (100 iterations) by 0.1–1.1 dB, by 2.5 dB on the astronaut; TGV, median and bilateral filters are 3–10 dB
below; deepinv's wavelet denoisers need the ``ptwt`` package, which the project does not
install), and it is a prior the TV methods do not already cover. Its cost is the price: it runs
on the CPU only, ~9 s per call at 501² (``profile: lc``: 2.8 s for −0.2 dB).

``nlm`` is the denoiser of DeepRED's denoising code and ``deepred``'s default.

Every method names its denoiser field ``denoiser``, so the option is ``method.denoiser.…``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import deepinv as dinv
import numpy as np
import torch

from core.registry import TaggedRegistry
from core.schema import NonNegativeInt, PositiveFloat, PositiveInt, Range
from methods.base import NormalisedDIPConfig

DRUNET_WEIGHTS_HELP = (
    "download drunet_deepinv_gray_finetune_26k.pth (grey) or drunet_deepinv_color_finetune_22k.pth (colour) from "
    "https://huggingface.co/deepinv/drunet/tree/main on a machine with internet access, copy it here and set "
    "method.denoiser.weights=/path/to/file.pth (or use method.denoiser.name=bm3d, which needs no weights)")


@dataclass
class BM3DDenoiserConfig:
    """BM3D (Dabov et al. 2007) from the ``bm3d`` package; 3-channel images in its colour mode
    (block matching on luminance), others channel by channel."""

    name: Literal["bm3d"] = "bm3d"
    profile: Literal["np", "lc"] = "np"  # np: the package's default (= deepinv's BM3D wrapper) | lc: low complexity
    threads: NonNegativeInt = 1  # 1: bitwise reproducible (docs/conventions.md §5) | 0: all cores, results vary ~1e-7


@dataclass
class TVDenoiserConfig:
    """prox of γ·TV (isotropic), γ = ``weight``·σ, by deepinv's ``TVDenoiser`` (Chambolle–Pock)."""

    name: Literal["tv"] = "tv"
    weight: PositiveFloat = 1.0  # γ/σ; measured best of {0.5, 1, 2} on a 64² crop at σ = 10, 25 and 50/255
    n_it_max: PositiveInt = 100  # Chambolle–Pock iterations (Survey B handbook TVPrior: 100)
    crit: PositiveFloat = 1e-5  # relative-change stopping criterion (deepinv default)


@dataclass
class DRUNetDenoiserConfig:
    """DRUNet (Zhang et al. 2021) from deepinv with pretrained weights from a local file (no
    download on these machines); 1- or 3-channel weights, read from the file."""

    name: Literal["drunet"] = "drunet"
    weights: str | None = None  # path of a DRUNet state dict (.pth)

    def __post_init__(self):
        if not self.weights:
            raise ValueError(f"method.denoiser.weights is not set: DRUNet needs a local weights file; {DRUNET_WEIGHTS_HELP}")
        if not Path(self.weights).expanduser().is_file():
            raise ValueError(f"method.denoiser.weights = {self.weights!r} is not a file; {DRUNET_WEIGHTS_HELP}")


@dataclass
class NLMDenoiserConfig:
    """Non-local means (Buades et al. 2005), scikit-image's ``denoise_nl_means``, channel by
    channel, with the DeepRED denoising code's settings (github.com/GaryMataev/DeepRED,
    denoising.ipynb ``non_local_means``): 5×5 patches, 13×13 search window, h = 0.6σ (fast mode)."""

    name: Literal["nlm"] = "nlm"
    patch_size: PositiveInt = 5  # DeepRED code patch_size=5
    patch_distance: PositiveInt = 6  # DeepRED code patch_distance=6 (13×13 search area)
    h_factor: PositiveFloat = 0.6  # h = h_factor·σ (DeepRED code: 0.6 in fast mode, 0.8 otherwise)
    fast_mode: bool = True  # DeepRED code fast_mode=True


DENOISERS = TaggedRegistry("denoiser")  # name -> (config class, denoiser class built as cls(cfg))
register_denoiser = DENOISERS.register
denoiser_configs = DENOISERS.configs
DenoiserConfig = DENOISERS.field_type  # the type of a ``denoiser`` field


def build_denoiser(cfg) -> torch.nn.Module:
    return DENOISERS.component(cfg)(cfg)


class ChannelwiseDenoiser(dinv.models.Denoiser):
    """D(x, σ) on ``(B, C, H, W)``: images with a channel count in ``joint_channels`` go to
    :meth:`denoise` whole, any other image as B·C grey images."""

    joint_channels: tuple[int, ...] = (1,)

    def forward(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        b, c = x.shape[:2]
        if c in self.joint_channels:
            return self.denoise(x, float(sigma))
        return self.denoise(x.reshape(b * c, 1, *x.shape[2:]), float(sigma)).reshape(x.shape)

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        raise NotImplementedError


@register_denoiser("bm3d", BM3DDenoiserConfig)
class BM3DDenoiser(ChannelwiseDenoiser):
    joint_channels = (1, 3)

    def __init__(self, cfg: BM3DDenoiserConfig):
        super().__init__()
        import bm3d
        from bm3d.profiles import BM3DProfile, BM3DProfileLC

        self.bm3d, self.profile = bm3d, BM3DProfileLC() if cfg.profile == "lc" else BM3DProfile()
        self.profile.num_threads = cfg.threads

    def denoise(self, x, sigma):
        images = x.detach().cpu().double().numpy().transpose(0, 2, 3, 1)  # (B, H, W, C), CPU only
        if x.shape[1] == 3:
            out = [self.bm3d.bm3d_rgb(img, sigma, profile=self.profile) for img in images]
        else:
            out = [self.bm3d.bm3d(img[..., 0], sigma, profile=self.profile)[..., None] for img in images]
        return torch.from_numpy(np.stack(out).transpose(0, 3, 1, 2).copy()).to(x.device, x.dtype)


@register_denoiser("tv", TVDenoiserConfig)
class TVProxDenoiser(ChannelwiseDenoiser):
    def __init__(self, cfg: TVDenoiserConfig):
        super().__init__()
        self.weight, self.tv = cfg.weight, dinv.models.TVDenoiser(n_it_max=cfg.n_it_max, crit=cfg.crit)

    def denoise(self, x, sigma):
        self.tv.restart = True  # no warm start from the previous call: D is a function of (x, σ)
        return self.tv(x, ths=self.weight * sigma)


@register_denoiser("drunet", DRUNetDenoiserConfig)
class DRUNetDenoiser(ChannelwiseDenoiser):
    def __init__(self, cfg: DRUNetDenoiserConfig):
        super().__init__()
        path = str(Path(cfg.weights).expanduser())
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "m_head.weight" not in state:
            raise ValueError(f"method.denoiser.weights = {path!r} is not a DRUNet state dict; {DRUNET_WEIGHTS_HELP}")
        self.channels = state["m_head.weight"].shape[1] - 1  # the noise-level map is the extra input channel
        self.joint_channels = (self.channels,)
        self.net = dinv.models.DRUNet(in_channels=self.channels, out_channels=self.channels, pretrained=path)
        self.net.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True):
        return super().train(False)  # a pretrained denoiser: always in evaluation mode

    def denoise(self, x, sigma):
        if x.shape[1] == self.channels:
            return self.net(x, sigma)
        # a grey image through colour weights: replicate to the model's channels, average back
        return self.net(x.expand(-1, self.channels, -1, -1), sigma).mean(1, keepdim=True)


@register_denoiser("nlm", NLMDenoiserConfig)
class NLMDenoiser(ChannelwiseDenoiser):
    def __init__(self, cfg: NLMDenoiserConfig):
        super().__init__()
        self.cfg = cfg

    def denoise(self, x, sigma):
        from skimage.restoration import denoise_nl_means

        c = self.cfg
        images = x.detach().cpu().double().numpy()[:, 0]  # (B, H, W), CPU only
        out = [denoise_nl_means(img, patch_size=c.patch_size, patch_distance=c.patch_distance, h=c.h_factor * sigma,
                                fast_mode=c.fast_mode, sigma=sigma, preserve_range=True) for img in images]
        return torch.from_numpy(np.stack(out)[:, None].copy()).to(x.device, x.dtype)


@dataclass
class DenoiserSplittingConfig(NormalisedDIPConfig):
    """Settings shared by Survey B's plug-and-play methods (denoiser HQS, denoiser ADMM, RED;
    Survey B §6 and its handbook, implementations.md §1.5 items 7–9)."""

    lr: PositiveFloat = 1e-4  # handbook --lr 1e-4
    inner_steps: PositiveInt = 10  # N_sub: network steps per splitting update (handbook --num_inner_steps 10)
    # x = EMA of f_θ(z) (Survey B §6: denoiser methods average the output; 0.99 = the handbook's self-guided
    # exp_weight; its HQS / ADMM / RED scripts default to 0 = off)
    exp_weight: Annotated[float, Range(ge=0, lt=1)] = 0.99
    # Survey B §6 uses DRUNet (method.denoiser.name=drunet with a local weights file); the offline default is BM3D
    denoiser: DenoiserConfig = field(default_factory=BM3DDenoiserConfig)
