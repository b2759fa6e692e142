"""Executors: Ray (fake GPUs: ``ray.init(num_gpus=2)``) and SLURM (submitit's local executor)
give the same runs as the local executor, place concurrent runs on different GPUs, and
never submit finished runs again. Slow: every run starts a fresh Python process (Ray worker
with ``max_calls=1``, or a submitit job), about 50 s of CPU for the file."""
import json
import os
import signal
import threading
import time

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.store import RunStore, inspect_folder
from core import keys
from tests.grid_helpers import fingerprints, suite_file

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_fake_gpus():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _metrics(results, suite="grid") -> dict[str, dict]:
    return {p.name: json.loads((p / "metrics.json").read_text()) for p in RunStore(results).runs(suite)}


def test_ray_runs_one_run_per_gpu_and_matches_the_local_executor_bitwise(tmp_path, ray_fake_gpus, capsys):
    suite = suite_file(tmp_path, max_steps=400, methods="[vanilla_dip]")
    assert main(["run", str(suite), "--results", str(tmp_path / "ray"), "--executor", "ray", "--gpus-per-run", "1"]) == 0
    assert main(["run", str(suite), "--results", str(tmp_path / "local")]) == 0
    ray_runs, local_runs = _metrics(tmp_path / "ray"), _metrics(tmp_path / "local")
    assert set(ray_runs) == set(local_runs) and len(ray_runs) == 2
    for run_id, m in ray_runs.items():
        assert m["status"] == "finished" and m["placement"]["executor"] == "ray"
        assert m["placement"]["cuda_visible_devices"] in {"0", "1"}  # one of the two (fake) GPUs, set by Ray
        a = pd.read_parquet(tmp_path / "ray" / "grid" / run_id / "trace.parquet")
        b = pd.read_parquet(tmp_path / "local" / "grid" / run_id / "trace.parquet")
        clock = [keys.WALL_TIME]  # seconds since the start: not reproducible
        pd.testing.assert_frame_equal(a.drop(columns=clock), b.drop(columns=clock), check_exact=True)  # bitwise identical
        for key in ("peak_psnr", "final_psnr", "peak_step"):
            assert m[key] == local_runs[run_id][key]
    (a, ma), (b, mb) = ray_runs.items()
    assert ma["placement"]["pid"] != mb["placement"]["pid"]  # each run in its own worker process
    overlap = min(ma["ended_at"], mb["ended_at"]) - max(ma["started_at"], mb["started_at"])
    assert overlap > 0, "the two runs did not run concurrently (2 CPUs, 2 GPUs, 1 GPU each)"
    assert ma["placement"]["cuda_visible_devices"] != mb["placement"]["cuda_visible_devices"]
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert "2 already finished, 0 to run" in capsys.readouterr().out  # nothing handed to Ray again

    # a worker killed mid-run (OOM killer, pre-emption): Ray retries the run in a new worker,
    # which takes over the dead worker's claim; the grid completes
    killed = []
    watcher = threading.Thread(target=_kill_first_worker, args=(tmp_path / "ray" / "grid", killed), daemon=True)
    watcher.start()
    assert main(["run", str(suite), "--results", str(tmp_path / "ray"), "--executor", "ray", "--force"]) == 0
    watcher.join(5)
    assert killed, "no worker was seen running"
    again = _metrics(tmp_path / "ray")
    assert all(m["status"] == "finished" for m in again.values())
    assert killed[0] not in {m["placement"]["pid"] for m in again.values()}
    assert [p.name for p in (tmp_path / "ray" / "grid").iterdir() if p.name.startswith(".") and "__" in p.name] == []


def _kill_first_worker(suite_dir, killed, timeout=300):
    from benchmark.locks import read_holder, read_progress

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not killed:
        for lock in (suite_dir / ".claims").glob("*.lock") if (suite_dir / ".claims").is_dir() else []:
            holder = read_holder(lock)
            if holder is not None and holder.pid > 0 and (read_progress(suite_dir, lock.stem) or {}).get("step", 0) >= 5:
                os.kill(holder.pid, signal.SIGKILL)
                killed.append(holder.pid)
                return
        time.sleep(0.05)


def test_slurm_array_runs_and_finished_runs_are_not_submitted_again(tmp_path, capsys):
    pytest.importorskip("submitit")
    results = tmp_path / "results"
    suite = suite_file(tmp_path, images=("coffee",), max_steps=10)
    args = ["--results", str(results), "--executor", "slurm", "--slurm-cluster", "local", "--time-min", "10"]
    assert main(["run", str(suite), *args]) == 0
    out = capsys.readouterr().out
    assert "submitted 2 run(s) as job array" in out
    first = fingerprints(results / "grid")
    assert len(first) == 2 and all(inspect_folder(results / "grid" / r).state == "finished" for r in first)
    assert all(m["placement"]["executor"] == "slurm" for m in _metrics(results).values())

    suite = suite_file(tmp_path, images=("coffee", "astronaut"), max_steps=10)  # the suite grows by one image
    assert main(["run", str(suite), *args]) == 0
    out = capsys.readouterr().out
    assert "2 already finished, 2 to run" in out and "submitted 2 run(s) as job array" in out
    after = fingerprints(results / "grid")
    assert len(after) == 4 and {r: after[r] for r in first} == first  # the finished runs were not run again
    assert main(["run", str(suite), *args]) == 0
    out = capsys.readouterr().out
    assert "4 already finished, 0 to run" in out and "submitted" not in out


def test_unknown_slurm_setup_and_fractional_gpus_fail_with_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    suite = suite_file(tmp_path, images=("coffee",), methods="[degraded]")
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--executor", "slurm"]) == 2
    assert "--slurm-cluster local" in capsys.readouterr().err
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--executor", "slurm", "--slurm-cluster", "local",
                 "--gpus-per-run", "0.5"]) == 2
    assert "use --executor ray for fractional GPUs" in capsys.readouterr().err
