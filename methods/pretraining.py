"""Supervised pre-training of a DIP network on synthetic ellipses (Survey B §5.1 eq 38; Barbano
et al. 2022b), the warm start of every DIP method (``method.warm_start``) and the source of
subspace DIP's parameter snapshots (§5.2).

    θ̂ ∈ argmin_θ N⁻¹ Σₙ ‖f_θ(A†yⁿ) − xⁿ‖²                                        (38)

with (xⁿ, yⁿ) random ellipses measured through the task's own operator (datamodules/ellipses.py)
and A† the task's FBP-type image. Trained with Lightning (Adam, ``steps`` optimiser steps);
checkpoints every ``checkpoint_every`` steps, so an interrupted pre-training resumes from the
last one. ``snapshots`` parameter vectors θ⁽ⁱ⁾ are saved at uniformly spaced steps (the last
is θ̂). The result is cached on disk like the CT matrices (datamodules/operators/ct.py),
keyed by a hash of everything that determines it: the network config, its output layer, the
operator's matrix, the image shape and these settings (docs/conventions.md §18). A file lock
makes concurrent runs that need the same pre-training train it once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from filelock import FileLock
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from core.schema import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from datamodules.ellipses import EllipsesDataModule
from datamodules.operators.ct import fbp_image
from datamodules.sources.paths import cache_dir
from datamodules.task import Measurement
from methods.networks import build_network

FORMAT = "dipbench-pretrained-v1"


@dataclass
class WarmStartConfig:
    """Pre-training on synthetic ellipses before the DIP run (Survey B §5.1, Fig. 8/9).
    The warm-started network takes the FBP image as input (``method.input: fbp``)."""

    steps: PositiveInt = 5000  # Adam steps of eq (38)
    lr: PositiveFloat = 1e-3
    batch_size: PositiveInt = 16
    n_train: PositiveInt = 2000  # ellipse phantoms in the training set
    n_val: NonNegativeInt = 32  # held-out phantoms: the pre-trained network's PSNR (stored with the checkpoint)
    ellipses: PositiveInt = 12  # inner ellipses per phantom (the ct_calibration generator)
    noise: NonNegativeFloat | None = None  # Gaussian noise, fraction of mean|Ax|; None: the task's own
    fbp_iterations: PositiveInt | None = None  # LSQR iterations of the FBP-type image; None: the task's (10)
    seed: NonNegativeInt = 0  # network initialisation, phantoms and data order
    snapshots: PositiveInt = 100  # K parameter vectors saved at uniformly spaced steps (subspace DIP)
    checkpoint_every: PositiveInt = 500  # Lightning checkpoint every this many steps (resume)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"


@dataclass
class Pretrained:
    """A pre-trained network: its ``state_dict``, the snapshots ``(K, p)`` (flattened
    parameters in ``named_parameters`` order) at ``snapshot_steps``, and what was measured."""

    state_dict: dict
    snapshots: torch.Tensor
    snapshot_steps: list[int]
    info: dict
    path: Path


class Pretrainer(L.LightningModule):
    """Eq (38): mean squared error of f_θ(FBP) against the ground truth, Adam."""

    def __init__(self, net: torch.nn.Module, lr: float):
        super().__init__()
        self.net, self.lr = net, lr

    def training_step(self, batch, batch_idx):
        loss = torch.nn.functional.mse_loss(self.net(batch["fbp"]), batch["gt"])
        self.log("loss", loss, on_step=True, prog_bar=False, logger=False)  # callback_metrics: the last step's loss
        return loss

    def validation_step(self, batch, batch_idx):  # not run (limit_val_batches=0): the PSNR is measured at the end
        return torch.nn.functional.mse_loss(self.net(batch["fbp"]), batch["gt"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


def flat_parameters(net: torch.nn.Module) -> torch.Tensor:
    """θ as one vector, in ``named_parameters`` order."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).float().cpu()


def snapshot_steps(steps: int, count: int) -> list[int]:
    """``count`` uniformly spaced optimiser steps in 1 … ``steps``, the last one included."""
    count = min(count, steps)
    return sorted({round(steps * (j + 1) / count) for j in range(count)})


class SnapshotWriter(Callback):
    """Saves θ after each of ``steps`` (one file per snapshot, so a resumed training keeps those
    written before the interruption)."""

    def __init__(self, folder: Path, steps: list[int]):
        self.folder, self.steps = folder, set(steps)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step in self.steps:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic_save(flat_parameters(module.net), self.folder / f"{step:08d}.pt")


def _atomic_save(obj, path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save(obj, tmp)
    os.replace(tmp.name, path)


def operator_fingerprint(physics) -> str:
    """Hash of the operator's stored matrix (sparse-matrix operators: CT)."""
    matrix = getattr(physics, "matrix", None)
    if not isinstance(matrix, torch.Tensor) or matrix.layout != torch.sparse_csr:
        raise ValueError(f"warm start simulates its training data through the task's sparse-matrix operator; "
                         f"{type(physics).__name__} is not one (use a CT task)")
    h = hashlib.sha256()
    for t in (matrix.crow_indices(), matrix.col_indices(), matrix.values()):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr((tuple(physics.in_shape), tuple(physics.out_shape))).encode())
    return h.hexdigest()[:20]


