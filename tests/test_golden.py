"""The CI regression (benchmark/golden.py): ci_small through the normal executor path must
match the committed golden file within the stated tolerances; a drift fails with a table
(run, metric, golden, now, difference, tolerance). ``make golden`` rewrites the file."""
import json

import pytest

from benchmark.golden import GOLDEN, STEPS, TOLERANCES, differences, run_and_collect
from methods.registry import METHODS


def test_the_golden_file_covers_every_built_in_method():
    golden = json.loads(GOLDEN.read_text())
    covered = {name.split(" @ ")[0] for name in golden["runs"]}
    assert {n for n, s in METHODS.items() if s.origin.startswith("built-in")} <= covered
    assert golden["tolerances"] == TOLERANCES  # tolerances live in one place: the module


def test_a_drift_is_reported_as_a_readable_table():
    golden = {"m @ d": {"status": "finished", "peak_psnr": 20.0, "peak_step": 10, "final_data_residual": 1.0}}
    same = differences(golden, {"m @ d": {"status": "finished", "peak_psnr": 20.05, "peak_step": 11,
                                          "final_data_residual": 1.005}})
    assert same.empty
    moved = differences(golden, {"m @ d": {"status": "finished", "peak_psnr": 21.0, "peak_step": 10,
                                           "final_data_residual": 1.0}, "n @ d": {"status": "finished"}})
    assert list(moved.columns) == ["run", "metric", "golden", "now", "difference", "tolerance"]
    assert set(moved["metric"]) == {"peak_psnr", "run"} and moved.iloc[0]["tolerance"] == TOLERANCES["peak_psnr"]
    flat = differences(golden, {"m @ d": {"status": "finished", "peak_psnr": 20.01, "peak_step": 17,
                                          "final_data_residual": 1.0}})
    assert flat.empty  # the peak moved 7 iterations along a flat curve: the same PSNR
    # … but half the run away it is a drift whatever the PSNR
    far = differences(golden, {"m @ d": {"status": "finished", "peak_psnr": 20.01, "peak_step": 10 + STEPS // 2,
                                         "final_data_residual": 1.0}})
    assert list(far["metric"]) == ["peak_step"]
    missing_bart = {"status": "skipped", "reason": "bart_pics needs the BART binary, which is not installed here"}
    env = differences({"b @ d": {"status": "finished"}}, {"b @ d": missing_bart})
    assert env.empty  # a program missing on this machine is a note, not a drift


@pytest.mark.slow
def test_ci_small_matches_the_golden_file(tmp_path):
    now = run_and_collect(tmp_path / "results")
    drift = differences(json.loads(GOLDEN.read_text())["runs"], now)
    assert drift.empty, f"ci_small drifted from {GOLDEN} (`make golden` rewrites it on purpose; explain why in the " \
                        f"commit message):\n{drift.to_string(index=False)}"
