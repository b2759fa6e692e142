"""Issue 23 (reliability): diverged runs shorter than the guard's patience (or diverging in
their last ``patience`` iterations) are stored as failed; a suite name is a safe folder name;
zero on the executor command line reaches the executor and negative values are one line of
error; ``seeds`` must be a non-empty list; a stopping window longer than the run warns."""
from __future__ import annotations

import json
import sys
import types
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml

from benchmark.cli import main
from benchmark.config import ConfigError, resolve
from benchmark.runner import execute
from benchmark.store import RunStore, inspect_folder
from benchmark.suites import load_suite
from scoring.guards import Diverged, DivergenceGuard
from tests.grid_helpers import NET, suite_file


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # after conftest's fixture: these tests are tiny


# -- item 1: the end of a run judges what the guard has seen ----------------------------------------

def _module():
    return SimpleNamespace(iteration=0, stage=SimpleNamespace(name="reconstruct"), reconstructing=True)


def _run(guard, losses, **module_attributes):
    """Feed ``losses`` as iterations 1, 2, … and end the run (``on_fit_end``)."""
    module = _module()
    module.__dict__.update(module_attributes)
    for loss in losses:
        module.iteration += 1
        guard.on_train_batch_end(None, module, {"loss": torch.tensor(loss), "x": torch.zeros(1, 1, 2, 2)}, None, 0)
    guard.on_fit_end(None, module)
    return module.iteration


HEALTHY = [1.0 / k for k in range(1, 61)]  # a DIP loss: largest at the random network, then falling
EXPLODED = [1.0] + [1e10 * (1 + k / 100) for k in range(59)]  # 60 iterations, exploded from iteration 2


def test_the_end_of_a_run_judges_trailing_explosion_and_stall_streaks():
    with pytest.raises(Diverged) as info:  # never 100 in a row
        _run(DivergenceGuard(), EXPLODED)
    assert info.value.step == 60 and "above 10 × its initial value" in info.value.reason
    assert "in the last 59 iterations, up to the end of the run" in info.value.reason
    with pytest.raises(Diverged, match="in the last 50 iterations"):  # a long run diverging in its last 50
        _run(DivergenceGuard(), [1.0 / k for k in range(1, 1951)] + [50.0] * 50)
    with pytest.raises(Diverged, match="did not change in the last 58 iterations"):  # saturated, 60 iterations
        _run(DivergenceGuard(), [0.18] + [0.0547] * 59)
    with pytest.raises(Diverged, match="in the last 10 iterations"):  # the minimum streak
        _run(DivergenceGuard(), HEALTHY + [50.0] * 10)

    assert _run(DivergenceGuard(), HEALTHY) == 60
    assert _run(DivergenceGuard(), HEALTHY + [50.0] * 9) == 69  # shorter than the end's minimum streak
    assert _run(DivergenceGuard(), HEALTHY + [50.0, 0.01]) == 62  # a spike that recovered
    assert _run(DivergenceGuard(), [1.0, 20.0, 30.0, 40.0, 50.0]) == 5  # a 5-iteration run is not judged
    assert _run(DivergenceGuard(), [1.0, 0.5, 0.5, 0.5, 0.5]) == 5
    assert _run(DivergenceGuard(factor=None), EXPLODED) == 60  # growth by design: rule off
    assert _run(DivergenceGuard(), EXPLODED, loss_may_grow=True) == 60
    assert _run(DivergenceGuard(stall=False), [0.18] + [0.0547] * 59) == 60


def test_long_runs_keep_the_in_run_rules_and_messages():
    guard, module = DivergenceGuard(), _module()
    with pytest.raises(Diverged) as info:
        for loss in [1.0] + [1e10] * 200:
            module.iteration += 1
            guard.on_train_batch_end(None, module, {"loss": torch.tensor(loss)}, None, 0)
    assert info.value.step == 101 and "for 100 consecutive iterations" in info.value.reason


def _config(max_steps: int, output: str, lr: float = 1e3) -> dict:
    return {"method": {"name": "vanilla_dip", "lr": lr, "net": {**yaml.safe_load(NET), "output": output}},
            "dataset": {"name": "denoising", "image": "coffee", "crop": 16},
            "run": {"max_steps": max_steps, "trace_every": 5}}


