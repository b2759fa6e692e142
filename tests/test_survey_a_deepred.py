"""DeepRED (methods/deepred.py; Mataev, Milanfar, Elad 2019): on a tiny task the loss decreases
and the best PSNR beats the noisy image; every iteration's x-update is the fixed-point step it
implements and the scaled dual is the running sum of the residuals f − x."""
from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import resolve
from benchmark.runner import execute
from benchmark.store import RunStore

TINY_NET = {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}
DENOISING = {"name": "denoising", "crop": 32, "sigma": 25}


class Recorder(Callback):
    """Per iteration: loss, the network output f⁽ᵏ⁾ and the ADMM state (x, u, D̂) after the
    iteration; the state before the first iteration is ``start``."""

    def __init__(self):
        self.losses, self.outputs, self.states, self.module = [], [], [], None

    @staticmethod
    def state(module):
        return {"x": module.x_aux.clone(), "u": module.u.clone(), "denoised": module.denoised.clone(),
                "lam": module.lam, "mu": module.mu}

    def on_train_start(self, trainer, module):
        self.module, self.start = module, self.state(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.outputs.append(outputs["x"].clone())
        self.states.append(self.state(module))


def fit(tmp_path, steps: int, **method_cfg) -> tuple[dict, Recorder]:
    run = resolve({"method": {"name": "deepred", "net": TINY_NET, **method_cfg}, "dataset": DENOISING,
                   "run": {"max_steps": steps, "save_images": False, "stopping": {}}})
    recorder = Recorder()
    metrics = execute(run, "survey_a_deepred", RunStore(tmp_path), extra_callbacks=[recorder])
    assert metrics["status"] == "finished", metrics.get("traceback")
    return metrics, recorder


def test_on_a_tiny_denoising_task_the_loss_decreases_and_the_best_psnr_beats_the_noisy_image(tmp_path):
    metrics, rec = fit(tmp_path, 150, lr=0.01)
    assert sum(rec.losses[-10:]) < sum(rec.losses[:10])
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 2
    assert metrics["iterate.admm_x.peak_psnr"] > metrics["degraded_psnr"]


def test_every_x_update_is_the_fixed_point_step_and_the_dual_is_the_sum_of_the_residuals(tmp_path):
    K, steps, lam, mu = 3, 12, 0.7, 0.4
    _, rec = fit(tmp_path, steps, update_every=K, lam=lam, mu=mu)
    module = rec.module
    prev, residual_sum, refreshes = rec.start, torch.zeros_like(rec.start["u"]), 0
    assert torch.equal(prev["x"], module.problem.degraded) and not prev["u"].any()  # x⁽⁰⁾ = degraded, u⁽⁰⁾ = 0
    for k, (f, state) in enumerate(zip(rec.outputs, rec.states), start=1):
        if k % K == 0:  # D̂ = D_σ(x⁽ᵏ⁻¹⁾), refreshed every K-th iteration only
            torch.testing.assert_close(state["denoised"], module.red.denoiser(prev["x"], module.cfg.sigma))
            refreshes += 1
        else:
            assert torch.equal(state["denoised"], prev["denoised"])
        fixed_point = ((lam * state["denoised"] + mu * (f + prev["u"])) / (lam + mu)).clamp(0, 1)
        assert torch.equal(state["x"], fixed_point)  # x⁽ᵏ⁾ = Π[0,1]((λ D̂ + μ(f⁽ᵏ⁾ + u⁽ᵏ⁻¹⁾)) / (λ + μ))
        residual_sum = residual_sum + (f - state["x"])
        assert torch.equal(state["u"], residual_sum)  # u⁽ᵏ⁾ = Σⱼ (f⁽ʲ⁾ − x⁽ʲ⁾), bit for bit
        assert state["lam"] == lam and state["mu"] == mu  # no schedule by default
        prev = state
    assert refreshes == steps // K and residual_sum.abs().max() > 0