def resolved_settings(cfg: WarmStartConfig, problem: Measurement) -> tuple[float, int]:
    """(noise fraction, LSQR iterations): the configured ones, else the task's."""
    noise = cfg.noise if cfg.noise is not None else problem.info.get("noise_fraction")
    if noise is None:
        raise ValueError(f"task {problem.name!r} does not state its noise level: set method.warm_start.noise "
                         "(Gaussian noise std as a fraction of mean |Ax|)")
    return float(noise), int(cfg.fbp_iterations or problem.info.get("fbp_iterations") or 10)


def cache_key(cfg: WarmStartConfig, net_cfg, sigmoid: bool, problem: Measurement) -> str:
    noise, iterations = resolved_settings(cfg, problem)
    text = json.dumps({"format": FORMAT, "warm_start": dataclasses.asdict(cfg), "noise": noise,
                       "fbp_iterations": iterations, "net": dataclasses.asdict(net_cfg), "sigmoid": sigmoid,
                       "x_shape": list(problem.x_shape), "operator": operator_fingerprint(problem.physics),
                       "torch": torch.__version__.split("+")[0]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def pretrained_network(cfg: WarmStartConfig, net_cfg, sigmoid: bool, problem: Measurement,
                       folder: Path | None = None) -> Pretrained:
    """The pre-trained network for this task and network, from the cache or trained now
    (resuming an interrupted training from its last checkpoint)."""
    key = cache_key(cfg, net_cfg, sigmoid, problem)
    folder = Path(folder) if folder is not None else cache_dir("pretrained") / key
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / "pretrained.pt"
    with FileLock(str(folder / ".lock")):
        if not final.exists():
            _train(cfg, net_cfg, sigmoid, problem, folder, key)
    data = torch.load(final, map_location="cpu", weights_only=True)
    if data.get("format") != FORMAT:
        raise ValueError(f"{final} is not a pre-trained network of this version; delete {folder} to retrain")
    return Pretrained(data["state_dict"], data["snapshots"], data["snapshot_steps"], data["info"], final)


def _train(cfg: WarmStartConfig, net_cfg, sigmoid: bool, problem: Measurement, folder: Path, key: str) -> None:
    noise, iterations = resolved_settings(cfg, problem)
    physics = problem.physics
    channels, size = problem.x_shape[0], problem.x_shape[-1]
    reconstruct = lambda y: fbp_image(physics, y, iterations)[0]  # noqa: E731  (the task's FBP-type image)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # leaves the run's global RNG untouched
        torch.manual_seed(cfg.seed)
        net = build_network(net_cfg, channels, channels, sigmoid)
        data = EllipsesDataModule(physics, reconstruct, size, cfg.n_train, cfg.n_val, noise, cfg.batch_size,
                                  cfg.seed, cfg.ellipses)
        data.setup()
        steps = snapshot_steps(cfg.steps, cfg.snapshots)
        ckpt_dir = folder / "checkpoints"
        trainer = L.Trainer(max_steps=cfg.steps, max_epochs=-1, accelerator=cfg.accelerator, devices=1, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0, deterministic=True,
                            callbacks=[SnapshotWriter(folder / "snapshots", steps),
                                       ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=-1,
                                                       every_n_train_steps=cfg.checkpoint_every,
                                                       enable_version_counter=False)])
        resume = ckpt_dir / "last.ckpt"
        resumed = resume.exists()
        module = Pretrainer(net, cfg.lr)
        trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resumed else None)
    net = module.net.cpu()
    val = _validation_psnr(net, data.val)
    missing = [s for s in steps if not (folder / "snapshots" / f"{s:08d}.pt").exists()]
    if missing:
        raise RuntimeError(f"pre-training in {folder} lacks the snapshots of steps {missing[:5]}; delete the folder")
    snapshots = torch.stack([torch.load(folder / "snapshots" / f"{s:08d}.pt", weights_only=True) for s in steps])
    info = {"key": key, "steps": cfg.steps, "train_samples": cfg.n_train, "noise": noise, "fbp_iterations": iterations,
            "val_psnr": val, "train_time_s": time.perf_counter() - start, "resumed": resumed,
            "final_loss": float(trainer.callback_metrics.get("loss", float("nan")))}
    _atomic_save({"format": FORMAT, "state_dict": {k: v.cpu() for k, v in net.state_dict().items()},
                  "snapshots": snapshots, "snapshot_steps": steps, "info": info}, folder / "pretrained.pt")
    (folder / "info.json").write_text(json.dumps(info, indent=1))


def _validation_psnr(net: torch.nn.Module, val: dict | None) -> float | None:
    """Mean PSNR (data range 1) of f_θ̂(FBP) on the held-out phantoms."""
    if not val:
        return None
    with torch.no_grad():
        out = net(val["fbp"])
        mse = (out - val["gt"]).pow(2).flatten(1).mean(1)
    return float((-10 * torch.log10(mse.clamp_min(1e-12))).mean())
