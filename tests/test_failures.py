"""Failure isolation: diverging runs are recorded as failed with the iteration, reason and trace
so far, the grid goes on, plain reruns leave failed runs alone and ``--retry-failed`` reruns
them; damaged run folders are named and redone; a bad results path is one line of error."""
import json
import os
import subprocess
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.config import resolve
from benchmark.runner import execute
from benchmark.store import RunStore, inspect_folder
from scoring.guards import Diverged, DivergenceGuard
from tests.grid_helpers import NET, fingerprints, suite_file


def _strict(text: str) -> dict:
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_diverging_run_fails_with_its_iteration_and_trace_the_grid_goes_on_and_is_not_retried(tmp_path, capsys):
    # the first entry's huge step drives a linear-output U-Net to NaN within a few iterations
    suite = suite_file(tmp_path, images=("coffee",), max_steps=30,
                       methods="[{name: vanilla_dip, lr: 1.0e6, net: {output: linear}}, vanilla_dip]")
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results)]) == 1
    out, err = capsys.readouterr()
    assert "failed at iteration" in out and "1 run(s) of suite grid failed" in err and "--retry-failed" in err
    states = {p.name: inspect_folder(p) for p in RunStore(results).runs("grid")}
    failed = [s for s in states.values() if s.state == "failed"]
    assert len(failed) == 1 and sum(s.state == "finished" for s in states.values()) == 1
    metrics = _strict((failed[0].path / "metrics.json").read_text())
    failure = metrics["failure"]
    assert failure["kind"] == "diverged" and "nan" in failure["reason"].lower() and failure["step"] >= 1
    assert "Diverged" in metrics["error"] and "Traceback" in metrics["traceback"]
    trace = pd.read_parquet(failed[0].path / "trace.parquet")  # the trace up to there, all finite
    assert len(trace) and trace["step"].max() < failure["step"] and np.isfinite(trace["loss"]).all()

    out_dir = tmp_path / "reports"
    assert main(["report", "--results", str(results), "--out", str(out_dir)]) == 0
    table = (out_dir / "grid" / "table.md").read_text()
    assert "## Failed runs (1)" in table and "diverged" in table and failed[0].path.name in table

    before = fingerprints(results / "grid")
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results)]) == 1  # plain rerun: the failure is left alone
    assert "1 already finished, 1 failed before (left alone; --retry-failed reruns them), 0 to run" in \
        capsys.readouterr().out
    assert fingerprints(results / "grid") == before
    assert main(["run", str(suite), "--results", str(results), "--retry-failed"]) == 1
    after = fingerprints(results / "grid")
    assert after[failed[0].path.name] != before[failed[0].path.name]  # rerun (and failed again)
    assert {k: v for k, v in after.items() if k != failed[0].path.name} == \
        {k: v for k, v in before.items() if k != failed[0].path.name}
    assert "failed   " in _status(results, capsys) and "diverged at iteration" in _status(results, capsys)


def _status(results, capsys) -> str:
    capsys.readouterr()
    assert main(["status", "--results", str(results)]) == 0
    return capsys.readouterr().out


def test_a_saturated_sigmoid_run_is_failed_as_stalled(tmp_path):
    """lr 1e3 saturates the sigmoid output after one step; the loss never moves again. Before
    the guard this run was stored as finished, far below the noisy input."""
    config = {"method": {"name": "vanilla_dip", "lr": 1e3, "net": {**_net(), "output": "sigmoid"}},
              "dataset": {"name": "denoising", "image": "coffee", "crop": 16},
              "run": {"max_steps": 40, "divergence": {"patience": 10}}}
    metrics = execute(resolve(config), "s", RunStore(tmp_path))
    assert metrics["status"] == "failed" and metrics["failure"]["kind"] == "diverged"
    assert "has not changed for 10 consecutive iterations" in metrics["failure"]["reason"]
    assert metrics["failure"]["step"] < 40  # stopped early
    config["run"]["divergence"]["stall"] = False  # the rule is what flags it
    assert execute(resolve(config), "s", RunStore(tmp_path))["status"] == "finished"


def _net() -> dict:
    import yaml

    return yaml.safe_load(NET)


class _FakeModule:
    def __init__(self):
        self.iteration, self.stage, self.reconstructing = 0, SimpleNamespace(name="reconstruct"), True


def _feed(guard, losses, **module_attributes):
    import torch

    module = _FakeModule()
    module.__dict__.update(module_attributes)
    for loss in losses:
        module.iteration += 1
        guard.on_train_batch_end(None, module, {"loss": torch.tensor(loss), "x": torch.zeros(1, 1, 2, 2)}, None, 0)
    return module.iteration


