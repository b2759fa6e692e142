"""Contract tests over the registries (after benchopt's ``test_solver_run``): every
registered method × three tiny tasks (linear real-valued, nonlinear, complex multi-coil
MRI) runs 5 iterations through the CLI and finishes, or is skipped as incompatible with
its reason; and every registered dataset builds at a tiny size, provides what it
declares and, if linear, passes deepinv's adjointness test. New methods and datasets get
these tests for free.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import tests.example_methods  # noqa: F401  (registers the contract's example methods)
from benchmark.cli import main
from benchmark.golden import method_entry  # every method at its smoke size on the tiny network
from datamodules.registry import load_all as load_datasets
from datamodules.sources.paths import MissingDataError
from methods.registry import load_all as load_methods

METHODS = load_methods()
DATASETS = load_datasets()
TINY_TASKS = {"linear": "denoising", "nonlinear": "deblur_nonlinear", "complex_mri": "fastmri_knee"}
STEPS = 5


def write_suite(tmp_path: Path, method: str, dataset: str) -> Path:
    suite = {"name": "contract", "methods": [method_entry(method)],
             "datasets": [{"name": dataset, **DATASETS[dataset].smoke_config}], "seeds": [0],
             "set": {"run.max_steps": STEPS, "run.trace_every": 1, "run.ssim_every": 5,
                     "run.stopping": {"running_variance": {"window": 2, "patience": 2}}}}
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def run_folders(results: Path) -> list[Path]:
    """Stored run folders of the suite (the store keeps its claims and temporary folders hidden)."""
    folder = results / "contract"
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")] if folder.exists() else []


def stored_run(results: Path) -> tuple[dict, pd.DataFrame, dict]:
    (run_dir,) = run_folders(results)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    trace = pd.read_parquet(run_dir / "trace.parquet") if (run_dir / "trace.parquet").exists() else pd.DataFrame()
    images = dict(np.load(run_dir / "images.npz")) if (run_dir / "images.npz").exists() else {}
    return metrics, trace, images


def nan_ground_truth(build):
    """A task builder whose ground truth is all NaN: a method that reads it changes its trace."""
    def build_without_gt(run):
        task = build(run)
        task.gt = torch.full_like(task.gt, float("nan"))
        return task
    return build_without_gt


@pytest.mark.parametrize("task_kind", list(TINY_TASKS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_or_is_skipped_on_every_tiny_task(method, task_kind, tmp_path, capsys, monkeypatch):
    dataset = TINY_TASKS[task_kind]
    suite = write_suite(tmp_path, method, dataset)
    results = tmp_path / "results"
    code = main(["run", str(suite), "--results", str(results)])
    out = capsys.readouterr().out
    if "skipped" in out and f"{method} on {dataset}" in out:
        assert code == 0 and "needs" in out  # the method's own skip reason (a capability, weights, a program)
        assert not run_folders(results)
        return
    assert code == 0, out
    metrics, trace, images = stored_run(results)
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert images["final"].shape == images["gt"].shape  # the reconstruction has the task's image shape
    if METHODS[method].kind == "dip":
        recon = trace[trace["step"] >= 1]
        assert recon["step"].tolist() == list(range(1, STEPS + 1))  # exactly max_steps iterations
        assert metrics["final_step"] == STEPS and 1 <= metrics["peak_step"] <= STEPS
        assert np.isfinite(recon["loss"]).all() and np.isfinite(recon["psnr"]).all()

    # same seed, ground truth replaced by NaN: the same trace and image, bit for bit
    import benchmark.runner

    monkeypatch.setattr(benchmark.runner, "build_task", nan_ground_truth(benchmark.runner.build_task))
    again = tmp_path / "again"
    assert main(["run", str(suite), "--results", str(again)]) == 0
    metrics2, trace2, images2 = stored_run(again)
    assert metrics2["status"] == "finished", metrics2.get("traceback")
    if len(trace):
        pd.testing.assert_series_equal(trace["loss"], trace2["loss"], check_exact=True)
        assert trace["step"].tolist() == trace2["step"].tolist()
    assert np.array_equal(images["final"], images2["final"])


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_builds_tiny_and_provides_what_it_declares(name):
    from benchmark.config import resolve

    spec = DATASETS[name]
    run = resolve({"method": {"name": "degraded"}, "dataset": {"name": name, **spec.smoke_config}})
    try:
        task = spec.build(run.dataset_cfg)
    except MissingDataError as exc:
        pytest.skip(f"{name} needs data not present here: {str(exc).splitlines()[0]}")
    caps = spec.capabilities_for(run.dataset_cfg)
    assert task.gt.shape[1:] == task.x_shape and task.degraded.shape == task.gt.shape
    assert torch.isfinite(task.y).all()
    assert not hasattr(task.measurement(), "gt")
    assert ("linear" in caps) == bool(getattr(task.physics, "linear", False))
    assert ("fbp" in caps) == ("fbp" in task.extras)
    if "complex_image" in caps:
        assert task.x_shape[0] == 2 and task.x_range == "signed"
    if "linear" in caps:
        torch.manual_seed(0)
        error = task.physics.adjointness_test(img_size=task.x_shape, num_samples=4)
        assert float(error) < 1e-4, f"{name}: ‖A − (Aᵀ)ᵀ‖/‖A‖ = {float(error):.2e}"
    with torch.no_grad():
        assert task.physics.A(task.gt).shape == task.y.shape
