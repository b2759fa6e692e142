"""run.precision (benchmark/precision.py; docs/conventions.md §20): choices that cannot hold
the 0.1 dB trace tolerance are refused with the measured reason, ``auto`` resolves per device
and is recorded in the run, and the measurement isolates the parts of a step."""
import json

import pytest

from benchmark.config import ConfigError, resolve
from benchmark.precision import auto_precision
from benchmark.precision_drift import step_errors
from benchmark.runner import execute
from benchmark.store import RunStore

NET = {"name": "unet", "scales": 2, "channels": 8, "skip_channels": [0, 4]}


def _config(precision: str) -> dict:
    return {"method": {"name": "vanilla_dip", "net": NET}, "dataset": {"name": "denoising", "crop": 32},
            "run": {"max_steps": 5, "precision": precision, "save_images": False, "accelerator": "cpu"}}


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "bf16-true"])
def test_mixed_and_half_precisions_are_refused_with_the_measured_reason(precision):
    with pytest.raises(ConfigError, match=r"run.precision: .*0.1 dB.*network's convolutions and gradients"):
        resolve(_config(precision))


def test_auto_precision_is_float32_on_cpu_and_recorded_in_the_run(tmp_path):
    assert auto_precision("cpu")[0] == "32-true"
    run = resolve(_config("auto"))
    execute(run, "s", RunStore(tmp_path))
    metrics = json.loads((RunStore(tmp_path).run_dir("s", run) / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert metrics["precision"]["requested"] == "auto" and metrics["precision"]["used"] == "32-true"
    assert "cpu" in metrics["precision"]["reason"]


def test_step_errors_isolate_the_network_as_the_bf16_part_on_denoising():
    errors = step_errors({"name": "denoising", "crop": 32})
    # the identity operator, its data-term sum and the mse reduction are float32 under CPU autocast
    assert errors["operator A(x) under autocast"] == 0.0
    assert errors["loss reduction (mse under autocast)"] == 0.0
    assert 0 < errors["network output f(z)"] < errors["network gradient"]
