"""Runs without ground truth (docs/conventions.md §11): a task whose ``gt`` is None — here
the denoising task with its ground truth dropped, defined in a plugin file outside the
project — runs end to end through the CLI; no PSNR/SSIM key or column exists (not even
NaN), the loss, the data residual ‖Ax − y‖ and every stopping rule's pick are stored; the
report renders what it can; ``reconstruct`` writes the stopped and final images."""
from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark import plugins
from benchmark.cli import main
from benchmark.config import resolve
from benchmark.runner import build_task
from datamodules.registry import DATASETS
from datamodules.registry import load_all as load_datasets
from methods.registry import METHODS
from methods.registry import load_all as load_methods
from scoring.stopping import STOPPING_RULES

PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass

    from datamodules.registry import register_dataset
    from datamodules.tasks.denoising import DenoisingConfig, build_denoising


    @dataclass
    class NoGTConfig(DenoisingConfig):
        pass


    @register_dataset("photo_no_gt", NoGTConfig, "denoising with its ground truth dropped (a user's measurement)",
                      capabilities={"linear", "real_image", "natural_image"})
    def build(cfg):
        task = build_denoising(cfg)
        task.gt = None
        task.provenance = "no ground truth: " + task.provenance
        return task
''')
NET = "{name: unet, scales: 3, channels: 8, skip_channels: [0, 4, 4]}"
STEPS = 24


def has_score(name: str) -> bool:
    return "psnr" in name.lower() or "ssim" in name.lower()


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory):
    """The plugin on disk; its registrations are forgotten after this module."""
    load_methods(), load_datasets()
    saved = [(d, dict(d)) for d in (METHODS, DATASETS, STOPPING_RULES, plugins.PLUGINS)]
    modules = set(sys.modules)
    path = tmp_path_factory.mktemp("user") / "no_gt_plugin.py"
    path.write_text(PLUGIN)
    yield path
    for d, content in saved:
        d.clear()
        d.update(content)
    for name in set(sys.modules) - modules:
        if name.startswith("dipbench_plugin_"):
            del sys.modules[name]


@pytest.fixture(scope="module")
def suite_results(plugin_file, tmp_path_factory):
    """vanilla DIP and the degraded baseline on the task without GT and on the same task with
    GT, every registered stopping rule configured; run once through the CLI."""
    folder = plugin_file.parent  # the suite's plugins: key names the same file the other tests pass to --plugins
    rules = "".join(f"    {name}: {{}}\n" for name in STOPPING_RULES if name != "running_variance")
    (folder / "mixed.yaml").write_text(
        "name: mixed\nplugins: [no_gt_plugin.py]\nmethods: [vanilla_dip, degraded]\ndatasets: [photo_no_gt, denoising]\n"
        f"seeds: [0]\nset:\n  dataset.crop: 16\n  method.net: {NET}\n  method.lr: 0.01\n  run.max_steps: {STEPS}\n"
        "  run.trace_every: 4\n  run.ssim_every: 1\n  run.stopping:\n    running_variance: {window: 3, patience: 4}\n"
        f"{rules}")
    results = folder / "results"
    assert main(["run", str(folder / "mixed.yaml"), "--results", str(results)]) == 0
    return results


def load_run(results: Path, method: str, dataset: str) -> tuple[dict, pd.DataFrame, dict, Path]:
    (run_dir,) = [p for p in (results / "mixed").glob(f"{method}__{dataset}__*") if p.is_dir()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    trace = pd.read_parquet(run_dir / "trace.parquet") if (run_dir / "trace.parquet").exists() else pd.DataFrame()
    return metrics, trace, dict(np.load(run_dir / "images.npz")), run_dir


def noisy_measurement() -> torch.Tensor:
    """y of the plugin's task (the denoising task at crop 16: same builder, same noise seed)."""
    return build_task(resolve({"method": {"name": "degraded"}, "dataset": {"name": "denoising", "crop": 16}})).y


def test_dip_run_without_ground_truth_stores_no_scores_but_loss_residual_and_picks(suite_results):
    metrics, trace, images, _ = load_run(suite_results, "vanilla_dip", "photo_no_gt")
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert metrics["has_ground_truth"] is False
    assert [k for k in metrics if has_score(k)] == []  # absent, not NaN
    assert not any(k.startswith("peak_") or k.endswith("gap_db") for k in metrics)  # no oracle
    assert [c for c in trace.columns if has_score(c)] == []
    assert {"step", "stage", "loss", "data_residual", "es.running_variance.g"} <= set(trace.columns)
    assert trace["step"].iloc[-1] == STEPS and np.isfinite(trace["loss"]).all()
    # the residual is ‖x − y‖ of the stored images (A = I), traced and final
    y = noisy_measurement()[0].numpy()
    assert metrics["final_data_residual"] == pytest.approx(np.linalg.norm(images["final"] - y), rel=1e-5)
    assert trace["data_residual"].iloc[-1] == pytest.approx(metrics["final_data_residual"], rel=1e-5)
    assert trace["data_residual"].iloc[-1] < trace["data_residual"].iloc[0]
    # every configured stopping rule reports its pick; running_variance (window 3) picked an image
    for rule in STOPPING_RULES:
        assert f"es.{rule}.step" in metrics and f"es.{rule}.stop_step" in metrics
    step = metrics["es.running_variance.step"]
    assert 3 <= step <= STEPS and "es_running_variance" in images
    assert metrics["es.running_variance.data_residual"] == pytest.approx(
        np.linalg.norm(images["es_running_variance"] - y), rel=1e-5)
    assert {"degraded", "final", "ema"} <= set(images) and not {"gt", "peak"} & set(images)


def test_baseline_without_ground_truth_and_runs_with_it_alongside(suite_results):
    metrics, trace, images, _ = load_run(suite_results, "degraded", "photo_no_gt")
    assert metrics["status"] == "finished" and [k for k in metrics if has_score(k)] == []
    y = noisy_measurement()[0].numpy()
    assert metrics["final_data_residual"] == pytest.approx(np.linalg.norm(np.clip(y, 0, 1) - y), rel=1e-5)
    assert [c for c in trace.columns if has_score(c)] == [] and "gt" not in images
    # the same task with its ground truth: scored as before, and the residual is traced too
    metrics, trace, _, _ = load_run(suite_results, "vanilla_dip", "denoising")
    assert metrics["has_ground_truth"] is True and np.isfinite(metrics["peak_psnr"])
    assert np.isfinite(metrics["es.running_variance.psnr"]) and "psnr" in trace and "data_residual" in trace


def test_report_without_ground_truth_has_no_nan_rows_and_shows_curves_and_images(suite_results, tmp_path):
    out = tmp_path / "mixed_report"
    assert main(["report", "--results", str(suite_results), "--out", str(out)]) == 0
    table = (out / "mixed" / "table.md").read_text()
    psnr_part, no_gt_part = table.split("## Runs without ground truth")
    assert "photo_no_gt" not in psnr_part and "photo_no_gt" in no_gt_part and "No ground truth" in no_gt_part
    assert not re.search(r"\bnan\b", no_gt_part, re.IGNORECASE)
    assert not re.search(r"photo_no_gt[^\n]*\bnan\b", table, re.IGNORECASE)
    for figure in ("psnr_vs_iteration.png", "residual_vs_iteration.png", "reconstructions.png"):
        assert (out / "mixed" / figure).stat().st_size > 10_000
    # a store holding only runs without ground truth: no PSNR table or figure, the rest renders
    only = tmp_path / "only_no_gt"
    for run_dir in (suite_results / "mixed").glob("*__photo_no_gt__*"):
        shutil.copytree(run_dir, only / "mixed" / run_dir.name)
    out = tmp_path / "no_gt_report"
    assert main(["report", "--results", str(only), "--out", str(out)]) == 0
    table = (out / "mixed" / "table.md").read_text()
    assert "No ground truth" in table and "Peak PSNR" not in table and not re.search(r"\bnan\b", table, re.IGNORECASE)
    assert re.search(r"ES(\[running_variance\])? iter", table) and "Final ‖Ax−y‖" in table
    assert not (out / "mixed" / "psnr_vs_iteration.png").exists()
    for figure in ("residual_vs_iteration.png", "reconstructions.png"):
        assert (out / "mixed" / figure).stat().st_size > 10_000
    assert re.search(r"ES(\[running\\_variance\])? iter", (out / "mixed" / "table.tex").read_text())


def test_reconstruct_writes_the_stopped_and_final_images(plugin_file, tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "out" / "recon.png"
    args = ["reconstruct", "--plugins", str(plugin_file), "--dataset", "photo_no_gt", "--method", "vanilla_dip",
            "--set", "dataset.crop=16", "--set", f"method.net={NET}", "--set", "run.max_steps=12",
            "--set", "run.stopping.running_variance.window=3", "--set", "run.stopping.running_variance.patience=4",
            "--out", str(out), "--results", str(results)]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out.split()
    files = {p.name for p in out.parent.iterdir()}
    assert files == {"recon.png", "recon.npy", "recon_final.png", "recon_final.npy"}
    assert sorted(Path(p).name for p in printed) == sorted(files)
    (run_dir,) = list((results / "reconstruct").glob("vanilla_dip__photo_no_gt__*"))
    stored = np.load(run_dir / "images.npz")
    np.testing.assert_array_equal(np.load(out.with_suffix(".npy")), stored["es_running_variance"])
    np.testing.assert_array_equal(np.load(out.parent / "recon_final.npy"), stored["final"])
    assert np.load(out.with_suffix(".npy")).shape == (3, 16, 16)
    import imageio.v3 as iio

    assert iio.imread(out).shape == (16, 16, 3)
    assert json.loads((run_dir / "metrics.json").read_text())["has_ground_truth"] is False
    # the same command again reuses the stored run
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0
    assert "reusing the finished run" in capsys.readouterr().err
    assert (run_dir / "metrics.json").stat().st_mtime_ns == stamp
    # a baseline's reconstruction is its own stopped image
    base = tmp_path / "base.png"
    assert main(["reconstruct", "--plugins", str(plugin_file), "--dataset", "photo_no_gt", "--method", "degraded",
                 "--set", "dataset.crop=16", "--out", str(base), "--results", str(results)]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "base.npy"), np.load(tmp_path / "base_final.npy"))


def test_reconstruct_says_what_to_do_when_the_rule_picked_nothing(plugin_file, tmp_path, capsys):
    out = tmp_path / "recon.png"
    code = main(["reconstruct", "--plugins", str(plugin_file), "--dataset", "photo_no_gt", "--method", "vanilla_dip",
                 "--set", "dataset.crop=16", "--set", f"method.net={NET}", "--set", "run.max_steps=2",
                 "--out", str(out), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 1 and "running_variance picked no image in 2 iterations" in err and "window" in err
    assert (tmp_path / "recon_final.npy").exists() and not out.exists()
