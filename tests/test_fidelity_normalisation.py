"""‖A‖_F² of every operator kind and the `normalised` data term built on it (docs/conventions.md §1)."""
import numpy as np
import pytest
import torch

from datamodules.operators import Identity
from datamodules.operators.base import hutchinson_frobenius_sq
from datamodules.operators.blur import BlurOperator, make_kernel
from datamodules.operators.ct import CTOperator, fan_geometry, parallel_geometry
from datamodules.operators.inpainting import MaskOperator
from datamodules.operators.mri import MultiCoilMRI
from datamodules.task import Measurement
from methods.vanilla_dip import VanillaDIP, VanillaDIPConfig


def exact_frobenius_sq(op) -> float:
    """trace(AᵀA) = Σ_j ‖A e_j‖² by applying A to every basis image."""
    n = int(np.prod(op.in_shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *op.in_shape)
    return float(sum(op.A(basis[j:j + 1]).abs().pow(2).sum() for j in range(n)))


def operators():
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(10, 12, generator=gen) < 0.6).float()
    maps = torch.complex(torch.randn(3, 10, 12, generator=gen), torch.randn(3, 10, 12, generator=gen))
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    return {
        "identity": Identity((2, 6, 5)),
        "mask": MaskOperator(mask, channels=3),
        "blur": BlurOperator(make_kernel("gaussian", 5, sigma=1.2, seed=0), (1, 24, 24), "circular"),
        "mri": MultiCoilMRI(maps, mask),
        "ct_parallel": CTOperator(parallel_geometry(10, angles[:4] / 2, projector="strip"), scale=0.7, cache=False,
                                  dtype=torch.float64),
        "ct_fan": CTOperator(fan_geometry(10, angles, 12, 20.0, 30.0, projector="line"), scale=1.3, cache=False,
                             dtype=torch.float64),
    }


@pytest.mark.parametrize("name", list(operators()))
def test_frobenius_norm_equals_the_trace_of_the_normal_operator(name):
    op = operators()[name]
    exact = exact_frobenius_sq(op)
    assert op.frobenius_sq() == pytest.approx(exact, rel=0.08)  # exact overrides, or Hutchinson within a few %
    estimate = hutchinson_frobenius_sq(op, probes=256)
    assert estimate == pytest.approx(exact, rel=0.08)
    assert hutchinson_frobenius_sq(op, probes=256) == estimate  # seeded: the same value every time


@pytest.mark.parametrize("name", ["identity", "mask", "ct_parallel", "ct_fan"])
def test_exact_overrides_are_exact(name):
    op = operators()[name]
    assert op.frobenius_sq() == pytest.approx(exact_frobenius_sq(op), rel=1e-6)


def _module(op, x_shape):
    y = torch.zeros(1, *op.out_shape)
    problem = Measurement("t", y, op, tuple(x_shape), "unit", None, None, {}, {})
    cfg = VanillaDIPConfig(loss="normalised")
    cfg.net.scales, cfg.net.channels = 2, 4
    return VanillaDIP(cfg, problem, seed=0, max_steps=1)


def test_normalised_loss_is_the_mse_for_the_identity_and_the_observed_mse_for_a_mask():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.rand(1, 1, 8, 8, generator=gen), torch.rand(1, 1, 8, 8, generator=gen)
    ident = _module(Identity((1, 8, 8)), (1, 8, 8))
    assert float(ident.data_fidelity(x, y)) == pytest.approx(float(torch.nn.functional.mse_loss(x, y)), rel=1e-6)
    mask = (torch.rand(8, 8, generator=gen) < 0.5).float()
    masked = _module(MaskOperator(mask, channels=1), (1, 8, 8))
    observed = mask.bool()
    expected = float((x[0, 0][observed] - y[0, 0][observed]).pow(2).mean())
    assert float(masked.data_fidelity(mask * x, mask * y)) == pytest.approx(expected, rel=1e-6)


def test_white_image_error_costs_its_variance_on_any_operator():
    """E‖A e‖²/‖A‖_F² = s² for e white with variance s²: a per-pixel weight means the same on CT as on denoising."""
    op = operators()["ct_fan"].to(torch.float32)
    module = _module(op, op.in_shape)
    gen = torch.Generator().manual_seed(4)
    s = 0.3
    costs = [float(module.data_fidelity(op.A(s * torch.randn(1, *op.in_shape, generator=gen)), torch.zeros(1, *op.out_shape)))
             for _ in range(400)]
    assert np.mean(costs) == pytest.approx(s**2, rel=0.05)
    spectral = op.norm() ** 2 * int(np.prod(op.in_shape))  # the old rule's denominator
    assert spectral > 5 * op.frobenius_sq()  # CT is ill-conditioned: the old rule weakened D several-fold


def test_amsgrad_option_builds_adam_with_a_non_decreasing_second_moment():
    module = _module(Identity((1, 8, 8)), (1, 8, 8))
    module.cfg.optimizer = "amsgrad"
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["amsgrad"] is True
    module.cfg.optimizer = "adam"
    assert module.configure_optimizers().defaults["amsgrad"] is False
