"""``benchmark run SUITE --dry-run``: what a suite would do, without storing anything: every
run with its state in the store and an estimated time, the pairs skipped and why, and for
every distinct task whether its data are here (or how to get them)."""
from __future__ import annotations

import math

from benchmark.memory import RunTooLarge, check_fits
from benchmark.runner import build_task
from benchmark.store import RunStore
from core.results import RunState
from datamodules.sources.paths import MissingDataError
from methods.registry import METHODS

# s per iteration of the ≈ 3 M-parameter Survey B U-Net on these 2-core CPUs, by image side
# (README, "Facts measured on these machines"); narrower networks are faster, so the
# estimate is an upper bound on this CPU; a GPU is much faster.
STEP_COST_S = {64: 0.1, 128: 0.45, 256: 2.0, 501: 8.0}
BASELINE_S = 5.0


def step_cost(side: int | None) -> float:
    """Interpolated log-log between the measured sides (extrapolated ∝ pixels beyond)."""
    if side is None:
        side = 64
    sides = sorted(STEP_COST_S)
    if side <= sides[0]:
        return STEP_COST_S[sides[0]] * (side / sides[0]) ** 2
    if side >= sides[-1]:
        return STEP_COST_S[sides[-1]] * (side / sides[-1]) ** 2
    lo = max(s for s in sides if s <= side)
    hi = min(s for s in sides if s >= side)
    if lo == hi:
        return STEP_COST_S[lo]
    t = math.log(side / lo) / math.log(hi / lo)
    return math.exp((1 - t) * math.log(STEP_COST_S[lo]) + t * math.log(STEP_COST_S[hi]))


def image_side(run) -> int | None:
    for key in ("image_size", "crop"):
        value = getattr(run.dataset_cfg, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def estimate_s(run) -> float:
    iterations = METHODS[run.method].cls.iterations(run.method_cfg, run.run.max_steps)
    return iterations * step_cost(image_side(run)) if iterations else BASELINE_S


def data_status(run) -> str:
    """``found``, or the first line of how to get the data (the task is built to check; a run
    that cannot fit in memory is reported, not built)."""
    try:
        check_fits(run)
        build_task(run)
    except RunTooLarge as exc:
        return f"too large: {exc}"
    except MissingDataError as exc:
        return "missing: " + " ".join(str(exc).split("\n")[:2])
    except Exception as exc:  # noqa: BLE001 - reported, the plan goes on
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return "found"


def print_plan(suite, store: RunStore, check_data: bool = True) -> int:
    """Print the plan; exit code 0, or 1 when a task's data are missing or broken."""
    print(f"suite {suite.name}: {len(suite.runs)} runs (dry run: nothing is stored)")
    todo_s, problems, checked = 0.0, 0, {}
    for run in suite.runs:
        state = store.inspect(suite.name, run).state
        cost = estimate_s(run)
        if state != RunState.FINISHED:
            todo_s += cost
        key = run.to_dict()["dataset"].__repr__()
        if check_data and key not in checked:
            checked[key] = data_status(run)
            problems += checked[key] != "found"
        data = f", data {checked[key]}" if check_data else ""
        oracle = " (oracle trial)" if run.run_id in getattr(suite, "oracle", []) else ""
        print(f"  {state:<8} {run.run_id}: {run.method} on {run.dataset} seed {run.run.seed}{oracle}, "
              f"{METHODS[run.method].cls.iterations(run.method_cfg, run.run.max_steps)} iterations, "
              f"≈ {cost / 60:.1f} min{data}")
    for method, dataset, reason in suite.skipped:
        print(f"  skipped  {method} on {dataset}: {reason}")
    print(f"estimated time of the runs not finished: ≈ {todo_s / 60:.0f} min on this 2-core CPU "
          f"(upper bound from the Survey B U-Net's step cost; a GPU is much faster)")
    return 1 if problems else 0
