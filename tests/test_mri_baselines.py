"""Classical MRI references (CG-SENSE, BART pics) and vanilla DIP end to end on a tiny crop."""
import pytest

from benchmark.config import resolve
from benchmark.runner import execute
from benchmark.store import RunStore
from datamodules.sources.bart_io import bart_executable
from datamodules.tasks.mri import FastMRIKneeConfig, build_mri
from methods.registry import load_all

requires_bart = pytest.mark.skipif(bart_executable() is None, reason="BART not installed (apt-get install bart)")


@pytest.fixture(scope="module")
def task():
    return build_mri(FastMRIKneeConfig(crop=48, coils=8))


def baseline(name, task, **settings):
    spec = load_all()[name]
    assert spec.kind == "baseline"
    return spec.cls(spec.config(**settings), task.measurement(), oracle=task.psnr)


def test_cg_sense_beats_zero_filled(task):
    method = baseline("cg_sense", task)
    x = method.reconstruct()
    assert x.shape == task.gt.shape
    assert task.psnr(x) > task.psnr(task.degraded) + 2
    assert method.info == {"cg_iterations": 10, "tikhonov": 0.0}


def test_mri_baselines_are_skipped_on_other_tasks_before_running():
    from benchmark.config import IncompatibleError, resolve

    for name in ("cg_sense", "bart_pics"):
        with pytest.raises(IncompatibleError, match="needs mri_multicoil"):
            resolve({"method": {"name": name}, "dataset": {"name": "denoising"}})


@requires_bart
def test_bart_pics_l1_wavelet_beats_cg_sense(task):
    pics = baseline("bart_pics", task)
    x = pics.reconstruct()
    assert x.shape == task.gt.shape and x.dtype == task.gt.dtype
    assert task.psnr(x) > task.psnr(baseline("cg_sense", task).reconstruct())
    assert pics.info["bart_command"].startswith("pics -S -R W:3:0:0.01")


@pytest.mark.slow
def test_vanilla_dip_peak_beats_zero_filled_end_to_end(tmp_path):
    """Runner + vanilla DIP (narrow 3-scale U-Net, 300 Adam steps) on a 48² crop: ~6 s on 2 idle cores."""
    dataset = {"name": "fastmri_knee", "crop": 48, "coils": 8}
    run = resolve({
        "method": {"name": "vanilla_dip", "lr": 0.01, "net": {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}},
        "dataset": dataset,
        "run": {"max_steps": 300, "trace_every": 10, "stopping": {"running_variance": {"window": 20, "patience": 100}},
                "accelerator": "cpu"},
    })
    metrics = execute(run, "mri", RunStore(tmp_path))
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 2
    assert "semi-synthetic" in metrics["provenance"] and "max |x_GT|" in metrics["metric"]
    cg = execute(resolve({"method": {"name": "cg_sense"}, "dataset": dataset}), "mri", RunStore(tmp_path))
    assert cg["status"] == "finished" and cg["final_psnr"] > cg["degraded_psnr"]
