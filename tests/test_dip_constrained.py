"""dip_constrained (Survey B eq 31) converges on every task family (issue 18), and the noise
level it constrains to: the task's σ, else an estimate that is unbiased on sinograms.

The defect: the discrepancy dual w_r took exact ADMM's ascent step η = 1 after a single
network step; ‖w_r‖ = (‖q‖ − ρ)₊ is not bounded by the ball, so it integrated the residual
excess and the loss grew without bound (stored as diverged on denoising, inpainting and CT).
Cascarano et al.'s PGDA takes η = 10⁻³."""
from __future__ import annotations

import pytest
import scipy.sparse
import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import resolve
from benchmark.runner import build_module, build_task, execute
from benchmark.store import RunStore
from methods.registry import load_all
from scoring.noise import estimate_noise_sigma, range_complement_sigma, wavelet_mad_sigma
from tests.conftest import shared_data

METHODS = load_all()
TINY_NET = {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}
DENOISING = {"name": "denoising", "crop": 32, "sigma": 50}
INPAINTING = {"name": "inpainting", "crop": 32, "sigma": 25}
WALNUT = {"name": "walnut", "image_size": 32, "n_angles": 8}  # the smoke config: 8 angles × 32 detectors, 1 % noise
AAPM_POISSON = {"name": "aapm", "image_size": 32, "n_views": 6, "n_total_views": 30, "poisson_i0": 1e4}  # σ unstated


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # after conftest's: the machine's two cores are shared
    yield


def config(dataset: dict, steps: int, method: str = "dip_constrained", **method_cfg):
    """The method's defaults (lr 1e-3, η 1e-3, γ_r 10, τ 1) on a narrow net."""
    return resolve({"method": {"name": method, "net": TINY_NET, **method_cfg}, "dataset": dataset,
                    "run": {"max_steps": steps, "trace_every": 10, "save_images": False, "stopping": {}}})


def needs_data(dataset: dict) -> None:
    if dataset["name"] == "walnut":
        shared_data("walnut")


class Losses(Callback):
    def __init__(self):
        self.losses, self.scalars = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.scalars.append({k: float(v) for k, v in outputs.get("scalars", {}).items()})


def fit(tmp_path, run) -> tuple[dict, Losses]:
    recorder = Losses()
    metrics = execute(run, "dip_constrained", RunStore(tmp_path), extra_callbacks=[recorder])
    return metrics, recorder


def true_sigma(task) -> float:
    """The σ the task simulated: stated, else the RMS of y − A x_true."""
    stated = task.info.get("sigma", task.info.get("noise_sigma"))
    if stated is not None:
        return float(stated)
    return float((task.y - task.physics.A(task.gt)).pow(2).mean().sqrt())


# -- the noise level ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_angles", [8, 60])
def test_noise_estimate_is_within_15_percent_of_the_simulated_sigma_on_a_sinogram(n_angles):
    shared_data("walnut")
    task = build_task(config({**WALNUT, "n_angles": n_angles}, 1))
    sigma = task.info["noise_sigma"]
    assert estimate_noise_sigma(task.y, task.physics) == pytest.approx(sigma, rel=0.15)
    assert wavelet_mad_sigma(task.y) > 2 * sigma  # the image-domain MAD (the old estimate) reads the sinogram as noise


@pytest.mark.parametrize("sigma", [25, 50])
def test_noise_estimate_is_within_15_percent_of_sigma_on_a_natural_image(sigma):
    task = build_task(config({**DENOISING, "sigma": sigma}, 1))
    assert estimate_noise_sigma(task.y, task.physics) == pytest.approx(task.info["sigma"], rel=0.15)


def test_noise_estimate_of_a_noiseless_sinogram_is_near_zero():
    task = build_task(config({**AAPM_POISSON, "poisson_i0": None}, 1))  # post-log data, no noise
    level = float(task.y.abs().mean())
    assert estimate_noise_sigma(task.y, task.physics) < 1e-3 * level < 0.1 * wavelet_mad_sigma(task.y)


def test_range_complement_estimate_reads_only_the_directions_no_image_reaches():
    gen = torch.Generator().manual_seed(0)
    matrix = torch.randn(200, 40, generator=gen, dtype=torch.float64)  # 160 left directions outside the range
    x = torch.randn(40, generator=gen, dtype=torch.float64)
    noise = 0.01 * torch.randn(200, generator=gen, dtype=torch.float64)
    sigma = range_complement_sigma(matrix @ x * 100 + noise, scipy.sparse.csr_matrix(matrix.numpy()))
    assert sigma == pytest.approx(0.01, rel=0.15)  # the signal (100× larger) does not leak in
    assert range_complement_sigma(noise[:30], scipy.sparse.csr_matrix(matrix[:30].numpy())) is None  # no such direction


def test_sigma_is_the_tasks_where_it_states_one_else_the_operator_aware_estimate():
    module = build_module(METHODS["dip_constrained"], config(DENOISING, 1), build_task(config(DENOISING, 1)))
    assert module.sigma == pytest.approx(50 / 255) and module.m == 3 * 32 * 32
    task = build_task(config(AAPM_POISSON, 1))
    assert "noise_sigma" not in task.info and "sigma" not in task.info
    module = build_module(METHODS["dip_constrained"], config(AAPM_POISSON, 1), task)
    assert module.sigma == estimate_noise_sigma(task.y, task.physics)
    run = config(DENOISING, 1, noise_level="estimate")
    task = build_task(run)
    assert build_module(METHODS["dip_constrained"], run, task).sigma == estimate_noise_sigma(task.y, task.physics)


