"""Execute one run: a pure function of its resolved config.

suite → resolved run configs → one run = DataModule + method + ``Trainer.fit`` →
callbacks fill the trace → the store writes the run folder.
"""
from __future__ import annotations

import os
import time
import traceback

import lightning as L
import pandas as pd
import torch

from benchmark.config import RunConfig
from benchmark.store import RunStore
from datamodules.datamodule import SingleMeasurementDataModule
from datamodules.registry import load_all as load_datasets
from methods.callbacks import EMAOutput, FinalIterate, OracleBest, RunningVarianceES, Trace, Scorer
from methods.registry import load_all as load_methods


def build_task(run: RunConfig):
    return load_datasets()[run.dataset].build(run.dataset_cfg)


def metric_callbacks(task, settings):
    scorer = Scorer(task)
    best, final = OracleBest(task, scorer), FinalIterate(task, scorer)
    ema = EMAOutput(task, settings.ema_decay, scorer)
    es = RunningVarianceES(task, settings.es_window, settings.es_patience, settings.es_delta, scorer)
    trace = Trace(task, settings.trace_every, settings.ssim_every, others=[ema, es], scorer=scorer)
    return [best, final, ema, es, trace]  # trace last: it reads the others' values


def _fit_dip(spec, run: RunConfig, task, extra_callbacks):
    settings = run.run
    if settings.deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # conventions.md §5
    module = spec.cls(run.method_cfg, task, settings.seed)
    callbacks = metric_callbacks(task, settings)
    trainer = L.Trainer(
        max_steps=settings.max_steps,
        accelerator=settings.accelerator,
        devices=1,
        precision=settings.precision,
        deterministic=settings.deterministic,
        gradient_clip_val=getattr(run.method_cfg, "grad_clip", None),
        callbacks=callbacks + list(extra_callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=SingleMeasurementDataModule(task))
    metrics, images = {}, {}
    for cb in callbacks:
        m, im = cb.summary()
        metrics.update(m)
        images.update(im)
    metrics["n_params"] = sum(p.numel() for p in module.net.parameters())
    return metrics, images, pd.DataFrame(callbacks[-1].rows)


def _run_baseline(spec, run: RunConfig, task):
    baseline = spec.cls(run.method_cfg, task)
    with torch.no_grad():
        x = baseline.reconstruct()
    psnr, ssim = task.psnr(x), task.ssim(x)
    metrics = {"peak_psnr": psnr, "peak_step": None, "peak_ssim": ssim, "final_psnr": psnr, "final_ssim": ssim,
               "es_psnr": float("nan"), "es_step": None}
    metrics.update(getattr(baseline, "info", {}))
    return metrics, {"final": x}, pd.DataFrame(baseline.trace)


def execute(run: RunConfig, suite: str, store: RunStore, extra_callbacks=()) -> dict:
    """Run one config and store it; a failure is stored as status "failed" (never
    raised), so one bad run cannot stop a grid."""
    spec = load_methods()[run.method]
    start = time.perf_counter()
    try:
        L.seed_everything(run.run.seed, workers=False, verbose=False)
        task = build_task(run)
        if spec.kind == "baseline":
            metrics, images, trace = _run_baseline(spec, run, task)
        else:
            metrics, images, trace = _fit_dip(spec, run, task, extra_callbacks)
        base = {"status": "finished", "method": run.method, "dataset": run.dataset, "kind": spec.kind,
                "provenance": task.provenance, "metric": task.metric.description, "degraded_psnr": task.psnr(task.degraded)}
        metrics = {**base, **metrics, "wall_time_s": time.perf_counter() - start}
        to_np = lambda t: t.detach().float().cpu()[0].numpy()  # noqa: E731
        shown = {"gt": task.gt, "degraded": task.degraded, **{k: v for k, v in images.items() if v is not None}}
        arrays = {k: to_np(v) for k, v in shown.items()} if run.run.save_images else {}
        previews = {k: to_np(task.to_image(v)) for k, v in shown.items()} if run.run.save_images else {}
        store.write(suite, run, metrics, trace, arrays, previews)
        return metrics
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # stored, reported, and retried next time
        metrics = {"status": "failed", "method": run.method, "dataset": run.dataset, "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc(), "wall_time_s": time.perf_counter() - start}
        store.write(suite, run, metrics, None, {})
        return metrics

