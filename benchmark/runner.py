"""Execute one run: a pure function of its resolved config.

suite → resolved run configs → one run = DataModule + method + ``Trainer.fit`` →
callbacks fill the trace → the store writes the run folder. The method gets the task's
measurement only; the metric callbacks hold the ground truth.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
import traceback

import lightning as L
import pandas as pd
import torch

from benchmark import interrupts
from benchmark.config import RunConfig
from benchmark.memory import check_fits
from benchmark.precision import resolve_precision
from benchmark.provenance import run_provenance
from benchmark.store import LostClaim, RunStore, StoreError
from core import keys
from core.results import MethodKind, RunState
from datamodules.datamodule import SingleMeasurementDataModule
from datamodules.registry import DATASETS
from methods.registry import METHODS
from scoring.callbacks import CallbackGroup, EMAOutput, FinalIterate, NamedIterates, OracleBest, Scorer, Trace, data_residual
from scoring.guards import Diverged, DivergenceGuard
from scoring.stopping import build_stopping_rules


def build_task(run: RunConfig):
    return DATASETS[run.dataset].build(run.dataset_cfg)


def metric_callbacks(task, settings) -> list:
    """Oracle peak, final iterate, EMA, named iterates, the configured stopping rules, and
    the trace (last: it reads the others' columns)."""
    scorer = Scorer(task)
    watchers = [OracleBest(task, scorer), FinalIterate(task, scorer), EMAOutput(task, settings.ema_decay, scorer),
                NamedIterates(task, scorer), *build_stopping_rules(task, settings.stopping, scorer)]
    trace = Trace(task, settings.trace_every, settings.ssim_every, others=watchers[2:], scorer=scorer)
    return [*watchers, trace]


def build_module(spec, run: RunConfig, task):
    """The method's LightningModule, given the measurement only (no ground truth)."""
    return spec.cls(run.method_cfg, task.measurement(), run.run.seed, run.run.max_steps)


def _fit_dip(spec, run: RunConfig, task, extra_callbacks):
    settings = run.run
    if settings.deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # docs/conventions.md §5
    module = build_module(spec, run, task)
    callbacks = metric_callbacks(task, settings)
    precision, precision_info = resolve_precision(settings.precision, settings.accelerator)  # docs/conventions.md §20
    trainer = L.Trainer(
        max_epochs=1,  # one epoch = the run: the loader serves module.total_iterations batches
        accelerator=settings.accelerator,
        devices=1,
        precision=precision,
        deterministic=settings.deterministic,
        # the divergence guard first: no other callback ever sees a NaN iterate (scoring/guards.py); the
        # benchmark's own callbacks as one group, so Lightning dispatches each hook once (CallbackGroup)
        callbacks=[CallbackGroup([DivergenceGuard(**dataclasses.asdict(settings.divergence)), *callbacks]),
                   *extra_callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    try:
        trainer.fit(module, datamodule=SingleMeasurementDataModule(task.measurement(), module.total_iterations))
    except Exception as exc:
        exc.partial_trace = pd.DataFrame(callbacks[-1].rows)  # the trace up to the failure is stored with it
        raise
    interrupts.hold()  # computed: a signal from here on waits until the run is stored (execute releases)
    metrics, images = {}, {}
    for cb in callbacks:
        m, im = cb.summary()
        metrics.update(m)
        images.update(im)
    metrics.update(getattr(module, "info", None) or {})  # an analysis method's own results (methods/ntk_filter.py)
    images.update(getattr(module, "images", None) or {})
    metrics["n_params"] = sum(p.numel() for p in module.net.parameters())
    metrics["n_trainable"] = sum(p.numel() for g in module.parameter_groups() for p in g.params)
    metrics["iterations"] = module.total_iterations
    metrics["precision"] = precision_info
    metrics.update(getattr(module, "run_metrics", dict)())  # the method's own numbers (pre-training, subspace size)
    return metrics, images, pd.DataFrame(callbacks[-1].rows)


def _run_baseline(spec, run: RunConfig, task, extra_callbacks=()):
    has_gt = task.gt is not None
    baseline = spec.cls(run.method_cfg, task.measurement(), oracle=task.psnr if has_gt else None)
    with torch.no_grad():
        x = baseline.reconstruct()
    interrupts.hold()  # computed: a signal from here on waits until the run is stored (execute releases)
    metrics = {keys.FINAL_RESIDUAL: data_residual(task.physics, x, task.y), **baseline.info}
    trace = pd.DataFrame(baseline.trace)
    if has_gt:
        psnr, ssim = task.psnr(x), task.ssim(x)
        metrics.update({keys.PEAK_PSNR: psnr, keys.PEAK_STEP: None, keys.PEAK_SSIM: ssim, keys.FINAL_PSNR: psnr,
                        keys.FINAL_SSIM: ssim})
    else:  # no PSNR/SSIM columns at all (docs/conventions.md §11)
        trace = trace.drop(columns=[c for c in trace.columns if "psnr" in c or "ssim" in c])
    return metrics, {"final": x, **getattr(baseline, "images", {})}, trace  # + an analysis's images (ntk_eigen)


RUNNERS = {MethodKind.DIP: _fit_dip, MethodKind.BASELINE: _run_baseline}  # by the method class's kind


def run_device(accelerator: str) -> str:
    """Where a run runs: Lightning's ``auto`` (and ``gpu``/``cuda``) is CUDA when present, else the CPU."""
    return "cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"


def execute(run: RunConfig, suite: str, store: RunStore, extra_callbacks=(), claim=None, placement=None,
            fit=None) -> dict:
    """Run one config and store it; a failure (exception, out of memory, divergence) is stored
    as status "failed" with its reason and traceback (never raised), so one bad run cannot stop
    a grid. Only an interruption (KeyboardInterrupt, SIGTERM: a BaseException) or a store that
    cannot be written propagates. ``claim`` (benchmark/locks.py) is checked before the write;
    ``placement`` (executor, …) is stored with the host, pid, device and ``CUDA_VISIBLE_DEVICES``.
    ``fit(spec, run, task, extra_callbacks) -> (metrics, images, trace)`` replaces the method
    kind's runner (benchmark/batched.py hands over a run it optimised in a batch)."""
    spec = METHODS[run.method]
    start, started_at = time.perf_counter(), time.time()
    provenance = run_provenance(spec.source_file)
    where = {"started_at": started_at, "placement": {"host": socket.gethostname(), "pid": os.getpid(),
                                                     "device": run_device(run.run.accelerator),
                                                     "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                                     **(placement or {})}}
    level = interrupts.depth()
    try:
        check_fits(run)  # a run that cannot fit is refused before it allocates (benchmark/memory.py)
        L.seed_everything(run.run.seed, workers=False, verbose=False)
        task = build_task(run)
        metrics, images, trace = (fit or RUNNERS[spec.kind])(spec, run, task, extra_callbacks)
        has_gt = task.gt is not None  # without it every PSNR/SSIM key is absent (docs/conventions.md §11)
        base = {"status": RunState.FINISHED, "method": run.method, "dataset": run.dataset, "kind": spec.kind,
                "provenance": task.provenance, keys.HAS_GT: has_gt,
                "metric": task.metric.description if has_gt else "no ground truth (PSNR/SSIM not computed)",
                **({keys.DEGRADED_PSNR: task.psnr(task.degraded)} if has_gt else {})}
        metrics = {**base, **metrics, "wall_time_s": time.perf_counter() - start, **where, "ended_at": time.time(),
                   **provenance}
        to_np = lambda t: t.detach().float().cpu()[0].numpy()  # noqa: E731
        shown = {"gt": task.gt, "degraded": task.degraded, **images}
        shown = {k: v for k, v in shown.items() if v is not None}
        arrays = {k: to_np(v) for k, v in shown.items()} if run.run.save_images else {}
        previews = {k: to_np(task.to_image(v)) for k, v in shown.items()} if run.run.save_images else {}
        store.write(suite, run, metrics, trace, arrays, previews, claim=claim)
        return metrics
    except (KeyboardInterrupt, StoreError, LostClaim):
        raise
    except Exception as exc:  # stored and reported; rerun only with --retry-failed
        metrics = {"status": RunState.FAILED, "method": run.method, "dataset": run.dataset, "kind": spec.kind,
                   "error": f"{type(exc).__name__}: {exc}", "failure": failure_info(exc),
                   "traceback": traceback.format_exc(), "wall_time_s": time.perf_counter() - start, **where,
                   "ended_at": time.time(), **provenance}
        store.write(suite, run, metrics, getattr(exc, "partial_trace", None), {}, claim=claim)
        return metrics
    finally:
        interrupts.release_to(level)  # a signal held back since the computation ended stops us now


def failure_info(exc: BaseException) -> dict:
    """What kind of failure: ``diverged`` (with the iteration, stage and reason), ``out_of_memory``
    or ``exception``."""
    if isinstance(exc, Diverged):
        return {"kind": "diverged", "step": exc.step, "stage": exc.stage, "reason": exc.reason}
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next run of this process starts with the memory free
        return {"kind": "out_of_memory", "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return {"kind": "exception", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
