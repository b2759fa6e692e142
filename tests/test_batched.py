"""Batched runs (benchmark/batched.py, methods/batched.py; docs/conventions.md §19): runs that
differ only in seed, optimised together, are stored as their own runs whose traces equal the
solo runs' within the stated tolerance; unbatchable methods run alone with their reason; a
failed batch stores every member's outcome; the step output is parsed once per step."""
import json

import numpy as np
import pandas as pd
import pytest

from benchmark.batched import group_runs, run_batch
from benchmark.config import ConfigError, resolve
from benchmark.runner import execute
from benchmark.store import RunStore
from benchmark.suites import load_suite
from core import keys
from methods.batched import unbatchable_reason
from methods.registry import METHODS

STEPS = 20
PSNR_TOL_DB = 1e-3  # docs/conventions.md §19: float32 rounding of the batched kernels, first 20 iterations


def _run(method: str, seed: int, **method_cfg):
    return resolve({"method": {"name": method, "lr": 0.01, **method_cfg,
                               "net": {"name": "unet", "scales": 2, "channels": 8, "skip_channels": [0, 4]}},
                    "dataset": {"name": "denoising", "crop": 32},
                    "run": {"max_steps": STEPS, "seed": seed, "trace_every": 1, "save_images": False,
                            "stopping": {"running_variance": {"window": 5, "patience": 5}, "es_emv": {"burn_in": 2}}}})


def _config(run) -> dict:
    return {"run_id": run.run_id, **run.to_dict()}


def _stored(results, run) -> tuple[dict, pd.DataFrame]:
    folder = RunStore(results).run_dir("s", run)
    return json.loads((folder / "metrics.json").read_text()), pd.read_parquet(folder / "trace.parquet")


def _solo_and_batched(tmp_path, method: str, seeds) -> list:
    """Runs of ``method`` for ``seeds``, each stored alone under solo/ and together under batch/ (all finished)."""
    runs = [_run(method, seed) for seed in seeds]
    for run in runs:
        execute(run, "s", RunStore(tmp_path / "solo"))
    outcomes = run_batch([_config(r) for r in runs], "s", str(tmp_path / "batch"))
    assert [o.status for o in outcomes] == ["finished"] * len(runs)
    return runs


def test_batched_vanilla_dip_traces_equal_the_solo_runs_within_tolerance(tmp_path):
    runs = _solo_and_batched(tmp_path, "vanilla_dip", (0, 1, 2))
    for run in runs:
        solo_metrics, solo = _stored(tmp_path / "solo", run)
        metrics, batched = _stored(tmp_path / "batch", run)
        assert metrics["batch"]["mode"] == "vmap" and metrics["batch"]["size"] == 3
        assert list(batched.columns) == list(solo.columns) and len(batched) == len(solo) == STEPS
        assert (batched["step"] == solo["step"]).all() and (batched["stage"] == solo["stage"]).all()
        assert np.abs(batched["psnr"] - solo["psnr"]).max() <= PSNR_TOL_DB
        np.testing.assert_allclose(batched["loss"], solo["loss"], rtol=1e-4)
        # every per-run callback ran on the member: stopping rules, EMA, named metrics all there
        assert {k for k in solo_metrics if k.startswith("es.")} == {k for k in metrics if k.startswith("es.")}
        assert abs(metrics["ema_final_psnr"] - solo_metrics["ema_final_psnr"]) <= PSNR_TOL_DB
    seeds = {_stored(tmp_path / "batch", r)[1]["psnr"].iloc[-1] for r in runs}
    assert len(seeds) == 3  # the members really are different runs


SMOKE_STEPS = 12  # past the first state update of every method's smoke settings (dip_tv_hqs: N_sub = 2)
BATCHABLE = sorted(name for name, spec in METHODS.items()
                   if unbatchable_reason(spec.cls, spec.config(**(spec.smoke_config or {}))) is None)


@pytest.mark.parametrize("method", BATCHABLE)
def test_every_batchable_method_batches_or_falls_back_and_matches_its_solo_runs(tmp_path, method):
    """A method that does not declare itself unbatchable either batches with the solo trace or
    falls back to solo runs at its first iteration; it never fails later or silently differs
    (a method that keeps state across iterations loses it inside a vmapped step)."""
    spec = METHODS[method]
    runs = [resolve({"method": {"name": method, **(spec.smoke_config or {})},
                     "dataset": {"name": "denoising", "crop": 32},
                     "run": {"max_steps": SMOKE_STEPS, "seed": seed, "trace_every": 1, "save_images": False}})
            for seed in (0, 1)]
    for run in runs:
        execute(run, "s", RunStore(tmp_path / "solo"))
    outcomes = run_batch([_config(r) for r in runs], "s", str(tmp_path / "batch"))
    assert [o.status for o in outcomes] == ["finished"] * 2, _stored(tmp_path / "batch", runs[0])[0].get("error")
    for run in runs:
        metrics, batched = _stored(tmp_path / "batch", run)
        solo = _stored(tmp_path / "solo", run)[1]
        assert len(batched) == len(solo) == SMOKE_STEPS
        tolerance = 0.1 if metrics["batch"]["mode"] == "vmap" else 0.0  # §19: rounding over 12 iterations
        assert np.abs(batched["psnr"] - solo["psnr"]).max() <= tolerance, metrics["batch"]


