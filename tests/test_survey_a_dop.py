"""Double over-parameterisation (methods/double_overparam.py; Survey A eqs 18–19) and the
salt-and-pepper option of the denoising task: the noise is seeded and sparse; DOP's loss
decreases and its best PSNR beats the corrupted image; the recovered s = g⊙g − h⊙h lives on
the corrupted pixels."""
from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import resolve
from benchmark.runner import build_task, execute
from benchmark.store import RunStore
from datamodules.tasks.denoising import salt_pepper_mask

TINY_NET = {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}
DENSITY = 0.3
SALT_PEPPER = {"name": "denoising", "crop": 32, "noise": "salt_pepper", "density": DENSITY}
CODE_SETTING = {"optimizer": "sgd", "lr": 1.0, "lr_ratio": 500.0}  # github.com/ChongYou/robust-image-recovery


class Recorder(Callback):
    def __init__(self):
        self.losses, self.module = [], None

    def on_train_start(self, trainer, module):
        self.module, self.s0 = module, module.sparse_term().detach().clone()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def fit(tmp_path, steps: int, **method_cfg):
    run = resolve({"method": {"name": "double_overparam", "net": TINY_NET, **method_cfg}, "dataset": SALT_PEPPER,
                   "run": {"max_steps": steps, "save_images": False, "stopping": {}}})
    recorder = Recorder()
    metrics = execute(run, "survey_a_dop", RunStore(tmp_path), extra_callbacks=[recorder])
    assert metrics["status"] == "finished", metrics.get("traceback")
    return run, metrics, recorder


def test_salt_and_pepper_noise_flips_a_seeded_fraction_of_entries_to_zero_or_one():
    run = resolve({"method": {"name": "degraded"}, "dataset": {**SALT_PEPPER, "crop": 64}})
    task = build_task(run)
    mask = salt_pepper_mask(task.gt.shape, DENSITY, 0)
    n = mask.numel()
    assert abs(float(mask.float().mean()) - DENSITY) < 4 * math.sqrt(DENSITY * (1 - DENSITY) / n)  # binomial, 4 sd
    assert torch.equal(task.y[~mask], task.gt[~mask])  # untouched entries keep their value
    assert set(task.y[mask].unique().tolist()) == {0.0, 1.0}  # salt and pepper
    assert "simulated salt-and-pepper" in task.provenance and "sigma" not in task.info
    again = build_task(run)
    other = build_task(resolve({"method": {"name": "degraded"}, "dataset": {**SALT_PEPPER, "crop": 64, "noise_seed": 1}}))
    assert torch.equal(again.y, task.y) and not torch.equal(other.y, task.y)


def test_g_and_h_start_small_and_learn_at_the_ratio_times_the_network_rate(tmp_path):
    _, _, rec = fit(tmp_path, 1, optimizer="sgd", lr=0.5, lr_ratio=40.0, init_scale=1e-4)
    module = rec.module
    assert rec.s0.abs().max() < 50 * 1e-4**2  # s = g² − h² with g, h ~ 1e-4·N(0, 1)
    (net_group,) = module.optimizer("net").param_groups
    (corruption_group,) = module.optimizer("corruption").param_groups
    assert net_group["lr"] == 0.5 and corruption_group["lr"] == pytest.approx(0.5 * 40)
    assert {id(p) for p in corruption_group["params"]} == {id(module.g), id(module.h)}


def test_on_salt_and_pepper_noise_dop_beats_the_noisy_image_and_its_sparse_term_sits_on_the_corrupted_pixels(tmp_path):
    run, metrics, rec = fit(tmp_path, 150, **CODE_SETTING)
    assert sum(rec.losses[-10:]) < sum(rec.losses[:10])
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 6
    task = build_task(run)
    mask = salt_pepper_mask(task.gt.shape, DENSITY, 0)
    s, corruption = rec.module.sparse_term().detach(), task.y - task.gt
    # most of s's energy is on the 30 % corrupted entries (a dense s would put 30 % there) ...
    assert s[mask].pow(2).sum() > 0.9 * s.pow(2).sum()
    # ... and s explains most of the corruption y − x* (the image part stays in the network)
    assert (s - corruption).norm() < 0.5 * corruption.norm()
