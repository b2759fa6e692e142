"""benchmark/perf.py (``make perf``) and benchmark/overhead.py: the sections run and print
their rows (their numbers are not checked: they are timings of this machine)."""
import pytest

from benchmark import perf
from benchmark.config import resolve
from benchmark.overhead import config, measure


def test_operator_section_prints_every_operator(capsys):
    perf.main(["--quick", "--only", "operators", "--device", "cpu"])
    out = capsys.readouterr().out
    for name in ("Gaussian blur", "SENSE 8 coils"):
        assert name in out
    assert "CT 128²" in out  # measured, or the reason it was not (ASTRA missing)


def test_memory_probe_reports_a_peak_for_a_short_run():
    r = perf.memory_probe("vanilla_dip", 32, 2, "cpu")
    assert r["status"] == "finished" and r["peak_mb"] >= 0


def test_overhead_measures_plain_harness_and_whole_run():
    cfg = config(32, 6)
    cfg["method"]["net"] = {"name": "unet", "scales": 2, "channels": 8, "skip_channels": [0, 4]}
    r = measure(resolve(cfg), repeats=2)
    assert set(r) == {"plain", "harness", "whole", "ratios"} and all(r[k] > 0 for k in ("plain", "harness", "whole"))
    assert len(r["ratios"]) == 2 and all(v > 0 for v in r["ratios"])  # one plain/harness ratio per interleaved repeat


def test_unknown_section_is_an_error():
    with pytest.raises(SystemExit):
        perf.main(["--only", "everything"])
