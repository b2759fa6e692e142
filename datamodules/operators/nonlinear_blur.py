"""Nonlinear deblurring operators (Survey A Fig 5, "non-linear deblurring").

Survey A (after aSeqDIP [8] and DPS, Chung et al. 2023) uses a *learned* blur model: a
network trained on GOPRO blur pairs (Tran et al. 2021, "Explore image deblurring via
encoded blur kernel space") with a fixed latent kernel code. Its weights cannot ship
with this project, so the default operator is an analytic stand-in with the same
structure "blur, then a nonlinearity":

    A(x) = g(k ∗ x),   g a camera response curve (CRF),

the standard model of a blurred photograph taken by a camera with a nonlinear
response (Chen et al., "Nonlinear camera response functions and image deblurring",
CVPR 2012; Tai et al., TPAMI 2013): the sensor integrates linear irradiance over the
exposure (the blur), and the camera then maps it through a monotone, concave,
saturating curve (Grossberg & Nayar, "What is the space of camera response
functions?", CVPR 2003). Two curves, both smooth, monotone, g(0) = 0 and g(1) = 1:

* ``tanh``:  g(u) = tanh(α u) / tanh(α)   (saturating; α = 1: g(0.5) ≈ 0.61, slope 1.31 at 0, 0.55 at 1)
* ``gamma``: g(u) = ((u + ε)^{1/γ} − ε^{1/γ}) / ((1 + ε)^{1/γ} − ε^{1/γ}), u clamped at 0
  (sRGB-like display gamma γ = 2.2; ε = 10⁻³ keeps the slope finite at 0)

A user's learned blur model plugs in through :class:`LearnedBlur` (any ``nn.Module``
mapping x ∈ [0, 1] ``(B, C, H, W)`` to y), or from a file with
:func:`load_blur_model`. Only ``A`` is needed: DIP methods use ``physics.A(x)``.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from datamodules.operators.base import NonlinearOperator
from datamodules.operators.blur import BlurOperator

RESPONSES = ("tanh", "gamma")

LEARNED_MODEL_HELP = (
    "A blur model file must be a torch.export program (.pt2: torch.export.save(torch.export.export(model, (x,)), path)) "
    "or a TorchScript module (.pt/.pth: torch.jit.script(model).save(path)). Its forward takes x in [0, 1] of shape "
    "(B, C, H, W) and returns the blurred image; bake any extra inputs (e.g. the fixed latent kernel code of the "
    "DPS/bkse GOPRO model) into the wrapper before exporting."
)


def tanh_response(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """Saturating tone curve g(u) = tanh(αu)/tanh(α)."""
    return torch.tanh(alpha * u) / math.tanh(alpha)


GAMMA_EPS = 1e-3


def gamma_response(u: torch.Tensor, gamma: float, eps: float = GAMMA_EPS) -> torch.Tensor:
    """Display-gamma curve normalised to g(0) = 0, g(1) = 1, smooth for u ≥ 0."""
    p = 1.0 / gamma
    lo, hi = eps**p, (1.0 + eps) ** p
    return ((u.clamp_min(0.0) + eps) ** p - lo) / (hi - lo)


class NonlinearBlur(NonlinearOperator):
    """A(x) = g(k ∗ x): a linear blur followed by a camera response curve (module doc)."""

    def __init__(self, blur: BlurOperator, response: str = "tanh", alpha: float = 1.0, gamma: float = 2.2):
        if response not in RESPONSES:
            raise ValueError(f"unknown response {response!r}; valid: {', '.join(RESPONSES)}")
        if response == "tanh" and alpha <= 0:
            raise ValueError(f"response_alpha must be > 0, got {alpha}")
        if response == "gamma" and gamma <= 1:
            raise ValueError(f"response_gamma must be > 1 (γ = 1 is linear), got {gamma}")
        super().__init__(in_shape=blur.in_shape, out_shape=blur.out_shape)
        self.blur = blur
        self.response, self.alpha, self.gamma = response, float(alpha), float(gamma)

    def curve(self, u: torch.Tensor) -> torch.Tensor:
        if self.response == "tanh":
            return tanh_response(u, self.alpha)
        return gamma_response(u, self.gamma)

    def inverse_curve(self, y: torch.Tensor) -> torch.Tensor:
        """g⁻¹ on [0, 1]: maps a blurred photo back to linear intensity (no deblurring)."""
        y = y.clamp(0.0, 1.0)
        if self.response == "tanh":
            return torch.atanh(y * math.tanh(self.alpha)) / self.alpha
        p = 1.0 / self.gamma
        lo, hi = GAMMA_EPS**p, (1.0 + GAMMA_EPS) ** p
        return (y * (hi - lo) + lo) ** self.gamma - GAMMA_EPS

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.curve(self.blur.A(x))


class LearnedBlur(NonlinearOperator):
    """A(x) = model(x) for a user-supplied (e.g. pre-trained) blur network.

    The network is frozen (``eval()``, no parameter gradients); gradients still flow
    to x, which is all DIP needs. ``out_shape`` is found by one forward pass.
    """

    def __init__(self, model: torch.nn.Module, in_shape):
        try:
            model.eval()
        except NotImplementedError:  # torch.export modules: captured in the mode they were exported in
            pass
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            out = model(torch.zeros((1, *in_shape)))
        super().__init__(in_shape=in_shape, out_shape=tuple(out.shape[1:]))
        self.model = model

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.model(x)

    @classmethod
    def from_path(cls, path: str | Path, in_shape) -> LearnedBlur:
        return cls(load_blur_model(path), in_shape)


def load_blur_model(path: str | Path) -> torch.nn.Module:
    """Load a blur network saved with ``torch.export`` (``.pt2``) or TorchScript."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"blur model {path} not found. {LEARNED_MODEL_HELP}")
    try:
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # a wrong format: say what is expected
        raise ValueError(f"could not load blur model {path}: {type(exc).__name__}: {exc}\n{LEARNED_MODEL_HELP}") from exc
