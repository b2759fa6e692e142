"""Optimal Eye Surgeon (methods/optimal_eye_surgeon.py; Survey A eq 17): on a tiny task the
loss decreases and the best PSNR beats the noisy image; the mask keeps exactly the top-s
fraction of the weights by learned probability; stage 2 changes only the kept weights; a saved
mask, loaded by another run, reproduces its stage-2 trace."""
from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import ConfigError, resolve
from benchmark.runner import execute
from benchmark.store import RunStore

TINY_NET = {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}
DENOISING = {"name": "denoising", "crop": 32, "sigma": 25}


class Recorder(Callback):
    """Per iteration: (iteration, loss); the module's weights at the start and after each
    iteration via ``snapshot`` (a function of the module)."""

    def __init__(self, snapshot=None):
        self.snapshot, self.rows, self.snaps, self.module = snapshot, [], {}, None

    def on_train_start(self, trainer, module):
        self.module = module
        if self.snapshot:
            self.snaps["start"] = self.snapshot(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.rows.append((module.iteration, float(outputs["loss"]), outputs["x"].clone()))
        if self.snapshot:
            self.snaps[module.iteration] = self.snapshot(module)

    def recon_losses(self):
        return [loss for it, loss, _ in self.rows if it >= 1]


def fit(tmp_path, steps: int, snapshot=None, dataset=DENOISING, **method_cfg) -> tuple[dict, Recorder]:
    method = {"name": "optimal_eye_surgeon", "net": TINY_NET, **method_cfg}
    run = resolve({"method": method, "dataset": dataset, "run": {"max_steps": steps, "save_images": False, "stopping": {}}})
    recorder = Recorder(snapshot)
    metrics = execute(run, "survey_a_oes", RunStore(tmp_path), extra_callbacks=[recorder])
    return metrics, recorder


def clone_all(tensors):
    return [t.detach().clone() for t in tensors]


def test_on_a_tiny_denoising_task_the_loss_decreases_and_the_best_psnr_beats_the_noisy_image(tmp_path):
    metrics, rec = fit(tmp_path, 150, mask_steps=30, sparsity=0.3, lr=0.01)
    assert metrics["status"] == "finished", metrics.get("traceback")
    losses = rec.recon_losses()
    assert len(losses) == 150 and [it for it, _, _ in rec.rows[:30]] == list(range(-29, 1))  # stage 1 numbered ≤ 0
    assert sum(losses[-10:]) < sum(losses[:10])
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 2


def test_the_mask_keeps_exactly_the_top_fraction_of_weights_by_learned_probability(tmp_path):
    sparsity = 0.05  # the paper's 5 %
    metrics, rec = fit(tmp_path, 2, mask_steps=20, sparsity=sparsity)
    assert metrics["status"] == "finished", metrics.get("traceback")
    module = rec.module
    mask = torch.cat([m.flatten() for m in module.hard_masks()])
    p = module.keep_probabilities()
    assert mask.numel() == p.numel() == sum(w.numel() for w in module.original_weights())
    assert int(mask.sum()) == int(sparsity * mask.numel())  # ⌊s·d⌋ kept
    assert p[mask].min() >= p[~mask].max()  # the kept ones are those with the largest learned p
    assert p.std() > 0  # stage 1 learned something: p is no longer 1/2 everywhere


def test_stage_one_leaves_the_initial_weights_alone_and_stage_two_changes_only_the_kept_ones(tmp_path):
    steps, mask_steps = 20, 5
    snapshot = lambda module: (clone_all(module.original_weights()), clone_all(module.effective_weights()))  # noqa: E731
    metrics, rec = fit(tmp_path, steps, snapshot, mask_steps=mask_steps, sparsity=0.2, lr=0.01)
    assert metrics["status"] == "finished", metrics.get("traceback")
    initial, _ = rec.snaps["start"]
    after_stage_one, _ = rec.snaps[0]
    final, effective = rec.snaps[steps]
    masks = rec.module.hard_masks()
    changed_kept = 0
    for w0, w1, w, eff, m in zip(initial, after_stage_one, final, effective, masks):
        assert torch.equal(w0, w1)  # stage 1: θ_in frozen
        assert torch.equal(w[~m], w0[~m])  # stage 2: masked entries bit-identical ...
        assert torch.all(eff[~m] == 0)  # ... and contribute exactly zero
        assert torch.equal(eff[m], w[m])
        changed_kept += int((w[m] != w0[m]).sum())
    assert changed_kept > 0  # the kept weights are trained (those feeding a channel whose norm parameters are
    # masked get no gradient and stay put too)


def test_a_saved_mask_loaded_by_another_run_reproduces_the_stage_two_trace(tmp_path):
    path = tmp_path / "masks" / "oes.pt"
    learned, rec_a = fit(tmp_path / "a", 15, mask_steps=10, sparsity=0.2, lr=0.01, save_mask=str(path))
    assert learned["status"] == "finished", learned.get("traceback")
    assert path.is_file()
    loaded, rec_b = fit(tmp_path / "b", 15, mask_steps=10, sparsity=0.2, lr=0.01, mask_path=str(path))
    assert loaded["status"] == "finished", loaded.get("traceback")
    assert [it for it, _, _ in rec_b.rows] == list(range(1, 16))  # no stage 1 with a loaded mask
    assert rec_b.recon_losses() == rec_a.recon_losses()  # bit for bit
    assert all(torch.equal(a[2], b[2]) for a, b in zip(rec_a.rows[10:], rec_b.rows))
    assert all(torch.equal(a, b) for a, b in zip(rec_a.module.hard_masks(), rec_b.module.hard_masks()))

    # the paper's transfer: the mask learned on one image trains the subnetwork on another
    other, rec_c = fit(tmp_path / "c", 5, dataset={**DENOISING, "image": "coffee"}, sparsity=0.2, mask_path=str(path))
    assert other["status"] == "finished", other.get("traceback")
    assert all(torch.equal(a, b) for a, b in zip(rec_a.module.hard_masks(), rec_c.module.hard_masks()))


def test_a_mask_file_that_is_missing_or_does_not_fit_the_network_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"method.mask_path = .* is not a file.*method.save_mask"):
        resolve({"method": {"name": "optimal_eye_surgeon", "mask_path": str(tmp_path / "none.pt")}, "dataset": DENOISING})
    path = tmp_path / "oes.pt"
    saved, _ = fit(tmp_path / "a", 1, mask_steps=1, save_mask=str(path))
    assert saved["status"] == "finished", saved.get("traceback")
    narrower = {"scales": 3, "channels": 8, "skip_channels": [0, 4, 4]}
    failed, _ = fit(tmp_path / "b", 1, net=narrower, mask_path=str(path))
    assert failed["status"] == "failed"
    assert "method.mask_path" in failed["error"] and "another network" in failed["error"]
