"""Execute one run: a pure function of its resolved config.

suite → resolved run configs → one run = DataModule + method + ``Trainer.fit`` →
callbacks fill the trace → the store writes the run folder. The method gets the task's
measurement only; the metric callbacks hold the ground truth.
"""
from __future__ import annotations

import os
import time
import traceback

import lightning as L
import pandas as pd
import torch

from benchmark.config import RunConfig
from benchmark.provenance import run_provenance
from benchmark.store import RunStore
from datamodules.datamodule import SingleMeasurementDataModule
from datamodules.registry import load_all as load_datasets
from methods import keys
from methods.callbacks import EMAOutput, FinalIterate, NamedIterates, OracleBest, Scorer, Trace
from methods.registry import load_all as load_methods
from methods.stopping import build_stopping_rules


def build_task(run: RunConfig):
    return load_datasets()[run.dataset].build(run.dataset_cfg)


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
    trainer = L.Trainer(
        max_epochs=1,  # one epoch = the run: the loader serves module.total_iterations batches
        accelerator=settings.accelerator,
        devices=1,
        precision=settings.precision,
        deterministic=settings.deterministic,
        callbacks=callbacks + list(extra_callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=SingleMeasurementDataModule(task.measurement(), module.total_iterations))
    metrics, images = {}, {}
    for cb in callbacks:
        m, im = cb.summary()
        metrics.update(m)
        images.update(im)
    for rule in settings.stopping:
        if metrics.get(keys.es(rule, "psnr")) is not None:
            metrics[keys.es(rule, "gap_db")] = metrics[keys.PEAK_PSNR] - metrics[keys.es(rule, "psnr")]
    metrics["n_params"] = sum(p.numel() for p in module.net.parameters())
    metrics["n_trainable"] = sum(p.numel() for g in module.parameter_groups() for p in g.params)
    metrics["iterations"] = module.total_iterations
    return metrics, images, pd.DataFrame(callbacks[-1].rows)


def _run_baseline(spec, run: RunConfig, task):
    baseline = spec.cls(run.method_cfg, task.measurement(), oracle=task.psnr)
    with torch.no_grad():
        x = baseline.reconstruct()
    psnr, ssim = task.psnr(x), task.ssim(x)
    metrics = {keys.PEAK_PSNR: psnr, keys.PEAK_STEP: None, keys.PEAK_SSIM: ssim, keys.FINAL_PSNR: psnr,
               keys.FINAL_SSIM: ssim, **baseline.info}
    return metrics, {"final": x}, pd.DataFrame(baseline.trace)


def execute(run: RunConfig, suite: str, store: RunStore, extra_callbacks=()) -> dict:
    """Run one config and store it; a failure is stored as status "failed" (never
    raised), so one bad run cannot stop a grid."""
    spec = load_methods()[run.method]
    start = time.perf_counter()
    provenance = run_provenance(spec.source_file)
    try:
        L.seed_everything(run.run.seed, workers=False, verbose=False)
        task = build_task(run)
        if spec.kind == "baseline":
            metrics, images, trace = _run_baseline(spec, run, task)
        else:
            metrics, images, trace = _fit_dip(spec, run, task, extra_callbacks)
        base = {"status": "finished", "method": run.method, "dataset": run.dataset, "kind": spec.kind,
                "provenance": task.provenance, "metric": task.metric.description,
                keys.DEGRADED_PSNR: task.psnr(task.degraded)}
        metrics = {**base, **metrics, "wall_time_s": time.perf_counter() - start, **provenance}
        to_np = lambda t: t.detach().float().cpu()[0].numpy()  # noqa: E731
        shown = {"gt": task.gt, "degraded": task.degraded, **{k: v for k, v in images.items() if v is not None}}
        arrays = {k: to_np(v) for k, v in shown.items()} if run.run.save_images else {}
        previews = {k: to_np(task.to_image(v)) for k, v in shown.items()} if run.run.save_images else {}
        store.write(suite, run, metrics, trace, arrays, previews)
        return metrics
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # stored, reported, and retried next time
        metrics = {"status": "failed", "method": run.method, "dataset": run.dataset, "kind": spec.kind,
                   "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                   "wall_time_s": time.perf_counter() - start, **provenance}
        store.write(suite, run, metrics, None, {})
        return metrics
