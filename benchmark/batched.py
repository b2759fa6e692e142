"""Batched runs: runs of a suite that differ only in ``run.seed`` optimised together in one
process (suite key ``batch: seeds``; docs/conventions.md §19), each stored as its own run
through the normal store with its own trace, metrics and images.

:func:`group_runs` groups a suite's runs; an executor hands a group to one worker, which calls
:func:`run_batch` (claims each member like :func:`benchmark.executors.worker.run_one`). The
members' forward/backward and optimiser step are one vmapped computation
(methods/batched.py); everything else is per member: its own module (iteration, stage),
divergence guard, metric callbacks (oracle peak, final, EMA, named iterates, stopping rules,
trace) and progress callbacks, fed the member's slice of the step output. A member that
diverges is stored as failed with its trace so far while the others go on; an error of the
batched computation itself fails every member still running (each stored with the error). A
method that cannot be batched (:func:`methods.batched.unbatchable_reason`, or a batched step
that fails at the first iteration) runs its members one after another as before, and records
why in the metric ``batch``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time

import lightning as L
import pandas as pd
import torch

from benchmark import plugins
from benchmark.config import RunConfig, resolve
from benchmark.executors.worker import ClaimProgress, needs_run, run_one
from benchmark.locks import Claim, try_claim
from benchmark.precision import resolve_precision
from benchmark.quiet import quiet_lightning
from benchmark.runner import build_module, build_task, execute, metric_callbacks, run_device
from benchmark.store import LostClaim, RunStore
from core.results import MethodKind, Outcome, RunState
from methods.batched import BatchedStep, unbatchable_reason
from methods.registry import METHODS
from scoring.guards import DivergenceGuard

BATCH_CHOICES = ("seeds",)  # suite key ``batch``: which runs are optimised together


class Unbatchable(Exception):
    """These runs cannot be optimised together (the message says why); they run alone."""


def batch_key(run: RunConfig) -> str | None:
    """Runs with equal keys differ only in their seed; None: never batched (baselines)."""
    if METHODS[run.method].kind != MethodKind.DIP:
        return None
    config = run.to_dict()
    config["run"] = {k: v for k, v in config["run"].items() if k != "seed"}
    return json.dumps(config, sort_keys=True, default=str)


def group_runs(runs: list[RunConfig], batch: str | None, max_size: int | None = None) -> list[list[RunConfig]]:
    """The runs in groups to optimise together (``batch: seeds``: equal but for the seed; at
    most ``max_size`` a group), in the order of their first member; every other run alone."""
    if not batch:
        return [[run] for run in runs]
    if batch not in BATCH_CHOICES:
        raise ValueError(f"unknown batch {batch!r}; valid: {', '.join(BATCH_CHOICES)}")
    groups: dict = {}
    for i, run in enumerate(runs):
        key = batch_key(run)
        groups.setdefault(i if key is None else key, []).append(run)
    out = []
    for group in groups.values():
        size = max_size or len(group)
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def group_jobs(jobs: list, batch: str | None) -> list[list]:
    """:func:`group_runs` of executor jobs (``benchmark.executors.Job``: ``.run``)."""
    by_id = {job.run_id: job for job in jobs}
    return [[by_id[run.run_id] for run in group] for group in group_runs([job.run for job in jobs], batch)]


@dataclasses.dataclass
class _Member:
    run: RunConfig
    task: object
    module: object
    callbacks: list  # guard, metric callbacks (trace last), extra callbacks
    metric_callbacks: list  # what benchmark.runner.metric_callbacks built: their summaries are the metrics
    error: BaseException | None = None


def _hook(callbacks, name: str, module) -> None:
    for cb in callbacks:
        getattr(cb, name)(None, module)


def fit_batch(runs: list[RunConfig], extra_callbacks: list[list]) -> list:
    """Optimise ``runs`` (equal but for the seed) together; per member either
    ``(metrics, images, trace)`` or the exception that failed it (with ``partial_trace``).
    Raises :class:`Unbatchable` before any member's callbacks saw an iteration."""
    spec = METHODS[runs[0].method]
    precision = resolve_precision(runs[0].run.precision, runs[0].run.accelerator)[0]
    reason = unbatchable_reason(spec.cls, runs[0].method_cfg, precision)
    if reason:
        raise Unbatchable(reason)
    device = torch.device(run_device(runs[0].run.accelerator))  # where the solo runs would run
    members = []
    for run, extras in zip(runs, extra_callbacks):
        L.seed_everything(run.run.seed, workers=False, verbose=False)  # as the solo run (benchmark/runner.py)
        task = build_task(run)
        module = build_module(spec, run, task).to(device)
        if len(module.schedule) > 1:
            raise Unbatchable("preparatory stages (their own optimisers and iteration numbering)")
        callbacks = metric_callbacks(task, run.run)
        guard = DivergenceGuard(**dataclasses.asdict(run.run.divergence))
        members.append(_Member(run, task, module, [guard, *callbacks, *extras], callbacks))
    step = BatchedStep([m.module for m in members])
    ys = torch.stack([m.task.y for m in members]).to(device)
    for idx in range(members[0].module.total_iterations):
        live = [(i, m) for i, m in enumerate(members) if m.error is None]
        if not live:
            break
        for m in members:
            m.module.on_train_batch_start({"y": None}, idx)
        try:
            outs = step(ys, idx)
        except Exception as exc:
            if idx == 0:
                raise Unbatchable(f"the batched training_step failed: {type(exc).__name__}: {exc}") from exc
            for _, m in live:
                m.error = copy.copy(exc)  # each member's own (it carries that member's partial trace)
            break
        for i, m in live:
            try:
                for cb in m.callbacks:
                    cb.on_train_batch_end(None, m.module, outs[i], {"y": ys[i]}, idx)
            except Exception as exc:  # this member's run fails (diverged, …); the others go on
                m.error = exc
    step.write_back()
    results = []
    for m in members:
        if m.error is None:
            try:
                _hook(m.callbacks, "on_train_end", m.module)
                _hook(m.callbacks, "on_fit_end", m.module)
            except Exception as exc:
                m.error = exc
        if m.error is not None:
            m.error.partial_trace = pd.DataFrame(m.metric_callbacks[-1].rows)
            results.append(m.error)
            continue
        metrics, images = {}, {}
        for cb in m.metric_callbacks:
            cm, ci = cb.summary()
            metrics.update(cm)
            images.update(ci)
        module = m.module.cpu()
        metrics["n_params"] = sum(p.numel() for p in module.net.parameters())
        metrics["n_trainable"] = sum(p.numel() for g in module.parameter_groups() for p in g.params)
        metrics["iterations"] = module.total_iterations
        metrics["precision"] = {"requested": m.run.run.precision, "used": "32-true"}
        results.append((metrics, {k: v.cpu() if v is not None else None for k, v in images.items()},
                        pd.DataFrame(m.metric_callbacks[-1].rows)))
    return results