def test_dip_tv_hqs_is_declared_unbatchable_for_its_splitting_state():
    spec = METHODS["dip_tv_hqs"]
    assert "splitting variable u" in unbatchable_reason(spec.cls, spec.config())


def test_manual_optimisation_method_is_declared_unbatchable_and_runs_alone_bitwise(tmp_path):
    spec = METHODS["dip_denoiser_hqs"]
    assert "manual optimisation" in unbatchable_reason(spec.cls, spec.config())
    runs = _solo_and_batched(tmp_path, "dip_denoiser_hqs", (0, 1))
    for run in runs:
        metrics, batched = _stored(tmp_path / "batch", run)
        assert metrics["batch"]["mode"] == "solo" and "manual optimisation" in metrics["batch"]["reason"]
        pd.testing.assert_frame_equal(batched.drop(columns=keys.WALL_TIME),  # a clock: not compared
                                      _stored(tmp_path / "solo", run)[1].drop(columns=keys.WALL_TIME))


def test_a_failing_batch_stores_every_members_failure_with_its_trace(tmp_path, monkeypatch):
    from methods import batched

    original = batched.BatchedStep.__call__

    def failing(self, ys, batch_idx):
        if batch_idx == 4:
            raise RuntimeError("simulated failure of the batched step")
        return original(self, ys, batch_idx)

    monkeypatch.setattr(batched.BatchedStep, "__call__", failing)
    runs = [_run("vanilla_dip", seed) for seed in (0, 1)]
    outcomes = run_batch([_config(r) for r in runs], "s", str(tmp_path))
    assert [o.status for o in outcomes] == ["failed"] * 2
    for run in runs:
        metrics, trace = _stored(tmp_path, run)
        assert "simulated failure" in metrics["error"]
        assert list(trace["step"]) == [1, 2, 3, 4]  # the iterations before the failure


def test_group_runs_batches_only_runs_that_differ_in_seed():
    a0, a1, b0 = _run("vanilla_dip", 0), _run("vanilla_dip", 1), _run("vanilla_dip", 0, lr=0.02)
    base = resolve({"method": {"name": "degraded"}, "dataset": {"name": "denoising", "crop": 32}})
    groups = group_runs([a0, b0, base, a1], "seeds")
    assert [[r.run_id for r in g] for g in groups] == [[a0.run_id, a1.run_id], [b0.run_id], [base.run_id]]
    assert [len(g) for g in group_runs([a0, a1], "seeds", max_size=1)] == [1, 1]
    assert [len(g) for g in group_runs([a0, a1], None)] == [1, 1]


def test_suite_batch_key_is_validated(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("methods: [vanilla_dip]\ndatasets: [denoising]\nbatch: everything\n")
    with pytest.raises(ConfigError, match="batch must be 'seeds'"):
        load_suite(str(path))


def test_callbacks_parse_the_step_output_once_per_step(tmp_path, monkeypatch):
    from scoring import callbacks

    calls = []
    original = callbacks.StepOutput.parse.__func__

    def counting(cls, outputs, x_shape):
        calls.append(1)
        return original(cls, outputs, x_shape)

    monkeypatch.setattr(callbacks.StepOutput, "parse", classmethod(counting))
    execute(_run("vanilla_dip", 0), "s", RunStore(tmp_path))
    assert len(calls) == STEPS


def test_suite_with_batch_seeds_runs_each_seed_group_in_one_batch_through_the_local_executor(tmp_path):
    from benchmark.cli import main
    from tests.grid_helpers import suite_file

    suite = suite_file(tmp_path, images=("coffee",), max_steps=10, extra="batch: seeds\n")
    suite.write_text(suite.read_text().replace("seeds: [0]", "seeds: [0, 1, 2]"))
    assert main(["run", str(suite), "--results", str(tmp_path / "r")]) == 0
    stored = [json.loads((p / "metrics.json").read_text()) for p in RunStore(tmp_path / "r").runs("grid")]
    dip = [m for m in stored if m["method"] == "vanilla_dip"]
    assert len(dip) == 3 and all(m["status"] == "finished" for m in stored)
    assert all(m["batch"]["mode"] == "vmap" and sorted(m["batch"]["seeds"]) == [0, 1, 2] for m in dip)
    assert all("batch" not in m for m in stored if m["method"] == "degraded")
