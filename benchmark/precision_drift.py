"""How much bf16 autocast moves a DIP run, and where (docs/conventions.md §20): the measurement
behind the refusals of benchmark/precision.py.

    python -m benchmark.precision_drift [--crop 64] [--steps 100] [--lr 0.01]

One step from the same weights, bf16 autocast vs float32, relative error of each part a DIP
step has: the loss reduction, the data-term sum, the operator and the network (output and
gradient). Then the PSNR traces of whole runs: float32, float32 with its initial weights
scaled by 1 + 1e-7 (the trace's own sensitivity to rounding), bf16 autocast over the whole
step (Lightning ``bf16-mixed``) and bf16 autocast over the network only (operator and data
term in float32).
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmark.precision import TOLERANCE_DB


# -- the measurement -----------------------------------------------------------------------
def _setup(dataset: dict, lr: float, steps: int):
    from benchmark.config import resolve
    from benchmark.runner import build_task

    net = {"name": "unet", "scales": 5, "channels": 32, "skip_channels": [0, 0, 0, 4, 4]}
    run = resolve({"method": {"name": "vanilla_dip", "lr": lr, "net": net}, "dataset": dataset,
                   "run": {"max_steps": steps}})
    return run, build_task(run)


def _module(run, task, scale: float = 0.0):
    from benchmark.runner import build_module
    from methods.registry import METHODS

    module = build_module(METHODS[run.method], run, task)
    if scale:
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(1 + scale)
    return module


def _autocast(device: str, enabled: bool):
    return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled)


def step_errors(dataset: dict, device: str = "cpu") -> dict[str, float]:
    """Relative errors of one step's parts under bf16 autocast against float32, same weights."""
    run, task = _setup(dataset, 0.01, 1)
    m = _module(run, task).to(device)
    y = task.y.to(device)

    def rel(a, b):
        a, b = a.detach().float().flatten(), b.detach().float().flatten()
        return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))

    x32 = m.net(m.z)
    loss32 = m.data_fidelity(m.physics.A(x32), y)
    g32 = torch.autograd.grad(loss32, list(m.net.parameters()))
    with _autocast(device, True):
        x16 = m.net(m.z)
        ax_bf = m.physics.A(x32.detach())  # the operator alone under autocast, on the float32 image
        loss_bf = m.data_fidelity(m.physics.A(x32.detach()), y)  # reduction alone under autocast
        sum_bf = (m.physics.A(x32.detach()) - y).pow(2).sum()
    loss16 = m.data_fidelity(m.physics.A(x16.float()), y)
    g16 = torch.autograd.grad(loss16, list(m.net.parameters()))
    with torch.no_grad():
        ax32 = m.physics.A(x32)
        sum32 = (ax32 - y).pow(2).sum()
    return {"loss reduction (mse under autocast)": rel(loss_bf.detach(), loss32.detach()),
            "data-term sum under autocast": rel(sum_bf, sum32),
            "operator A(x) under autocast": rel(ax_bf, ax32),
            "network output f(z)": rel(x16.detach(), x32.detach()),
            "network gradient": rel(torch.cat([g.flatten() for g in g16]), torch.cat([g.flatten() for g in g32]))}


def trace(run, task, mode: str, scale: float = 0.0, device: str = "cpu", every: int = 10) -> tuple[list, float]:
    """PSNR at every ``every``-th iteration of a plain loop and the seconds per step. ``mode``:
    ``fp32`` | ``bf16-step`` (the whole step under autocast, Lightning bf16-mixed) |
    ``bf16-net`` (the network under autocast, operator and data term in float32)."""
    m = _module(run, task, scale).to(device)
    y = task.y.to(device)
    opt = m.configure_optimizers()
    psnr, start = [], time.perf_counter()
    for k in range(1, run.run.max_steps + 1):
        opt.zero_grad(set_to_none=True)
        with _autocast(device, mode != "fp32"):
            x = m.net(m.z)
            if mode == "bf16-step":
                loss = m.data_fidelity(m.physics.A(x), y)
        if mode != "bf16-step":
            x = x.float()
            loss = m.data_fidelity(m.physics.A(x), y)
        loss.backward()
        if m.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(m.parameters(), m.cfg.grad_clip)
        opt.step()
        if k % every == 0 or k == 1:
            psnr.append(task.psnr(x.detach().float().cpu()))
    return psnr, (time.perf_counter() - start) / run.run.max_steps


def measure(crop: int = 64, steps: int = 100, lr: float = 0.01, device: str = "cpu", dataset: str = "denoising") -> dict:
    """Max |ΔPSNR| against float32 over the trace and speed-up, per variant."""
    run, task = _setup({"name": dataset, "crop": crop}, lr, steps)
    ref, t32 = trace(run, task, "fp32", device=device)
    out = {}
    for name, mode, scale in (("fp32, weights ×(1+1e-7)", "fp32", 1e-7), ("bf16 whole step", "bf16-step", 0.0),
                              ("bf16 network only", "bf16-net", 0.0)):
        ps, t = trace(run, task, mode, scale, device)
        out[name] = {"max_dpsnr_db": max(abs(a - b) for a, b in zip(ref, ps)),
                     "first_dpsnr_db": max(abs(a - b) for a, b in zip(ref[:3], ps[:3])), "speedup": t32 / t}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for dataset in ("denoising", "deblur_gaussian"):
        try:
            errors = step_errors({"name": dataset, "crop": args.crop}, args.device)
        except Exception as exc:  # noqa: BLE001 - a task missing here is reported, the rest goes on
            print(f"{dataset}: {type(exc).__name__}: {exc}")
            continue
        print(f"one step, bf16 autocast vs float32, {dataset} {args.crop}² (relative error):")
        for part, err in errors.items():
            print(f"  {part:40s} {err:.2e}")
    print(f"trace, vanilla DIP denoising {args.crop}², lr {args.lr}, {args.steps} iterations, PSNR every 10 "
          f"(tolerance {TOLERANCE_DB} dB):")
    for name, r in measure(args.crop, args.steps, args.lr, args.device).items():
        print(f"  {name:26s} max |ΔPSNR| {r['max_dpsnr_db']:.3f} dB (first 3 points {r['first_dpsnr_db']:.4f}), "
              f"speed ×{r['speedup']:.2f}")


if __name__ == "__main__":
    main()