def _handed(result, batch_info: dict):
    """A ``fit`` for :func:`benchmark.runner.execute` that hands over one member's result."""
    def fit(spec, run, task, extra_callbacks):
        if isinstance(result, BaseException):
            raise result
        metrics, images, trace = result
        return {**metrics, "batch": batch_info}, images, trace
    return fit


def _solo(reason: str, size: int):
    from benchmark.runner import RUNNERS

    def fit(spec, run, task, extra_callbacks):
        metrics, images, trace = RUNNERS[spec.kind](spec, run, task, extra_callbacks)
        return {**metrics, "batch": {"mode": "solo", "size": size, "reason": reason}}, images, trace
    return fit


def run_group(configs: list[dict], suite: str, results: str, redo=(), not_before: float = float("inf"),
              executor: str = "local", plugin_files=()) -> list[Outcome]:
    """What a worker process of an executor runs for a group of :func:`group_jobs`: the one
    run (:func:`benchmark.executors.worker.run_one`) or the batch (:func:`run_batch`)."""
    if len(configs) == 1:
        return [run_one(configs[0], suite, results, redo, not_before, executor, plugin_files=plugin_files)]
    return run_batch(configs, suite, results, redo, not_before, executor, plugin_files=plugin_files)


def run_batch(configs: list[dict], suite: str, results: str, redo=(), not_before: float = float("inf"),
              executor: str = "local", extra_callbacks=None, plugin_files=()) -> list[Outcome]:
    """Claim, optimise together and store the runs ``configs`` (plain resolved configs, equal
    but for the seed); one outcome per config, in order. ``extra_callbacks``: one list per run."""
    quiet_lightning()
    plugins.load_all(plugin_files)
    extra_callbacks = extra_callbacks or [[] for _ in configs]
    store = RunStore(results)
    outcomes: list[Outcome | None] = [None] * len(configs)
    claimed = []  # (index, run, claim)
    try:
        for i, config in enumerate(configs):
            run = resolve({k: config[k] for k in ("method", "dataset", "run")})
            expected = config.get("run_id", run.run_id)
            if run.run_id != expected:
                outcomes[i] = Outcome(expected, RunState.FAILED, error=f"the config resolves to run id {run.run_id} in "
                                      f"this process, not {expected}: the code here differs from the orchestrator's")
                continue
            if not needs_run(store.inspect(suite, run), redo, not_before):
                outcomes[i] = Outcome(run.run_id, RunState.SKIPPED, reason="already stored by another invocation")
                continue
            claim = try_claim(store.suite_dir(suite), run.run_id, executor)
            if not isinstance(claim, Claim):
                outcomes[i] = Outcome(run.run_id, RunState.SKIPPED, reason=f"being run by {claim.describe()}")
                continue
            if not needs_run(store.inspect(suite, run), redo, not_before):
                claim.release()
                outcomes[i] = Outcome(run.run_id, RunState.SKIPPED, reason="already stored by another invocation")
                continue
            claim.report_progress(0, run.run.max_steps)
            claimed.append((i, run, claim))
        extras = [[ClaimProgress(claim, run.run.max_steps), *extra_callbacks[i]] for i, run, claim in claimed]
        runs = [run for _, run, _ in claimed]
        fits: list = [_solo("a batch of one run", 1)] * len(claimed)
        if len(claimed) > 1:
            start = time.perf_counter()
            try:
                handed = fit_batch(runs, extras)
                info = {"mode": "vmap", "size": len(runs), "seeds": [r.run.seed for r in runs],
                        "wall_time_s": time.perf_counter() - start}
                fits = [_handed(r, info) for r in handed]
            except Unbatchable as exc:
                fits = [_solo(str(exc), len(runs))] * len(claimed)
            except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: each member stores it
                exc.partial_trace = None
                fits = [_handed(exc, {"mode": "vmap", "size": len(runs)})] * len(claimed)
        for (i, run, claim), fit, member_extras in zip(claimed, fits, extras):
            try:
                metrics = execute(run, suite, store, extra_callbacks=member_extras, claim=claim,
                                  placement={"executor": executor}, fit=fit)
                outcomes[i] = Outcome(run.run_id, RunState(metrics["status"]), metrics=metrics)
            except LostClaim as exc:
                outcomes[i] = Outcome(run.run_id, RunState.SKIPPED, reason=str(exc))
    finally:
        for _, _, claim in claimed:
            claim.release()
    return outcomes
