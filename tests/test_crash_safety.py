"""Crash safety of the run store: a suite killed (SIGKILL) or stopped (SIGTERM) at any moment
resumes with the same command, never redoes or touches finished runs, never keeps anything
half-written, and leaves no temporary folder behind. Slow: each test starts the CLI in a
subprocess (about 10 s of CPU each)."""
import json
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.config import resolve
from benchmark.store import RunStore, dumps, inspect_folder
from tests.grid_helpers import cli, fingerprints, hidden_run_folders, no_claims, progress_of, suite_file, wait_for

pytestmark = pytest.mark.slow


def _interrupt_mid_run(tmp_path, sig):
    """Start a 2-run suite (the noisy-input baseline first, then a DIP run of 600 iterations),
    send ``sig`` once the DIP run is under way; returns (process, suite file, results folder,
    the fingerprints of the runs finished before the signal)."""
    suite, results = suite_file(tmp_path, images=("coffee",), max_steps=600), tmp_path / "results"
    suite_dir = results / "grid"
    proc = cli("run", str(suite), "--results", str(results), env={"OMP_NUM_THREADS": "1"})
    wait_for(lambda: progress_of(suite_dir, "vanilla_dip") >= 5, 180, "the DIP run to be under way", proc)
    before = fingerprints(suite_dir)
    proc.send_signal(sig)
    proc.wait(60)
    return proc, suite, results, before


def test_sigkill_mid_run_then_rerun_finishes_every_run_exactly_once(tmp_path, capsys):
    proc, suite, results, before = _interrupt_mid_run(tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    suite_dir = results / "grid"
    assert len(before) == 1 and all(r.startswith("degraded") for r in before)  # the baseline was done
    # the interrupted run holds a claim of a dead process: no live holder, nothing stored for it
    assert not any(p.name.startswith("vanilla_dip") for p in suite_dir.iterdir() if not p.name.startswith("."))

    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "1 already finished, 1 to run" in out
    after = fingerprints(suite_dir)
    assert {r: after[r] for r in before} == before  # finished runs untouched (mtime and checksum of every file)
    dip = [r for r in after if r.startswith("vanilla_dip")]
    assert len(dip) == 1 and inspect_folder(suite_dir / dip[0]).state == "finished"
    assert out.count(dip[0]) == 1  # the interrupted run was redone, once
    assert hidden_run_folders(suite_dir) == [] and no_claims(suite_dir)
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results)]) == 0  # and nothing is redone after that
    assert "2 already finished, 0 to run" in capsys.readouterr().out


def test_sigterm_mid_grid_exits_nonzero_says_what_is_left_and_rerun_completes(tmp_path, capsys):
    proc, suite, results, before = _interrupt_mid_run(tmp_path, signal.SIGTERM)
    out, err = proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "not done: 1" in err and "Run the same command to resume" in err
    suite_dir = results / "grid"
    assert fingerprints(suite_dir) == before  # nothing new, nothing half-written, finished runs untouched
    assert hidden_run_folders(suite_dir) == [] and no_claims(suite_dir)
    assert main(["run", str(suite), "--results", str(results)]) == 0
    assert "1 already finished, 1 to run" in capsys.readouterr().out
    assert fingerprints(suite_dir).items() >= before.items()
    assert [inspect_folder(p).state for p in RunStore(results).runs("grid")] == ["finished", "finished"]


TINY = {"method": {"name": "degraded"}, "dataset": {"name": "denoising", "image": "coffee", "crop": 16}}


def test_write_replaces_a_stored_run_atomically_and_strict_json_round_trips(tmp_path):
    store, run = RunStore(tmp_path), resolve(TINY)
    trace = pd.DataFrame({"step": [1, 2], "loss": [0.5, float("nan")]})
    store.write("s", run, {"status": "failed", "error": "x", "value": float("nan"), "big": float("-inf"),
                           "arr": np.float32(1.5)}, trace, {"final": np.zeros((1, 4, 4), np.float32)})
    text = (tmp_path / "s" / run.run_id / "metrics.json").read_text()

    def strict(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    metrics = json.loads(text, parse_constant=strict)  # strict JSON: NaN / -Infinity are written as null
    assert metrics["value"] is None and metrics["big"] is None and metrics["arr"] == 1.5
    assert store.inspect("s", run).state == "failed"
    store.write("s", run, {"status": "finished", "peak_psnr": 20.0}, trace, {})
    assert store.inspect("s", run).state == "finished"
    assert hidden_run_folders(tmp_path / "s") == []
    from reports.collect import load_runs

    row = load_runs(tmp_path).iloc[0]
    assert row["status"] == "finished" and row["peak_psnr"] == 20.0
    assert "files.config.json.sha256" not in row  # the manifest is not a metric


def test_leftover_temporary_folders_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    from benchmark.store import WRITER

    store, run = RunStore(tmp_path), resolve(TINY)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = WRITER.split("-")[0]
    suite_dir = tmp_path / "s"
    (suite_dir / f".{run.run_id}.tmp.{host}-{dead_pid}.abcd").mkdir(parents=True)  # a killed write
    (suite_dir / f".{run.run_id}.old.{host}-{dead_pid}.abcd").mkdir()  # a killed replace
    live = suite_dir / f".{run.run_id}.tmp.{WRITER}.ef01"  # this process, writing now
    live.mkdir()
    removed = store.clean_temporaries("s")
    assert sorted(p.name for p in removed) == sorted([f".{run.run_id}.tmp.{host}-{dead_pid}.abcd",
                                                      f".{run.run_id}.old.{host}-{dead_pid}.abcd"])
    assert live.exists()
    assert len(store.clean_temporaries("s", lease=-1)) == 1  # older than the lease: removed too
    assert dumps({"a": float("inf")}) == '{\n  "a": null\n}'
