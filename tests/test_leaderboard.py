"""The stopping-rule leaderboard (reports/leaderboard.py) on a hand-made results folder."""
import math

import pandas as pd
import pytest

from benchmark.config import resolve
from benchmark.store import RunStore
from reports.build import build_reports
from reports.collect import load_runs
from reports.leaderboard import leaderboard, leaderboard_by_rule, write_leaderboard

NaN = float("nan")
BOTH = {"running_variance": {"window": 5}, "discrepancy": {"tau": 1.0}}


def _run(seed, stopping, method="vanilla_dip", dataset="denoising"):
    return resolve({"method": {"name": method}, "dataset": {"name": dataset, "crop": 32},
                    "run": {"seed": seed, "stopping": stopping}})


def _es(rule, psnr, step, stop):
    return {f"es.{rule}.psnr": psnr, f"es.{rule}.step": step, f"es.{rule}.stop_step": stop}


# seed → (peak psnr, peak step, {rule: (pick psnr, pick step, stop step)}); seed 2 ran no discrepancy rule
RUNS = {
    0: (30.0, 100, {"running_variance": (28.0, 80, 200), "discrepancy": (29.0, 100, 100)}),
    1: (31.0, 120, {"running_variance": (30.5, 150, None), "discrepancy": (NaN, None, None)}),
    2: (29.0, 90, {"running_variance": (26.0, 60, 160)}),
}


def _store(tmp_path):
    store = RunStore(tmp_path / "results")
    for seed, (peak, peak_step, rules) in RUNS.items():
        run = _run(seed, {r: BOTH[r] for r in rules})
        metrics = {"status": "finished", "method": run.method, "dataset": run.dataset, "kind": "dip",
                   "provenance": "synthetic", "metric": "PSNR", "peak_psnr": peak, "peak_step": peak_step,
                   "final_psnr": peak - 3, "degraded_psnr": 20.0}
        for rule, pick in rules.items():
            metrics.update(_es(rule, *pick))
        store.write("s1", run, metrics, None, {})
    # a baseline (no peak step), a failed run and a run without ground truth never count
    baseline = resolve({"method": {"name": "degraded"}, "dataset": {"name": "denoising", "crop": 32}})
    store.write("s1", baseline, {"status": "finished", "method": "degraded", "dataset": "denoising", "kind": "baseline",
                                 "provenance": "synthetic", "metric": "PSNR", "peak_psnr": 20.0, "peak_step": None}, None, {})
    store.write("s2", _run(5, BOTH), {"status": "failed", "method": "vanilla_dip", "dataset": "denoising", "kind": "dip",
                                       "error": "boom"}, None, {})
    store.write("s2", _run(6, BOTH), {"status": "finished", "method": "vanilla_dip", "dataset": "denoising", "kind": "dip",
                                       "provenance": "synthetic", "metric": "none", "peak_psnr": NaN, "peak_step": 10,
                                       **_es("running_variance", NaN, 5, 9)}, None, {})
    return tmp_path / "results"


def _expected(rule):
    """The row of ``rule`` computed from RUNS by the leaderboard's definitions."""
    entries = [(peak, peak_step, rules[rule]) for peak, peak_step, rules in RUNS.values() if rule in rules]
    picked = [(peak - psnr, step - peak_step) for peak, peak_step, (psnr, step, _) in entries if step is not None]
    return {"runs": len(entries), "db_lost_mean": sum(d for d, _ in picked) / len(picked),
            "db_lost_worst": max(d for d, _ in picked), "before": sum(o < 0 for _, o in picked),
            "at": sum(o == 0 for _, o in picked), "after": sum(o > 0 for _, o in picked),
            "never_fired": sum(stop is None for _, _, (_, _, stop) in entries)}


def test_leaderboard_counts_each_rule_only_where_it_ran_and_never_averages_nan(tmp_path):
    table = leaderboard(load_runs(_store(tmp_path)))
    assert set(table["rule"]) == {"running_variance", "discrepancy"}
    assert set(zip(table["method"], table["task"])) == {("vanilla_dip", "denoising")}
    for rule in ("running_variance", "discrepancy"):
        row = table[table["rule"] == rule].iloc[0]
        for col, value in _expected(rule).items():
            assert row[col] == pytest.approx(value), (rule, col)
    assert not math.isnan(table.loc[table["rule"] == "discrepancy", "db_lost_mean"].iloc[0])
    # sorted best first within a method × task; the by-rule table pools every method and task
    assert list(table["rule"]) == ["discrepancy", "running_variance"]
    pooled = leaderboard_by_rule(load_runs(tmp_path / "results")).set_index("rule")
    assert pooled.loc["running_variance", "runs"] == 3 and pooled.loc["discrepancy", "never_fired"] == 1


def test_leaderboard_files_and_report_link(tmp_path):
    results = _store(tmp_path)
    written = write_leaderboard(load_runs(results), tmp_path / "board")
    assert [p.name for p in written] == ["leaderboard.md", "leaderboard.csv"]
    csv = pd.read_csv(tmp_path / "board" / "leaderboard.csv")
    pd.testing.assert_frame_equal(csv, leaderboard(load_runs(results)), check_dtype=False)
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "| running_variance" in md and "Survey B Algorithm 2" in md and "`s1`" in md
    out = tmp_path / "report"
    paths = build_reports(results, out)
    assert out / "leaderboard.md" in paths and (out / "leaderboard.csv").exists()
    assert "../leaderboard.md" in (out / "s1" / "table.md").read_text()
    assert write_leaderboard(pd.DataFrame({"status": ["failed"]}), tmp_path / "none") == []
