"""Grid throughput of the Ray executor with 1 vs 2 workers on tiny runs (a benchmark, not a test).

    .venv/bin/python -m benchmark.throughput [--runs 8] [--steps 200] [--crop 32]

Runs the same grid of tiny vanilla-DIP runs (denoising, a 3-scale × 8-channel U-Net) twice
through ``--executor ray``, into fresh results folders: once with Ray given 1 CPU (one run at a
time) and once with 2 CPUs (two at a time; every run asks for 1 CPU, no GPU). Every run starts
a fresh worker process, as in real use, so the process start-up is part of what is measured.
Prints runs per minute for each and the ratio (2 workers / 1 worker); on a 2-core machine the
ideal is 2. With ``--repeats N`` the two settings alternate N times and the median ratio is
printed; the 1-minute load average before each measurement is printed too, since other
processes on the machine skew the ratio (more workers take a larger share of a busy CPU).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmark.executors import Context, Job
from benchmark.executors.ray_executor import RayExecutor
from benchmark.suites import expand
from core.results import RunState

IMAGES = ["astronaut", "coffee", "camera", "chelsea", "rocket", "cat"]


class _Quiet:
    """A reporter that only counts (no progress bar in a benchmark)."""

    def __init__(self):
        self.ended = {}

    def started(self, job):
        pass

    def poll(self, every_s: float = 1.0):
        pass

    def print(self, message):
        pass

    def done(self, job, outcome):
        self.ended[job.run_id] = outcome


def grid(n_runs: int, steps: int, crop: int):
    seeds = list(range((n_runs + len(IMAGES) - 1) // len(IMAGES)))
    raw = {"methods": ["vanilla_dip"], "datasets": ["denoising"], "seeds": seeds,
           "set": {"dataset.crop": crop, "run.max_steps": steps, "run.save_images": False,
                   "method.net": {"name": "unet", "scales": 3, "channels": 8, "skip_channels": [0, 4, 4]}},
           "grid": {"dataset.image": IMAGES}}
    return expand(raw, {}, "throughput")[:n_runs]


def measure(workers: int, runs, results: Path) -> float:
    """Wall seconds for the grid with Ray given ``workers`` CPUs (Ray start-up excluded)."""
    import ray
    ray.init(num_cpus=workers, num_gpus=0, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        reporter = _Quiet()
        ctx = Context("throughput", str(results), (), time.time(), reporter)
        start = time.perf_counter()
        outcomes = RayExecutor(gpus_per_run=0, cpus_per_run=1).execute([Job(r, r.run.max_steps) for r in runs], ctx)
        elapsed = time.perf_counter() - start
    finally:
        ray.shutdown()
    failed = [o for o in outcomes if o.status != RunState.FINISHED]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) did not finish: {failed[0].message}")
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs in the grid (default 8)")
    parser.add_argument("--steps", type=int, default=200, help="iterations per run (default 200)")
    parser.add_argument("--crop", type=int, default=32, help="image side (default 32)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate 1 and 2 workers this many times (default 1)")
    args = parser.parse_args(argv)
    runs = grid(args.runs, args.steps, args.crop)
    print(f"{len(runs)} tiny vanilla-DIP runs ({args.crop}² denoising, {args.steps} iterations, 3-scale × 8-channel "
          f"U-Net), Ray executor, a fresh worker process per run, {os.cpu_count()} CPUs")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            times = {}
            for workers in (1, 2):
                load = os.getloadavg()[0]
                times[workers] = measure(workers, runs, Path(tmp) / f"r{repeat}w{workers}")
                print(f"{workers} worker(s): {times[workers]:.1f} s, {60 * len(runs) / times[workers]:.1f} runs/min "
                      f"(load average before: {load:.1f})")
            ratios.append(times[1] / times[2])
            print(f"throughput ratio 2 workers / 1 worker: {ratios[-1]:.2f}")
    if len(ratios) > 1:
        print(f"median ratio over {len(ratios)} repeats: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
