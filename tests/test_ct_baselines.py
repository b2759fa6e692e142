"""Classical CT baselines: FBP and TV (FISTA, λ swept against the ground truth)."""
import pytest
import torch

from benchmark.config import ConfigError, IncompatibleError, resolve
from benchmark.runner import execute
from benchmark.store import RunStore
from datamodules.tasks.ct import AAPMConfig, build_aapm
from methods.baselines.fbp import FBP, FBPConfig
from methods.baselines.tv import TV, TVConfig
from methods.registry import load_all


@pytest.fixture
def ct_task(tmp_path, monkeypatch):
    """A real head CT (embedded), 32², 8 parallel views with a little Poisson noise."""
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    return build_aapm(AAPMConfig(image_size=32, n_views=8, n_total_views=64, poisson_i0=1e5))


def test_ct_baselines_are_registered():
    methods = load_all()
    assert methods["fbp"].cls is FBP and methods["tv"].cls is TV
    assert methods["fbp"].kind == methods["tv"].kind == "baseline"


def test_fbp_returns_the_task_fbp_image(ct_task):
    baseline = FBP(FBPConfig(), ct_task.measurement())
    assert torch.equal(baseline.reconstruct(), ct_task.extras["fbp"])
    assert baseline.info["fbp_method"] == ct_task.info["fbp_method"]
    with pytest.raises(IncompatibleError, match="needs fbp"):
        resolve({"method": {"name": "fbp"}, "dataset": {"name": "denoising"}})


def test_tv_sweep_beats_fbp_and_records_the_choice(ct_task):
    sweep = [1e-4, 1e-3, 1e-2]
    baseline = TV(TVConfig(lam_sweep=sweep, iterations=80, trace_every=10), ct_task.measurement(), oracle=ct_task.psnr)
    x = baseline.reconstruct()
    psnr = ct_task.psnr(x)
    assert psnr > ct_task.psnr(ct_task.degraded) + 1
    info = baseline.info
    assert info["tv_lambda_swept"] == sweep and len(info["tv_sweep_psnr"]) == 3
    assert info["tv_lambda"] in sweep and max(info["tv_sweep_psnr"]) == pytest.approx(psnr)
    assert info["tv_lambda_tuning"].startswith("oracle")
    with pytest.raises(ValueError, match="needs the ground truth"):
        TV(TVConfig(lam_sweep=sweep), ct_task.measurement()).reconstruct()  # no oracle, no sweep
    steps = [row["step"] for row in baseline.trace]
    assert steps == list(range(10, 81, 10)) and {"step", "loss", "psnr"} <= set(baseline.trace[0])
    losses = [row["loss"] for row in baseline.trace]
    assert losses[-1] < losses[0]
    assert baseline.trace[-1]["psnr"] == pytest.approx(psnr)


def test_tv_with_a_fixed_weight_runs_once_and_more_weight_means_less_variation(ct_task):
    tv = lambda lam: TV(TVConfig(lam=lam, iterations=60, trace_every=20, init="zero"), ct_task.measurement())  # noqa: E731
    smooth, rough = tv(1e-1), tv(1e-5)
    xs, xr = smooth.reconstruct(), rough.reconstruct()
    assert smooth.info["tv_lambda_swept"] == [1e-1]
    total_variation = lambda x: float(x.diff(dim=-1).abs().sum() + x.diff(dim=-2).abs().sum())  # noqa: E731
    assert total_variation(xs) < 0.5 * total_variation(xr)
    with pytest.raises(ConfigError, match="fbp, zero"):
        resolve({"method": {"name": "tv", "init": "adjoint"}, "dataset": {"name": "aapm"}})


@pytest.mark.slow
def test_vanilla_dip_on_a_tiny_walnut_beats_fbp(tmp_path, monkeypatch):
    """End to end through the runner: DIP (FBP input, small U-Net) on the 32² simulated walnut."""
    from benchmark.config import resolve
    from benchmark.runner import execute
    from benchmark.store import RunStore
    from tests.conftest import shared_data

    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    dataset = {"name": "walnut", "root": str(shared_data("walnut")), "image_size": 32}
    run = {"max_steps": 200, "trace_every": 10, "stopping": {"running_variance": {"window": 10, "patience": 50}},
           "save_images": False}
    method = {"name": "vanilla_dip", "lr": 0.01, "input": "fbp", "net": {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}}
    metrics = execute(resolve({"method": method, "dataset": dataset, "run": run}), "ct", RunStore(tmp_path))
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert "simulated on real slice" in metrics["provenance"]
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 0.5  # degraded = the FBP (LSQR) image


@pytest.mark.slow
def test_vanilla_dip_runs_on_sparse_view_aapm_and_beats_fbp(tmp_path, monkeypatch):
    """End to end through the runner on the embedded real head CT (32², 18 of 180 views)."""
    from benchmark.config import resolve
    from benchmark.runner import execute
    from benchmark.store import RunStore

    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    dataset = {"name": "aapm", "image_size": 32}
    run = {"max_steps": 200, "trace_every": 10, "stopping": {"running_variance": {"window": 10, "patience": 50}},
           "save_images": False}
    method = {"name": "vanilla_dip", "lr": 0.01, "input": "fbp", "net": {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}}
    metrics = execute(resolve({"method": method, "dataset": dataset, "run": run}), "ct", RunStore(tmp_path))
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert metrics["peak_psnr"] > metrics["degraded_psnr"]  # degraded = ASTRA FBP of 18 views


def test_the_tv_baselines_natural_image_sweep_brackets_the_oracle_lambda_on_denoising(tmp_path):
    """methods/presets/natural/tv.yaml: on natural images the TV baseline sweeps a natural range (the CT one put
    the best λ at its upper edge and left TV 4–10 dB below its tuned value); the best λ is inside the sweep and TV
    clearly beats the noisy image."""
    run = resolve({"method": {"name": "tv", "iterations": 100}, "dataset": {"name": "denoising", "crop": 32, "sigma": 25}})
    assert "calibrated" in run.to_dict()["method"]["preset"]["lam_sweep"]
    metrics = execute(run, "s", RunStore(tmp_path))
    swept = metrics["tv_lambda_swept"]
    assert swept[0] < metrics["tv_lambda"] < swept[-1] and "tv_warning" not in metrics
    assert metrics["final_psnr"] > metrics["degraded_psnr"] + 3