# -- convergence on every task family ------------------------------------------------------------------------------
BURN_IN = 25


@pytest.mark.parametrize("dataset", [DENOISING, INPAINTING, WALNUT, AAPM_POISSON], ids=lambda d: d["name"])
def test_with_its_defaults_it_converges_and_ends_above_the_degraded_input(dataset, tmp_path):
    needs_data(dataset)
    metrics, rec = fit(tmp_path, config(dataset, 300))
    assert metrics["status"] == "finished", metrics.get("error")
    losses = rec.losses
    assert max(losses[BURN_IN:]) < 10 * losses[0]  # the divergence guard's rule, with room to spare:
    assert max(losses[BURN_IN:]) < 3 * losses[BURN_IN]  # after the burn-in the θ-loss does not grow
    assert metrics["final_psnr"] > metrics["degraded_psnr"] - 0.5, (metrics["final_psnr"], metrics["degraded_psnr"])


def test_with_the_exact_admm_dual_step_the_multiplier_winds_up(tmp_path):
    """The old default η = 1 on the same tiny denoising run: ‖w_r‖ grows to several ρ and the loss to
    several times its first value (with the default 6 × 128 U-Net: past 10×, stored as diverged)."""
    _, old = fit(tmp_path / "old", config(DENOISING, 60, dual_step=1.0))
    _, new = fit(tmp_path / "new", config(DENOISING, 60))
    assert max(s["residual_dual"] for s in old.scalars) > 3 > 100 * max(s["residual_dual"] for s in new.scalars)
    assert max(old.losses[BURN_IN:]) > 2 * old.losses[0] and max(new.losses[BURN_IN:]) < 0.1 * new.losses[0]


def test_runs_are_deterministic(tmp_path):
    _, a = fit(tmp_path / "a", config(INPAINTING, 15))
    _, b = fit(tmp_path / "b", config(INPAINTING, 15))
    assert a.losses == b.losses and a.scalars == b.scalars


# -- the algorithm box ----------------------------------------------------------------------------------------------
def _module(dataset: dict = DENOISING, **cfg):
    run = config(dataset, 10, **cfg)
    task = build_task(run)
    return build_module(METHODS[run.method], run, task), task


def _theta_grad(module, y) -> torch.Tensor:
    module.zero_grad(set_to_none=True)
    module.iteration = 1  # no split/dual update inside the step: the loss uses the buffers as set
    module.training_step({"y": y}, 0)["loss"].backward()
    return torch.cat([p.grad.flatten() for p in module.net.parameters() if p.grad is not None])


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    return float((a - b).norm()) <= rel * float(b.norm())


def test_the_constraint_reaches_the_theta_gradient():
    """With the TV split neutral (v = D x + w) and no constraint terms (r = w_r = 0) the θ-gradient is
    vanilla DIP's (times γ_r: no ½, docs/conventions.md §13); the discrepancy ball turns it into the
    hinge (1 − ρ/‖Ax − y‖)₊ of it,
    and the dual w_r moves it further."""
    from methods.dip_wtv_admm import nabla

    module, task = _module(loss="normalised")
    vanilla, _ = _module(method="vanilla_dip", loss="normalised")  # same seed: same network and input
    y, weight = task.y, module.cfg.residual_weight
    with torch.no_grad():
        x = module.net(module.z)
        module.v, module.w = nabla(x), torch.zeros_like(module.w)  # the TV split term's gradient vanishes
        residual = task.physics.A(x) - y
    g_vanilla = _theta_grad(vanilla, y)

    assert _close(_theta_grad(module, y), weight * g_vanilla)  # r = w_r = 0

    module.r = module.project(residual)  # outside the ball: r = ρ·(Ax − y)/‖Ax − y‖
    hinge = 1 - module.radius / float(residual.norm())
    assert 0 < hinge < 1
    g = _theta_grad(module, y)
    assert _close(g, hinge * weight * g_vanilla) and not _close(g, weight * g_vanilla, rel=0.1)

    module.w_r = 0.5 * residual
    assert not _close(_theta_grad(module, y), g, rel=0.1)

    module.radius, module.w_r = 2 * float(residual.norm()), torch.zeros_like(y)  # inside the ball: no data force
    module.r = module.project(residual)
    assert torch.equal(module.r, residual)
    assert float(_theta_grad(module, y).abs().max()) < 1e-6 * float(g_vanilla.abs().max())


def test_each_update_projects_on_the_ball_and_ascends_the_dual_by_eta_times_the_excess(tmp_path):
    seen, eta = [], 1e-3

    class Check(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append(module.w_r.clone())

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if module.iteration == 1:
                assert torch.equal(module.r, torch.zeros_like(module.r)) and torch.equal(module.w_r, seen[-1])
                return
            residual = module.physics.A(outputs["x"]) - module.problem.y
            q = residual + seen[-1]
            assert float(module.r.norm()) == pytest.approx(min(module.radius, float(q.norm())), rel=1e-5)
            assert torch.allclose(module.r, module.project(q))
            assert torch.allclose(module.w_r, seen[-1] + eta * (residual - module.r), atol=1e-7)

    run = config(DENOISING, 6)
    execute(run, "dip_constrained", RunStore(tmp_path), extra_callbacks=[Check()])
    assert len(seen) == 6 and float(seen[-1].norm()) > 0
