"""``python -m benchmark status [SUITE]``: per suite, how many runs are finished, failed,
running (a live claim), pending or damaged, the time spent and an estimate of the time left;
read from the run store alone, so it works for every executor and from any terminal.

A suite's runs are the ones it had when it was last launched (``suite.json``, written by
``benchmark run``); a suite never launched into this results folder is expanded from its
file (all pending). The estimate is the compute time per iteration of the suite's finished
runs times the iterations left, divided by the number of runs going on now (at least 1).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from benchmark.locks import live_holder, read_progress
from benchmark.store import RunStore
from benchmark.suites import load_suite
from methods.registry import METHODS


@dataclass
class SuiteStatus:
    suite: str
    finished: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0
    damaged: int = 0
    spent_s: float = 0.0
    eta_s: float | None = None
    running_runs: list[dict] = field(default_factory=list)
    failed_runs: list[dict] = field(default_factory=list)
    damaged_runs: list[dict] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.finished + self.failed + self.running + self.pending + self.damaged


def suite_runs(store: RunStore, suite: str) -> dict[str, int]:
    """``{run_id: iterations}`` of a suite: from ``suite.json``, else its file, else the stored folders."""
    info = store.suite_info(suite)
    if isinstance(info.get("runs"), dict):
        return {k: int(v or 0) for k, v in info["runs"].items()}
    try:
        return {r.run_id: METHODS[r.method].cls.iterations(r.method_cfg, r.run.max_steps) for r in load_suite(suite).runs}
    except Exception:  # noqa: BLE001 - not a suite name: what is stored is all we know
        return {p.name: 0 for p in store.runs(suite)}


def suite_status(store: RunStore, suite: str, runs: dict[str, int] | None = None) -> SuiteStatus:
    runs = suite_runs(store, suite) if runs is None else runs
    status, now = SuiteStatus(suite), time.time()
    per_step, left = [], 0
    suite_dir = store.suite_dir(suite)
    for run_id, steps in runs.items():
        state = store.inspect(suite, run_id)
        holder = live_holder(suite_dir, run_id)
        wall = float(state.metrics.get("wall_time_s") or 0.0)
        if holder is not None:
            status.running += 1
            progress = read_progress(suite_dir, run_id) or {}
            step = int(progress.get("step", 0))
            status.spent_s += now - holder.started
            left += max(steps - step, 0)
            status.running_runs.append({"run_id": run_id, "holder": holder.describe(), "step": step, "steps": steps,
                                        "elapsed_s": now - holder.started})
        elif state.state == "finished":
            status.finished += 1
            status.spent_s += wall
            iterations = state.metrics.get("iterations") or steps
            if iterations and wall:
                per_step.append((wall, iterations))
        elif state.state == "failed":
            status.failed += 1
            status.spent_s += wall
            failure = state.metrics.get("failure") or {}
            status.failed_runs.append({"run_id": run_id, "error": str(state.metrics.get("error", "")).splitlines()[0]
                                       if state.metrics.get("error") else "", "kind": failure.get("kind"),
                                       "step": failure.get("step")})
        elif state.state == "damaged":
            status.damaged += 1
            left += steps
            status.damaged_runs.append({"run_id": run_id, "problem": state.problem})
        else:
            status.pending += 1
            left += steps
    if per_step:
        rate = sum(w for w, _ in per_step) / sum(n for _, n in per_step)
        status.eta_s = rate * left / max(status.running, 1)
    elif left == 0:
        status.eta_s = 0.0
    return status


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def render(statuses: list[SuiteStatus]) -> str:
    head = f"{'suite':28s} {'finished':>8s} {'failed':>6s} {'running':>7s} {'pending':>7s} {'damaged':>7s} " \
           f"{'time spent':>10s} {'time left':>10s}"
    lines = [head]
    for s in statuses:
        eta = "–" if s.eta_s == 0 and not (s.running or s.pending or s.damaged) else _duration(s.eta_s)
        lines.append(f"{s.suite:28s} {s.finished:8d} {s.failed:6d} {s.running:7d} {s.pending:7d} {s.damaged:7d} "
                     f"{_duration(s.spent_s):>10s} {eta:>10s}")
        for r in s.running_runs:
            lines.append(f"  running  {r['run_id']}: iteration {r['step']}/{r['steps']}, {r['holder']}, "
                         f"{_duration(r['elapsed_s'])}")
        for r in s.failed_runs:
            where = f" at iteration {r['step']}" if r.get("step") is not None else ""
            lines.append(f"  failed   {r['run_id']}: {r['kind'] or 'error'}{where}: {r['error']}")
        for r in s.damaged_runs:
            lines.append(f"  damaged  {r['run_id']}: {r['problem']}")
    if any(s.failed for s in statuses):
        lines.append("failed runs are left alone by `benchmark run`; `--retry-failed` reruns them")
    return "\n".join(lines)


def as_json(statuses: list[SuiteStatus]) -> list[dict]:
    return [{**asdict(s), "total": s.total} for s in statuses]