@pytest.mark.parametrize("max_steps", [60, 100])
def test_a_run_exploding_in_fewer_iterations_than_the_patience_is_stored_as_failed(tmp_path, max_steps):
    """lr 1e3 with a linear output: the loss jumps 1e13 × in one step and stays there; it was
    stored as finished at about −100 dB final PSNR."""
    metrics = execute(resolve(_config(max_steps, "linear")), "s", RunStore(tmp_path))
    assert metrics["status"] == "failed" and metrics["failure"]["kind"] == "diverged"
    assert metrics["failure"]["step"] == max_steps and "up to the end of the run" in metrics["failure"]["reason"]
    (folder,) = RunStore(tmp_path).runs("s")
    assert inspect_folder(folder).state == "failed"
    trace = pd.read_parquet(folder / "trace.parquet")  # the whole trace, up to the last iteration
    assert trace["step"].max() == max_steps and trace["loss"].iloc[-1] > 10 * trace["loss"].iloc[0]


def test_a_short_saturated_sigmoid_run_is_stored_as_failed(tmp_path):
    metrics = execute(resolve(_config(60, "sigmoid")), "s", RunStore(tmp_path))
    assert metrics["status"] == "failed" and "did not change in the last" in metrics["failure"]["reason"]


def test_a_healthy_short_run_finishes(tmp_path):
    metrics = execute(resolve(_config(30, "sigmoid", lr=0.01)), "s", RunStore(tmp_path))
    assert metrics["status"] == "finished", metrics.get("error")


# -- item 2: a suite name is a safe folder name ------------------------------------------------------

