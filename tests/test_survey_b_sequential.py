"""Survey B's input-adapting methods: self-guided DIP (Alg. 7) and aSeqDIP (Alg. 8). Each
fits a tiny denoising problem (loss falls, best PSNR beats the noisy image) and shows its
distinctive property, checked from outside the method by a callback."""
from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import resolve
from benchmark.runner import execute
from benchmark.store import RunStore

NET = {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}


def denoising_run(method: str, steps: int, **method_cfg):
    return resolve({"method": {"name": method, "net": NET, "lr": 0.01, **method_cfg},
                    "dataset": {"name": "denoising", "crop": 32, "sigma": 50},
                    "run": {"max_steps": steps, "trace_every": 10, "ssim_every": 1000, "save_images": False}})


class Recorder(Callback):
    """Per iteration: the loss, the returned x and named iterates, the input z before and after the
    step and (``recompute``) the network output at the step's input after the step."""

    def __init__(self, recompute: bool = False):
        self.recompute = recompute
        self.losses, self.x, self.iterates, self.z_before, self.z_after, self.recomputed = [], [], [], [], [], []

    def on_train_start(self, trainer, module):
        self.z0 = module.z.detach().clone()
        self.degraded = module.problem.degraded.clone()
        self.lrs = {g["name"]: g["lr"] for opt in trainer.optimizers for g in opt.param_groups}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.z_before.append(module.z.detach().clone())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.x.append(outputs["x"].clone())
        self.iterates.append({k: v.clone() for k, v in outputs.get("iterates", {}).items()})
        self.z_after.append(module.z.detach().clone())
        if self.recompute:
            with torch.no_grad():  # f_θ(z) of this step's input with θ after the step
                self.recomputed.append(module.net(self.z_before[-1]))


def fits_the_noisy_image(metrics: dict, recorder: Recorder) -> None:
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert sum(recorder.losses[-5:]) < 0.5 * sum(recorder.losses[:5])
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 2


def test_self_guided_dip_lowers_its_loss_and_its_ema_beats_the_noisy_image(tmp_path):
    recorder = Recorder()  # a short run: EMA weight 0.9 so that the zero-started average catches up
    metrics = execute(denoising_run("self_guided_dip", 50, realisations=2, ema_weight=0.9), "sg", RunStore(tmp_path),
                      extra_callbacks=[recorder])
    fits_the_noisy_image(metrics, recorder)


def test_self_guided_dip_learns_its_input_and_reports_the_ema_of_its_raw_outputs(tmp_path):
    recorder, decay = Recorder(), 0.8
    metrics = execute(denoising_run("self_guided_dip", 8, realisations=2, ema_weight=decay, input_lr=0.05),
                      "sg", RunStore(tmp_path), extra_callbacks=[recorder])
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert recorder.lrs == {"net": 0.01, "input": 0.05}  # two parameter groups, each with its own Adam
    assert (recorder.z_after[-1] - recorder.z0).abs().max() > 0.01  # z moved (Adam lr 0.05 for 8 steps)
    assert not torch.equal(recorder.z_after[0], recorder.z_before[0])  # … from the first step on
    ema = torch.zeros_like(recorder.x[0])  # Alg. 7 lines 1 and 6, recomputed from the raw iterates
    for x, iterates in zip(recorder.x, recorder.iterates, strict=True):
        ema = decay * ema + (1 - decay) * iterates["raw"]
        torch.testing.assert_close(x, ema)
    assert not torch.allclose(recorder.x[-1], recorder.iterates[-1]["raw"])  # x is the average, not the raw output


def test_aseqdip_lowers_its_loss_and_beats_the_noisy_image(tmp_path):
    recorder = Recorder()
    metrics = execute(denoising_run("aseqdip", 50), "aseq", RunStore(tmp_path), extra_callbacks=[recorder])
    fits_the_noisy_image(metrics, recorder)


def test_aseqdip_starts_from_the_degraded_image_and_feeds_each_stage_output_back_as_the_next_input(tmp_path):
    recorder, inner = Recorder(recompute=True), 3
    metrics = execute(denoising_run("aseqdip", 9, inner_steps=inner), "aseq", RunStore(tmp_path), extra_callbacks=[recorder])
    assert metrics["status"] == "finished", metrics.get("traceback")
    torch.testing.assert_close(recorder.z0, recorder.degraded)  # z⁽⁰⁾: the noisy image
    for k, (before, after, output) in enumerate(zip(recorder.z_before, recorder.z_after, recorder.recomputed), start=1):
        if k % inner == 0:  # stage boundary: z⁽ᵏ⁾ = f_θ(z⁽ᵏ⁻¹⁾) with θ after the stage's last step (eq 37)
            torch.testing.assert_close(after, output, rtol=0, atol=0)
            assert not torch.equal(after, before)
        else:  # inside a stage the input stays put
            assert torch.equal(after, before)
    assert all(torch.equal(it["z"], z) for it, z in zip(recorder.iterates, recorder.z_after, strict=True))