def test_the_explosion_rule_needs_the_loss_above_the_factor_for_patience_iterations():
    spikes = [1.0, 50.0, 0.5, 30.0, 20.0, 0.4] * 3  # unstable but recovering: never 3 in a row above 10×
    assert _feed(DivergenceGuard(factor=10, patience=3), spikes) == len(spikes)
    with pytest.raises(Diverged) as info:
        _feed(DivergenceGuard(factor=10, patience=3), [1.0, 0.5, 11.0, 12.0, 13.0, 0.1])
    assert info.value.step == 5 and "above 10 × its initial value" in info.value.reason
    assert _feed(DivergenceGuard(factor=None, patience=3), [1.0, 11.0, 12.0, 13.0]) == 4  # rule off
    assert _feed(DivergenceGuard(factor=10, patience=3), [1.0, 11.0, 12.0, 13.0], loss_may_grow=True) == 4
    with pytest.raises(Diverged, match="has not changed for 3"):  # the stall rule still applies to such methods
        _feed(DivergenceGuard(factor=10, patience=3), [1.0, 2.0, 2.0, 2.0, 2.0], loss_may_grow=True)
    with pytest.raises(Diverged, match="the loss is inf"):
        _feed(DivergenceGuard(), [1.0, float("inf")])


@pytest.fixture(scope="module")
def finished_suite(tmp_path_factory):
    """A finished 6-run suite (3 images × DIP + noisy input), stored once for the tests below."""
    folder = tmp_path_factory.mktemp("damaged")
    suite, results = suite_file(folder, images=("coffee", "astronaut", "camera"), max_steps=10), folder / "results"
    assert main(["run", str(suite), "--results", str(results)]) == 0
    return suite, results


def test_one_damaged_file_of_each_kind_is_named_skipped_by_report_and_redone_by_run(finished_suite, tmp_path, capsys):
    import shutil

    suite, original = finished_suite
    results = tmp_path / "results"
    shutil.copytree(original, results)
    runs = sorted(p for p in (results / "grid").iterdir() if p.is_dir() and not p.name.startswith("."))
    dip = [p for p in runs if p.name.startswith("vanilla_dip")]
    baseline = [p for p in runs if p.name.startswith("degraded")]
    metrics = baseline[0] / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])  # truncated
    trace = dip[0] / "trace.parquet"
    trace.write_bytes(trace.read_bytes()[:-30])  # truncated
    images = dip[1] / "images.npz"
    data = bytearray(images.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    images.write_bytes(bytes(data))
    (dip[2] / "config.json").unlink()  # missing
    damaged = [metrics, trace, images, dip[2] / "config.json"]
    intact = fingerprints(results / "grid")
    intact = {k: v for k, v in intact.items() if k in {p.name for p in baseline[1:]}}

    capsys.readouterr()
    out_dir = tmp_path / "reports"
    assert main(["report", "--results", str(results), "--out", str(out_dir)]) == 0
    err = capsys.readouterr().err
    assert all(str(path) in err for path in damaged), err
    table = (out_dir / "grid" / "table.md").read_text()
    assert "## Damaged run folders (4)" in table and all(str(p.parent) in table for p in damaged)
    from reports.collect import load_runs

    assert set(load_runs(results)["run_id"]) == set(intact)  # the intact runs are reported as usual

    assert "damaged  " in _status(results, capsys)
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results)]) == 0
    out, err = capsys.readouterr()
    assert all(str(path) in err for path in damaged), err
    assert "2 already finished, 4 to run" in out
    assert all(inspect_folder(p).state == "finished" for p in RunStore(results).runs("grid"))
    after = fingerprints(results / "grid")
    assert {k: after[k] for k in intact} == intact


def test_a_results_path_that_is_a_file_or_read_only_is_one_line_naming_it(finished_suite, tmp_path, capsys):
    suite, _ = finished_suite
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(blocker) in err and "is a file" in err
    assert main(["status", "--results", str(blocker)]) == 2
    assert str(blocker) in capsys.readouterr().err

    readonly = tmp_path / "ro"
    readonly.mkdir()
    with _read_only(readonly):
        capsys.readouterr()
        assert main(["run", str(suite), "--results", str(readonly)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(readonly) in err and "not writable" in err


class _read_only:
    """Make ``folder`` read-only: chmod for a normal user; root ignores permissions, so a
    read-only tmpfs is mounted on it instead (skips if that is not allowed here)."""

    def __init__(self, folder):
        self.folder, self.mounted = folder, False

    def __enter__(self):
        if os.geteuid() != 0:
            self.folder.chmod(0o555)
            return self
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(self.folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a read-only folder as root here: {done.stderr.strip()}")
        self.mounted = True
        return self

    def __exit__(self, *exc):
        if self.mounted:
            subprocess.run(["umount", str(self.folder)], check=True)
        else:
            self.folder.chmod(0o755)
