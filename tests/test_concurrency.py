"""Concurrency: two invocations of one suite on one results folder never run a run twice and
never corrupt one (per-run claims with a lease, benchmark/locks.py)."""
import multiprocessing as mp
import os
import subprocess
import sys
import time

import pytest

from benchmark.config import resolve
from benchmark.locks import Claim, Holder, live_holder, try_claim
from benchmark.store import LostClaim, RunStore, inspect_folder
from tests.grid_helpers import cli, hidden_run_folders, no_claims, suite_file

TINY = {"method": {"name": "degraded"}, "dataset": {"name": "denoising", "image": "coffee", "crop": 16}}


def test_a_claim_excludes_others_until_released(tmp_path):
    first = try_claim(tmp_path, "m__d__0123456789")
    assert isinstance(first, Claim)
    second = try_claim(tmp_path, "m__d__0123456789")
    assert isinstance(second, Holder) and second.pid == os.getpid() and second.token == first.token
    assert live_holder(tmp_path, "m__d__0123456789") is not None
    first.release()
    assert live_holder(tmp_path, "m__d__0123456789") is None
    again = try_claim(tmp_path, "m__d__0123456789")
    assert isinstance(again, Claim)
    again.release()


def test_a_claim_of_a_dead_process_or_with_an_old_heartbeat_is_taken_over(tmp_path):
    script = ("import sys; from pathlib import Path; from benchmark.locks import try_claim; "
              "c = try_claim(Path(sys.argv[1]), 'm__d__0123456789'); print(c.token)")
    dead = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    lock = tmp_path / ".claims" / "m__d__0123456789.lock"
    assert lock.exists()  # the process died holding it (no release)
    taken = try_claim(tmp_path, "m__d__0123456789")
    assert isinstance(taken, Claim) and taken.token != dead.stdout.strip()
    taken._stop.set()  # stop the heartbeat, as if this process hung
    os.utime(lock, (time.time() - 1000, time.time() - 1000))
    newer = try_claim(tmp_path, "m__d__0123456789", lease=10)  # heartbeat 1000 s old > lease: expired
    assert isinstance(newer, Claim)
    assert not taken.holds() and newer.holds()
    store, run = RunStore(tmp_path / "r"), resolve(TINY)
    with pytest.raises(LostClaim):  # the hung holder wakes up: its results are discarded, not written
        store.write("s", run, {"status": "finished"}, None, {}, claim=taken)
    assert store.inspect("s", run).state == "missing"
    newer.release()


def test_heartbeat_keeps_a_long_run_claimed(tmp_path):
    claim = try_claim(tmp_path, "m__d__0123456789", lease=0.4)
    time.sleep(1.0)  # > 2 leases: only the heartbeat keeps it live
    assert isinstance(try_claim(tmp_path, "m__d__0123456789", lease=0.4), Holder)
    claim.release()


def _hammer(args):
    """Claim, write and release one run ``n`` times (the 'same-run writes' stress of issue 11)."""
    root, n = args
    from benchmark.config import resolve
    from benchmark.locks import Claim, try_claim
    from benchmark.store import RunStore

    store, run = RunStore(root), resolve(TINY)
    wrote = 0
    for i in range(n):
        claim = try_claim(store.suite_dir("s"), run.run_id)
        if isinstance(claim, Claim):
            try:
                store.write("s", run, {"status": "finished", "writer": os.getpid(), "i": i}, None, {}, claim=claim)
                wrote += 1
            finally:
                claim.release()
    return wrote


def test_many_processes_writing_one_run_never_corrupt_it(tmp_path):
    with mp.get_context("fork").Pool(6) as pool:
        wrote = pool.map(_hammer, [(str(tmp_path), 50)] * 6)
    assert sum(wrote) > 0
    folder = tmp_path / "s" / resolve(TINY).run_id
    assert inspect_folder(folder).state == "finished"
    assert hidden_run_folders(tmp_path / "s") == [] and no_claims(tmp_path / "s")


@pytest.mark.slow
def test_two_invocations_of_one_suite_run_each_run_exactly_once(tmp_path):
    """Two terminals start the same suite on the same results folder at the same moment."""
    suite, results = suite_file(tmp_path, images=("coffee", "astronaut", "camera"), max_steps=60,
                                methods="[vanilla_dip]"), tmp_path / "results"
    procs = [cli("run", str(suite), "--results", str(results)) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    runs = RunStore(results).runs("grid")
    assert len(runs) == 3 and all(inspect_folder(r).state == "finished" for r in runs)
    for run in runs:  # each run's result line is printed by exactly one of the two invocations
        executed = sum(out.count(f"{run.name} (seed") for out, _ in outputs)
        assert executed == 1, (run.name, outputs)
    writers = {json_pid(r) for r in runs}
    assert writers <= {p.pid for p in procs}
    assert hidden_run_folders(results / "grid") == []


def json_pid(run_dir):
    import json

    return json.loads((run_dir / "metrics.json").read_text())["placement"]["pid"]
