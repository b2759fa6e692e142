"""Harness overhead: one DIP config run by ``Trainer.fit`` with all metric callbacks
vs a plain PyTorch loop doing the same optimisation, timed in one process.

    python -m benchmark.overhead [--steps 300] [--crop 64] [--set key=value ...]

Prints seconds per step of both and their ratios (issue 2: the single-measurement
DataModule must add no per-step loader or per-epoch cost; issue 22: no harness tax). Two
ratios: *in the loop* (time per iteration once running, from the end of the warm-up
iterations to the last: Lightning's loop, the callbacks and the trace) and *whole run*
(``execute``: task, Trainer set-up, the loop and the store write, per iteration).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import parse_overrides, resolve, set_dotted
from benchmark.quiet import quiet_lightning
from benchmark.runner import build_task, execute
from benchmark.store import RunStore
from methods.registry import METHODS

WARMUP = 3  # iterations left out of the in-loop time (allocator and kernel warm-up)
NET = {"scales": 5, "channels": 32, "skip_channels": [0, 0, 0, 4, 4]}  # the default suite's U-Net


class StepClock(Callback):
    """The time at the end of every iteration."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter())


def per_step(times: list[float]) -> float:
    """Seconds per iteration after the warm-up, from end-of-iteration times."""
    w = min(WARMUP, len(times) - 2)
    return (times[-1] - times[w]) / (len(times) - 1 - w)


def plain_loop(run, task) -> float:
    """The same optimisation as a bare loop (automatic-optimisation methods only); seconds
    per iteration after the warm-up."""
    module = METHODS[run.method].cls(run.method_cfg, task.measurement(), run.run.seed, run.run.max_steps)
    opt = module.configure_optimizers()
    y = task.y
    times = []
    for _ in range(run.run.max_steps):
        opt.zero_grad(set_to_none=True)
        out = module.training_step({"y": y}, 0)
        out["loss"].backward()
        if run.method_cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), run.method_cfg.grad_clip)
        opt.step()
        times.append(time.perf_counter())
    return per_step(times)


def config(crop: int, steps: int, trace_every: int = 10) -> dict:
    return {"method": {"name": "vanilla_dip", "lr": 0.01, "net": {"name": "unet", **NET}},
            "dataset": {"name": "denoising", "crop": crop},
            "run": {"max_steps": steps, "save_images": False, "trace_every": trace_every}}


def _once(run, task) -> tuple[float, float]:
    """One harness run: (in-loop, whole-run) seconds per iteration."""
    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        metrics = execute(run, "overhead", RunStore(tmp), extra_callbacks=[clock])
        whole = (time.perf_counter() - start) / run.run.max_steps
    if metrics["status"] != "finished":
        raise RuntimeError(f"the harness run failed: {metrics.get('error')}")
    return per_step(clock.times), whole


def measure(run, repeats: int = 1) -> dict:
    """``plain``, ``harness`` (in the loop) and ``whole`` (``execute`` per iteration) seconds per step, each the
    median of ``repeats`` interleaved measurements (plain, harness, harness, plain, …: drift of the machine's speed
    during the measurement falls on both alike); ``ratios``: plain/harness of each repeat."""
    task = build_task(run)
    plain, harness, whole = [], [], []
    for i in range(repeats):
        if i % 2 == 0:
            plain.append(plain_loop(run, task))
        h, w = _once(run, task)
        harness.append(h)
        whole.append(w)
        if i % 2 == 1:
            plain.append(plain_loop(run, task))
    ratios = [p / h for p, h in zip(plain, harness)]
    return {"plain": statistics.median(plain), "harness": statistics.median(harness), "whole": statistics.median(whole),
            "ratios": ratios}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    quiet_lightning()
    cfg = config(args.crop, args.steps)
    for key, value in parse_overrides(args.set).items():
        set_dotted(cfg, key, value)
    r = measure(resolve(cfg))
    print(f"plain loop: {r['plain'] * 1e3:.1f} ms/step; harness in the loop (Trainer.fit + trace/oracle/EMA/ES "
          f"callbacks): {r['harness'] * 1e3:.1f} ms/step (plain/harness {r['plain'] / r['harness']:.3f}); whole run "
          f"with set-up and store: {r['whole'] * 1e3:.1f} ms/step (plain/whole {r['plain'] / r['whole']:.3f})")


if __name__ == "__main__":
    main()
