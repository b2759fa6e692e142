"""Harness overhead: one DIP config run by ``Trainer.fit`` with all metric callbacks
vs a plain PyTorch loop doing the same optimisation, timed in one process.

    python -m benchmark.overhead [--steps 300] [--set key=value ...]

Prints seconds per step of both and their ratio (issue 2: the single-measurement
DataModule must add no per-step loader or per-epoch cost).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from benchmark.config import parse_overrides, resolve, set_dotted
from benchmark.quiet import quiet_lightning
from benchmark.runner import build_task, execute
from benchmark.store import RunStore
from methods.registry import METHODS


def plain_loop(run, task) -> float:
    """The same optimisation as a bare loop (automatic-optimisation methods only)."""
    module = METHODS[run.method].cls(run.method_cfg, task.measurement(), run.run.seed, run.run.max_steps)
    opt = module.configure_optimizers()
    y = task.y
    start = time.perf_counter()
    for _ in range(run.run.max_steps):
        opt.zero_grad(set_to_none=True)
        out = module.training_step({"y": y}, 0)
        out["loss"].backward()
        if run.method_cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), run.method_cfg.grad_clip)
        opt.step()
    return (time.perf_counter() - start) / run.run.max_steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    quiet_lightning()
    config = {"method": {"name": "vanilla_dip", "lr": 0.01,
                         "net": {"scales": 5, "channels": 32, "skip_channels": [0, 0, 0, 4, 4]}},
              "dataset": {"name": "denoising", "crop": 64}, "run": {"max_steps": args.steps, "save_images": False}}
    for key, value in parse_overrides(args.set).items():
        set_dotted(config, key, value)
    run = resolve(config)
    task = build_task(run)
    plain = plain_loop(run, task)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        metrics = execute(run, "overhead", RunStore(tmp))
        harness = (time.perf_counter() - start) / run.run.max_steps
    print(f"plain loop: {plain * 1e3:.1f} ms/step; harness (Trainer.fit + trace/oracle/EMA/ES callbacks + store): "
          f"{harness * 1e3:.1f} ms/step; ratio {harness / plain:.2f}  ({metrics['status']}, {run.run.max_steps} steps)")


if __name__ == "__main__":
    main()
