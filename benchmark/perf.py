"""``make perf``: the speed of the benchmark, as ratios measured side by side in one run
(issue 22). Run it alone on the machine (other jobs change every ratio).

    python -m benchmark.perf [--quick] [--only harness,batched,precision,operators,memory]

1. harness vs plain loop (vanilla DIP, the default suite's U-Net) at 64², 128², 256²:
   in-loop time per iteration, and the whole run (set-up and store) per iteration; plus
   the trace at stride 1 at 64²;
2. batched vs sequential throughput of 2 / 4 / 8 seeds at 64² (benchmark/batched.py,
   through the store, as a suite with ``batch: seeds`` runs them);
3. precision variants (benchmark/precision_drift.py): speed-up and max PSNR-trace difference;
4. operator forward + adjoint pairs per second at task sizes: CT as a sparse matrix vs one
   ASTRA call each way, SENSE (multi-coil MRI), Gaussian blur;
5. peak memory per DIP method at 64² and 256² (CUDA: ``max_memory_allocated``; CPU: the
   peak resident set of a fresh process for each, above its level before the run).

Works on CUDA too (``--device cuda``, default when present). ``--quick`` cuts iterations and
sizes so it ends in a few minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SECTIONS = ("harness", "batched", "precision", "operators", "memory")


def _rate(fn, min_s: float = 0.5, min_reps: int = 3) -> float:
    """Calls of ``fn`` per second (after one warm-up call)."""
    fn()
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_s:
        fn()
        reps += 1
    return reps / (time.perf_counter() - start)


def harness(quick: bool, device: str) -> None:
    from benchmark.config import resolve
    from benchmark.overhead import config, measure

    repeats = 3
    print(f"1. harness vs plain loop (vanilla DIP, 5×32 U-Net; >= 1 means the harness is as fast; medians of {repeats} "
          "interleaved repeats, the repeats' range in brackets)")
    print(f"   {'size':>6} {'iters':>6} {'plain/harness (loop)':>21} {'range':>13} {'plain/whole run':>16}")
    plan = [(64, 20 if quick else 100, 10), (64, 20 if quick else 100, 1), (128, 8 if quick else 30, 10),
            (256, 5 if quick else 12, 10)]
    for crop, steps, every in plan:
        cfg = config(crop, steps, every)
        cfg["run"]["accelerator"] = "gpu" if device == "cuda" else "cpu"
        r = measure(resolve(cfg), repeats)
        label = f"{crop}²" + (" (trace every iteration)" if every == 1 else "")
        spread = f"({min(r['ratios']):.2f}–{max(r['ratios']):.2f})"
        print(f"   {label:>6} {steps:>6} {r['plain'] / r['harness']:>21.3f} {spread:>13} {r['plain'] / r['whole']:>16.3f}")


def batched(quick: bool, device: str) -> None:
    from benchmark.batched import run_batch
    from benchmark.config import resolve
    from benchmark.overhead import config
    from benchmark.runner import execute
    from benchmark.store import RunStore

    steps = 15 if quick else 60
    print(f"2. batched vs sequential, vanilla DIP 64², {steps} iterations per run, through the store "
          "(throughput ratio; > 1: batching is faster)")
    print(f"   {'seeds':>6} {'sequential/batched':>19} {'batch mode':>11}")
    for n in (2, 4, 8):
        runs = []
        for seed in range(n):
            cfg = config(64, steps)
            cfg["run"].update(seed=seed, accelerator="gpu" if device == "cuda" else "cpu")
            runs.append(resolve(cfg))
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            start = time.perf_counter()
            for run in runs:
                execute(run, "perf", RunStore(a))
            sequential = time.perf_counter() - start
            start = time.perf_counter()
            outcomes = run_batch([{"run_id": r.run_id, **r.to_dict()} for r in runs], "perf", b)
            together = time.perf_counter() - start
        mode = (outcomes[0].metrics or {}).get("batch", {}).get("mode", "?")
        print(f"   {n:>6} {sequential / together:>19.2f} {mode:>11}")


def precision(quick: bool, device: str) -> None:
    from benchmark.precision_drift import TOLERANCE_DB, measure

    plan = [(64, 30 if quick else 100)] + ([] if quick else [(128, 40)])
    print(f"3. precision variants vs float32 (vanilla DIP denoising, lr 0.01; tolerance {TOLERANCE_DB} dB per trace point)")
    print(f"   {'size':>6} {'variant':<26} {'speed-up':>9} {'max |ΔPSNR| dB':>15} {'first 3 points':>15}")
    for crop, steps in plan:
        for name, r in measure(crop, steps, 0.01, device).items():
            print(f"   {str(crop) + '²':>6} {name:<26} {r['speedup']:>9.2f} {r['max_dpsnr_db']:>15.3f} "
                  f"{r['first_dpsnr_db']:>15.4f}")


def operators(quick: bool, device: str) -> None:
    print("4. operator forward + adjoint pairs per second (float32, batch 1)")
    print(f"   {'operator':<44} {'pairs/s':>10} {'ratio':>8}")
    sizes = (128,) if quick else (128, 256)
    for n in sizes:
        try:
            _ct_rates(n, device)
        except Exception as exc:  # noqa: BLE001 - a missing optional package is reported, the rest goes on
            print(f"   CT {n}²: not measured ({type(exc).__name__}: {exc})")
        _blur_rate(n, device)
    for n, coils in ((128, 8),) if quick else ((128, 8), (320, 15)):
        _sense_rate(n, coils, device)


def _ct_rates(n: int, device: str) -> None:
    import astra

    from datamodules.operators.ct import CTOperator, astra_projector, parallel_geometry

    angles = 60
    geom = parallel_geometry(n, np.linspace(0, np.pi, angles, endpoint=False))
    op = CTOperator(geom).to(device)
    x = torch.rand(1, 1, n, n, device=device)

    def sparse():
        op.A_adjoint(op.A(x))

    x_np = x[0, 0].cpu().numpy()
    with astra_projector(geom) as pid:
        def per_call():
            sid, sino = astra.create_sino(x_np, pid)
            bid, _ = astra.create_backprojection(sino, pid)
            astra.data2d.delete([sid, bid])

        r_astra = _rate(per_call)
    r_sparse = _rate(sparse)
    print(f"   {f'CT {n}², {angles} angles: sparse matrix ({device})':<44} {r_sparse:>10.1f} {r_sparse / r_astra:>8.2f}")
    print(f"   {f'CT {n}², {angles} angles: ASTRA per call (CPU)':<44} {r_astra:>10.1f} {1.0:>8.2f}")


def _blur_rate(n: int, device: str) -> None:
    from datamodules.operators.blur import BlurOperator, make_kernel

    op = BlurOperator(make_kernel("gaussian", 25, sigma=2.0), (3, n, n)).to(device)
    x = torch.rand(1, 3, n, n, device=device)
    r = _rate(lambda: op.A_adjoint(op.A(x)))
    print(f"   {f'Gaussian blur 25×25, 3×{n}²':<44} {r:>10.1f} {'':>8}")


def _sense_rate(n: int, coils: int, device: str) -> None:
    from datamodules.operators.mri import MultiCoilMRI

    g = torch.Generator().manual_seed(0)
    maps = torch.complex(torch.randn(coils, n, n, generator=g), torch.randn(coils, n, n, generator=g))
    mask = (torch.rand(n, n, generator=g) < 0.25).float()
    op = MultiCoilMRI(maps, mask).to(device)
    x = torch.rand(1, 2, n, n, device=device)
    r = _rate(lambda: op.A_adjoint(op.A(x)))
    print(f"   {f'SENSE {coils} coils, {n}²':<44} {r:>10.1f} {'':>8}")


MEMORY_PROBE = "--memory-probe"


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def memory_probe(method: str, crop: int, steps: int, device: str) -> dict:
    """Peak memory of one run of ``method`` (in this process, which should be fresh)."""
    from benchmark.config import IncompatibleError, resolve
    from benchmark.quiet import quiet_lightning
    from benchmark.runner import execute
    from benchmark.store import RunStore

    quiet_lightning()
    try:
        from methods.registry import METHODS

        # the method's smoke settings shorten its preparatory stages (OES: 60 000 mask steps by default); its own
        # network and denoiser stay, since they are what the memory measures
        short = {k: v for k, v in (METHODS[method].smoke_config or {}).items() if k not in ("net", "denoiser")}
        run = resolve({"method": {"name": method, **short}, "dataset": {"name": "denoising", "crop": crop},
                       "run": {"max_steps": steps, "save_images": False,
                               "accelerator": "gpu" if device == "cuda" else "cpu"}})
    except (IncompatibleError, ValueError) as exc:
        return {"error": str(exc).splitlines()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_kb("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset the peak resident set (VmHWM) to the current one
            except OSError:
                pass
        metrics = execute(run, "perf", RunStore(tmp))
        peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else (_rss_kb("VmHWM") - base) * 1024
    return {"peak_mb": peak / 2**20, "status": metrics["status"], "error": metrics.get("error", "")}


def memory(quick: bool, device: str) -> None:
    from core.results import MethodKind
    from methods.registry import METHODS

    methods = [n for n, s in METHODS.items() if s.kind == MethodKind.DIP]
    if quick:
        methods = [m for m in ("vanilla_dip", "dip_tv_hqs", "deep_decoder", "self_guided_dip") if m in methods]
    sizes = (64,) if quick else (64, 256)
    what = "CUDA max_memory_allocated" if device == "cuda" else "peak RSS of a fresh process above its level before the run"
    print("5. peak memory per method, denoising, 3 iterations (preparatory stages at their smoke length), "
          f"each method's own network ({what}), MiB")
    print(f"   {'method':<24}" + "".join(f"{str(s) + '²':>10}" for s in sizes))
    for method in methods:
        cells = []
        for crop in sizes:
            proc = subprocess.run([sys.executable, "-m", "benchmark.perf", MEMORY_PROBE, method, str(crop), device],
                                  capture_output=True, text=True, env={**os.environ})
            try:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                r = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
            cells.append(f"{r['peak_mb']:>10.0f}" if "peak_mb" in r and r.get("status") == "finished" else f"{'n/a':>10}")
            if "peak_mb" not in r or r.get("status") != "finished":
                print(f"   ({method} {crop}²: {r.get('error', '')[:100]})")
        print(f"   {method:<24}" + "".join(cells))


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == MEMORY_PROBE:
        torch.set_num_threads(int(os.environ.get("PERF_THREADS", torch.get_num_threads())))
        print(json.dumps(memory_probe(argv[1], int(argv[2]), 3, argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and sizes (a few minutes on 2 CPU cores)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--out", help="also write the output to this file (make perf: docs/results/perf.txt)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; valid: {', '.join(SECTIONS)}")
    from benchmark.quiet import quiet_lightning

    quiet_lightning()
    threads = torch.get_num_threads()
    if args.out:  # everything printed also goes to the file, written once at the end (a killed run leaves the old one)
        import contextlib
        import io

        buffer = io.StringIO()
        with contextlib.redirect_stdout(_Tee(sys.stdout, buffer)):
            _report(args, threads)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(buffer.getvalue())
        tmp.replace(out)
        return
    _report(args, threads)


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def _machine() -> str:
    """CPU model, cores and load average: what a ratio measured here depends on."""
    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"machine: {model}, {os.cpu_count()} CPU(s), load average {load} at start, {time.strftime('%Y-%m-%d %H:%M %Z')}"


def _report(args, threads: int) -> None:
    print(f"dipbench perf: torch {torch.__version__}, device {args.device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if args.device == 'cuda' else ''}, {threads} CPU thread(s), "
          f"{'quick' if args.quick else 'full'}; ratios, measured in this one run")
    print(_machine())
    for name in SECTIONS:
        if name in args.only.split(","):
            globals()[name](args.quick, args.device)


if __name__ == "__main__":
    main()
