"""Survey B's denoiser methods (issue 9 part 2): DIP + RED by APG (Alg. 5), DIP + denoiser by
HQS (eqs 32–33) and by ADMM (Alg. 6). Per method: on a tiny task its loss decreases and its
best PSNR beats the degraded input, plus the property that makes it that method."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import ConfigError, resolve
from benchmark.runner import execute
from benchmark.store import RunStore

TINY_NET = {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}
DENOISING = {"name": "denoising", "crop": 32, "sigma": 50}
FAST_TV = {"name": "tv", "n_it_max": 30}
METHODS = ["dip_red_apg", "dip_denoiser_hqs", "dip_denoiser_admm"]


class Recorder(Callback):
    """Keeps every iteration's loss, scalars and outputs; ``check(module)`` runs after each iteration."""

    def __init__(self, check=None):
        self.check, self.losses, self.scalars, self.outputs = check, [], [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.scalars.append({k: float(v) for k, v in outputs["scalars"].items()})
        self.outputs.append({"x": outputs["x"].clone(), **{k: v.clone() for k, v in outputs["iterates"].items()}})
        if self.check:
            with torch.no_grad():
                self.check(module)


def fit(tmp_path, method: str, steps: int, check=None, **method_cfg) -> tuple[dict, Recorder]:
    run = resolve({"method": {"name": method, "net": TINY_NET, "lr": 0.01, "denoiser": FAST_TV, **method_cfg},
                   "dataset": DENOISING, "run": {"max_steps": steps, "save_images": False, "stopping": {}}})
    recorder = Recorder(check)
    metrics = execute(run, "survey_b_denoisers", RunStore(tmp_path), extra_callbacks=[recorder])
    assert metrics["status"] == "finished", metrics.get("traceback")
    return metrics, recorder


@pytest.mark.parametrize("method", METHODS)
def test_on_a_tiny_denoising_task_the_loss_decreases_and_the_best_psnr_beats_the_noisy_image(method, tmp_path):
    metrics, rec = fit(tmp_path, method, 120, exp_weight=0.9)  # a shorter average for a 120-iteration run
    assert sum(rec.losses[-10:]) < sum(rec.losses[:10])
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 3  # x: the EMA of the network output
    assert metrics["iterate.u.peak_psnr"] > metrics["degraded_psnr"]


@pytest.mark.parametrize("method", METHODS)
def test_the_reconstruction_is_the_exponential_average_of_the_raw_network_outputs(method, tmp_path):
    _, rec = fit(tmp_path, method, 12, exp_weight=0.9, inner_steps=3)
    avg = rec.outputs[0]["raw"]
    torch.testing.assert_close(rec.outputs[0]["x"], avg)  # started at the first output
    for out in rec.outputs[1:]:
        avg = 0.9 * avg + 0.1 * out["raw"]
        torch.testing.assert_close(out["x"], avg)


def test_red_apg_extrapolation_follows_the_nesterov_sequence_and_uses_the_mixing_weight(tmp_path):
    K, L = 3, 1.5
    state = {"t": 1.0, "x_prev": None, "updates": 0}

    def check(module):  # after the step: at every K-th iteration, t_k and u = (1/L) D(v) + (1 − 1/L) v
        if module.iteration % K:
            assert module.t == state["t"]  # t and u change only at the updates
            return
        t_next = (1 + math.sqrt(1 + 4 * state["t"] ** 2)) / 2
        assert module.t == pytest.approx(t_next, rel=1e-12)
        x_k = module.net(module.z)
        v = x_k if state["x_prev"] is None else x_k + (state["t"] - 1) / t_next * (x_k - state["x_prev"])
        den = module.red.denoiser(v, 0.02)
        torch.testing.assert_close(module.u, den / L + (1 - 1 / L) * v)
        assert (module.u - den).abs().max() > 1e-3  # L ≠ 1 is not u = D(v), the handbook's effective update
        state.update(t=t_next, x_prev=x_k, updates=state["updates"] + 1)

    _, rec = fit(tmp_path, "dip_red_apg", 30, check, inner_steps=K, mixing=L, sigma=0.02)
    assert state["updates"] == 10
    assert [s["t"] for s in rec.scalars[:K - 1]] == [1.0] * (K - 1)  # t₀ = 1 before the first update
    ts = [1.0] + [s["t"] for s in rec.scalars[K - 1::K]]
    assert all(b == pytest.approx((1 + math.sqrt(1 + 4 * a * a)) / 2) for a, b in zip(ts, ts[1:]))


def test_hqs_u_is_the_denoised_network_output_with_the_decreasing_sigma_schedule(tmp_path):
    K, steps = 4, 40
    sigmas = np.geomspace(0.5, 0.01, steps // K)
    seen = []

    def check(module):
        k = (module.iteration - 1) // K  # outer step, 0-based
        assert module.sigmas[k] == pytest.approx(sigmas[k])
        if module.iteration % K == 0:
            torch.testing.assert_close(module.u, module.prior.denoiser(module.net(module.z), sigmas[k]))
            seen.append(k)

    _, rec = fit(tmp_path, "dip_denoiser_hqs", steps, check, inner_steps=K, splitting=0.1)
    assert seen == list(range(steps // K))
    used = [s["sigma"] for s in rec.scalars]
    assert used == pytest.approx(np.repeat(sigmas, K)) and all(a >= b for a, b in zip(used, used[1:]))
    assert [s["mu"] for s in rec.scalars] == pytest.approx([0.1 / s for s in used])  # μ_k = λ/σ_k increases


def test_admm_dual_is_the_running_sum_of_the_residuals(tmp_path):
    K = 3
    total = {"sum": None, "updates": 0}

    def check(module):
        if module.iteration % K == 0:
            residual = module.net(module.z) - module.u  # x⁽ᵏ⁾ − u⁽ᵏ⁾
            total["sum"] = residual if total["sum"] is None else total["sum"] + residual
            total["updates"] += 1
            assert module.residual == pytest.approx(float(residual.pow(2).mean().sqrt()), rel=1e-5)
        if total["sum"] is not None:
            torch.testing.assert_close(module.dual, total["sum"])

    _, rec = fit(tmp_path, "dip_denoiser_admm", 30, check, inner_steps=K, sigma=0.05)
    assert total["updates"] == 10 and total["sum"].abs().max() > 0


def test_an_increasing_hqs_sigma_schedule_is_rejected_at_resolution():
    with pytest.raises(ConfigError, match="sigma_min = 0.5 must not exceed sigma_max = 0.1"):
        resolve({"method": {"name": "dip_denoiser_hqs", "sigma_min": 0.5, "sigma_max": 0.1}, "dataset": DENOISING})