@pytest.mark.parametrize("name", ["../../escape", "''", ".hidden", "a/b", "5", "'..'"])
def test_a_suite_name_that_is_not_a_safe_folder_name_is_one_line_of_error(tmp_path, capsys, name):
    folder = tmp_path / "deep" / "er"
    folder.mkdir(parents=True)
    suite = suite_file(folder, images=("coffee",), methods="[degraded]")
    suite.write_text(suite.read_text().replace("name: grid", f"name: {name}"))
    results = folder / "results"
    with pytest.raises(ConfigError, match="is not a valid suite name: use letters, digits"):
        load_suite(str(suite))
    assert main(["run", str(suite), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not starting with '.'" in err
    assert not (tmp_path / "deep" / "escape").exists() and not results.exists()


def test_safe_suite_names_load_and_status_refuses_a_path(tmp_path, capsys):
    suite = suite_file(tmp_path, name="my-suite_1.0", images=("coffee",), methods="[degraded]")
    assert load_suite(str(suite)).name == "my-suite_1.0"
    assert main(["status", "../../etc", "--results", str(tmp_path / "results")]) == 2
    assert "is not a valid suite name" in capsys.readouterr().err


# -- item 6: zero on the executor command line ----------------------------------------------------

class _Stop(Exception):
    pass


@pytest.fixture
def fake_ray(monkeypatch):
    """A stand-in ``ray`` on a GPU cluster that records the task options and stops there."""
    seen = {}

    def remote(**options):
        seen.update(options)
        raise _Stop

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: True
    fake.cluster_resources = lambda: {"GPU": 4, "CPU": 16}
    fake.remote = remote
    monkeypatch.setitem(sys.modules, "ray", fake)
    return seen


def test_zero_executor_options_reach_ray(tmp_path, fake_ray):
    suite = suite_file(tmp_path, images=("coffee",), methods="[degraded]")
    with pytest.raises(_Stop):
        main(["run", str(suite), "--results", str(tmp_path / "r"), "--executor", "ray", "--max-retries", "0",
              "--gpus-per-run", "0"])
    assert fake_ray["max_retries"] == 0 and fake_ray["num_gpus"] == 0  # not the defaults 1 and 1 (GPU cluster)


@pytest.mark.parametrize("args, message", [
    (["--max-retries", "-1"], "--max-retries -1: must be an integer >= 0"),
    (["--gpus-per-run", "-1"], "--gpus-per-run -1.0: must be a number >= 0"),
    (["--gpus-per-run", "nan"], "--gpus-per-run nan: must be a number >= 0"),
    (["--cpus-per-run", "0"], "--cpus-per-run 0: must be an integer >= 1"),
    (["--cpus-per-run", "-2"], "--cpus-per-run -2: must be an integer >= 1"),
])
def test_bad_executor_numbers_are_one_line_of_error(tmp_path, capsys, fake_ray, args, message):
    suite = suite_file(tmp_path, images=("coffee",), methods="[degraded]")
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--executor", "ray", *args]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n" and not fake_ray


def test_bad_suite_resources_are_one_line_of_error(tmp_path, capsys, fake_ray):
    suite = suite_file(tmp_path, images=("coffee",), methods="[degraded]")
    suite.write_text("resources: {max_retries: -1}\n" + suite.read_text())
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--executor", "ray"]) == 2
    assert capsys.readouterr().err == "error: suite resources: max_retries -1: must be an integer >= 0\n"


# -- item 7 (part): seeds, stopping windows --------------------------------------------------------

@pytest.mark.parametrize("seeds", ["5", "[]", "[-1]", "[a]", "[true]", "null", "[4294967296]"])
def test_seeds_must_be_a_non_empty_list_of_non_negative_integers(tmp_path, capsys, seeds):
    suite = suite_file(tmp_path, images=("coffee",))
    suite.write_text(suite.read_text().replace("seeds: [0]", f"seeds: {seeds}"))
    with pytest.raises(ConfigError, match="seeds must be a non-empty list of integers in"):
        load_suite(str(suite))
    assert main(["run", str(suite), "--results", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_a_stopping_window_longer_than_the_run_warns(tmp_path, capsys):
    suite = suite_file(tmp_path, images=("coffee", "astronaut"), max_steps=20)
    capsys.readouterr()
    load_suite(str(suite))
    assert "warning" not in capsys.readouterr().err  # window 5 ≤ 20 iterations
    runs = load_suite(str(suite), {"run.stopping.running_variance.window": 50}).runs
    err = capsys.readouterr().err
    assert len(runs) == 4 and err.count("\n") == 1  # loaded (a warning, not an error), one line per setting
    assert "warning:" in err and "run.stopping.running_variance.window = 50 is longer than run.max_steps = 20" in err
    assert "(2 run(s))" in err  # the DIP runs only: the baseline has no stopping rule


# -- item 5: a signal after a run's computation has ended waits until the run is stored -----------

@pytest.mark.parametrize("method", ["vanilla_dip", "degraded"])
def test_a_signal_during_the_store_write_keeps_the_computed_run(tmp_path, monkeypatch, method):
    """SIGTERM while the run folder is being filled (the slow part of the write: parquet, npz,
    PNGs): the run is written whole, then the process stops (it threw the run away before)."""
    import os
    import signal

    from benchmark.interrupts import Interrupted, handle_interrupts

    fill, sent = RunStore._fill, []

    def fill_then_signal(self, tmp, *args):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        sent.append(True)
        return fill(self, tmp, *args)

    monkeypatch.setattr(RunStore, "_fill", fill_then_signal)
    config = _config(20, "sigmoid", lr=0.01) if method == "vanilla_dip" else \
        {"method": {"name": "degraded"}, "dataset": {"name": "denoising", "image": "coffee", "crop": 16}}
    with pytest.raises(Interrupted) as stopped, handle_interrupts():
        execute(resolve(config), "s", RunStore(tmp_path))
    assert sent and stopped.value.exit_code == 128 + signal.SIGTERM
    (folder,) = RunStore(tmp_path).runs("s")
    assert inspect_folder(folder).state == "finished"


# -- item 4: signals outside `run`: every command exits 128 + signal with the message and cleanup --

@pytest.mark.slow
def test_sigterm_to_reconstruct_exits_143_says_so_and_leaves_nothing(tmp_path):
    import signal

    from tests.grid_helpers import cli, hidden_run_folders, no_claims, progress_of, wait_for

    results, out = tmp_path / "results", tmp_path / "recon.png"
    proc = cli("reconstruct", "--method", "vanilla_dip", "--dataset", "denoising", "--set", "dataset.crop=16",
               "--set", f"method.net={NET}", "--set", "run.max_steps=5000", "--out", str(out), "--results", str(results),
               env={"OMP_NUM_THREADS": "1"})
    wait_for(lambda: progress_of(results / "reconstruct", "vanilla_dip") >= 1, 120, "the run to be under way", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "Run the same command to resume" in err
    suite_dir = results / "reconstruct"
    assert RunStore(results).runs("reconstruct") == [] and not out.exists()
    assert hidden_run_folders(suite_dir) == [] and no_claims(suite_dir)


@pytest.mark.slow
def test_sigterm_to_a_ray_grid_exits_143_says_which_runs_are_left_and_leaves_no_claims(tmp_path):
    """It died with Ray's own handler (exit 1 or SIGABRT, a stack dump, 4 stale claim/progress files)."""
    import signal

    from tests.grid_helpers import cli, hidden_run_folders, no_claims, progress_of, wait_for

    suite, results = suite_file(tmp_path, images=("coffee",), max_steps=5000), tmp_path / "results"
    proc = cli("run", str(suite), "--results", str(results), "--executor", "ray", env={"OMP_NUM_THREADS": "1"})
    wait_for(lambda: progress_of(results / "grid", "vanilla_dip") >= 5, 240, "the DIP run to be under way", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "not done: " in err and "SIGTERM received" not in err
    assert hidden_run_folders(results / "grid") == [] and no_claims(results / "grid")


# -- item 8: orphaned claims ---------------------------------------------------------------------

def test_an_empty_claim_file_blocks_its_run_for_seconds_not_the_whole_lease(tmp_path):
    import os
    import time

    from benchmark.locks import UNREADABLE_CLAIM_STALE_S, Claim, Holder, claim_path, try_claim

    path = claim_path(tmp_path, "m__d__0123456789")
    path.parent.mkdir(parents=True)
    path.write_text("")  # its writer died between create and write
    assert isinstance(try_claim(tmp_path, "m__d__0123456789", lease=120), Holder)  # a moment old: still held
    old = time.time() - 2 * UNREADABLE_CLAIM_STALE_S
    os.utime(path, (old, old))
    claim = try_claim(tmp_path, "m__d__0123456789", lease=120)
    assert isinstance(claim, Claim)
    claim.release()


def test_a_run_held_by_an_invocation_that_dies_is_taken_over_before_exiting(tmp_path, capsys):
    """The survivor of two invocations used to leave the run it planned as held undone and exit 0."""
    import subprocess
    import threading

    from benchmark.locks import claim_path, live_holder
    from tests.grid_helpers import PROJECT_ROOT, wait_for

    suite = suite_file(tmp_path, images=("coffee",), methods="[degraded]")
    results = tmp_path / "results"
    (run,) = load_suite(str(suite)).runs
    suite_dir = results / "grid"
    holder = subprocess.Popen(  # another invocation: claims the run, works on it for 2 s, then is killed
        [sys.executable, "-c", "import sys, time, os; from pathlib import Path; from benchmark.locks import try_claim; "
         f"try_claim(Path(sys.argv[1]), '{run.run_id}'); time.sleep(2); os._exit(9)", str(suite_dir)],
        cwd=PROJECT_ROOT)
    threading.Thread(target=holder.wait, daemon=True).start()  # reaped when it dies, like a killed shell job
    wait_for(lambda: claim_path(suite_dir, run.run_id).exists() and live_holder(suite_dir, run.run_id), 30,
             "the other invocation's claim", holder)
    assert main(["run", str(suite), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "waiting for 1 run(s) held by other invocations" in out and "taking over 1 run(s)" in out
    holder.wait(10)
    assert [inspect_folder(p).state for p in RunStore(results).runs("grid")] == ["finished"]


# -- item 3: a run that cannot fit is refused before it allocates; the grid goes on ---------------

def test_an_absurd_size_is_refused_with_the_estimate_and_the_limit_and_the_grid_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIPBENCH_MEMORY_LIMIT_GB", "2")
    suite = tmp_path / "big.yaml"
    suite.write_text("name: big\nmethods: [fbp, vanilla_dip]\ndatasets: [ct_calibration]\nseeds: [0]\n"
                     f"set:\n  method.net: {NET}\n  run.max_steps: 5\n  dataset.n_angles: 8\n"
                     "grid:\n  dataset.image_size: [16, 100000]\n")
    assert main(["run", str(suite), "--results", str(tmp_path), "--dry-run"]) == 1  # reported, nothing built
    assert "too large: this run needs at least" in capsys.readouterr().out
    assert main(["run", str(suite), "--results", str(tmp_path)]) == 1  # the big runs failed, the small ones ran
    states = {inspect_folder(p).state for p in RunStore(tmp_path).runs("big")}
    assert states == {"finished", "failed"}
    stored = [json.loads((p / "metrics.json").read_text()) for p in RunStore(tmp_path).runs("big")]
    failed = [m for m in stored if m["status"] == "failed"]
    assert len(failed) == 2 and all(m["failure"]["kind"] == "out_of_memory" for m in failed)
    assert all("needs at least" in m["error"] and "2 GB (DIPBENCH_MEMORY_LIMIT_GB)" in m["error"] for m in failed)


def test_the_memory_estimate_counts_the_grid_the_widest_layer_and_the_ct_matrix():
    """Three copies (activation, its gradient, one working copy) of the widest layer on the grid."""
    from benchmark.memory import estimate_bytes

    run = resolve({"method": {"name": "vanilla_dip", "net": yaml.safe_load(NET)},
                   "dataset": {"name": "denoising", "image": "coffee", "crop": 64}})
    net = yaml.safe_load(NET)
    assert estimate_bytes(run) == 64 * 64 * net["channels"] * 4 * 3
    ct = resolve({"method": {"name": "vanilla_dip"}, "dataset": {"name": "ct_calibration", "image_size": 64}})
    assert estimate_bytes(ct) > 64 * 64 * 128 * 4 * 3  # plus the system matrix


# -- item 7: values that passed validation and then failed every run are one line before anything runs

@pytest.mark.parametrize("value, message", [
    ("dataset.crop=4000", "is larger than the image"),
    ("dataset.crop_at=[5000,5000]", "leaves the image"),
    ("dataset.image=nonexistent", "unknown scikit-image photo 'nonexistent'; valid:"),
    ("run.seed=99999999999", "run.seed = 99999999999 is out of range"),
    ("method.lr=.inf", "method.lr = inf is not a finite number"),
    ("dataset.sigma=.inf", "dataset.sigma = inf is not a finite number"),
    ("run.accelerator=gpu", "has no CUDA GPU"),
])
def test_values_that_failed_every_run_are_one_line_before_anything_runs(tmp_path, capsys, value, message):
    if value == "run.accelerator=gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    suite = suite_file(tmp_path, images=("coffee",))
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--set", value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_report_into_an_unwritable_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", "--results", str(tmp_path), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot write there" in err and err.count("\n") == 1


# -- item 9: a sign-flipped sinogram, a folder for a file, resolved values stored -----------------

def test_a_sign_flipped_sinogram_a_folder_for_a_file_and_stored_defaults(tmp_path):
    import numpy as np

    from tests.test_measurement_files import build, write_ct_parallel

    path = write_ct_parallel(tmp_path / "ok")
    task, run = build("measurement_ct", file=str(path))
    assert run.to_dict()["dataset"]["normalise"] is True and run.to_dict()["dataset"]["projector"] == "strip"
    assert resolve({"method": {"name": "degraded"}, "dataset": run.to_dict()["dataset"]}).run_id == run.run_id
    flipped = write_ct_parallel(tmp_path / "flipped")
    np.save(flipped, -np.load(flipped))
    with pytest.raises(ConfigError, match="the sign is flipped"):
        build("measurement_ct", file=str(flipped))
    with pytest.raises(ConfigError, match="is a folder; give the file inside it"):
        build("measurement_ct", file=str(tmp_path / "ok"), geometry="parallel", image_size=32, detector_spacing=0.5)
