"""The Survey B §5 report section (reports/compute.py) and claim 11 (warm start, B-F9), on
synthetic stored-run frames and traces."""
from __future__ import annotations

import pandas as pd
import pytest

from reports.claims import FAILS, HOLDS, NOT_MEASURED, judge
from reports.collect import paper_method_name
from reports.compute import compute_section, levels, time_to_reach, wall_time_table


def run(method, first, peak, final, path="", **extra):
    return {"suite": "c", "suite_experiment": "B-F9,B-S5", "status": "finished", "has_ground_truth": True,
            "paper_method": method, "kind": "dip", "first_psnr": first, "peak_psnr": peak, "peak_step": 100,
            "final_psnr": final, "wall_time_s": 10.0, "run.max_steps": 1000, "run.seed": 0, "path": path,
            "run_id": f"{method}_{path}", **extra}


def by_number(verdicts):
    return {v.number: v for v in verdicts}


@pytest.mark.parametrize("warm, expected", [
    ((24.0, 27.9, 26.5), HOLDS),  # far higher start, 0.6 dB lower peak, 1.4 dB overfitting vs 10.5
    ((24.0, 28.8, 26.5), FAILS),  # peaks higher, not slightly lower
    ((10.0, 27.9, 26.5), FAILS),  # starts only 4 dB higher
    ((24.0, 27.9, 17.0), FAILS),  # overfits as much as vanilla
])
def test_claim_11_compares_first_peak_and_overfitting_of_warm_start_and_vanilla(warm, expected):
    runs = pd.DataFrame([run("vanilla_dip", 6.0, 28.5, 18.0), run("vanilla_dip_warm_start", *warm)])
    verdict = by_number(judge(runs))[11]
    assert verdict.verdict == expected and "first" in verdict.evidence[0][1]


def test_claim_11_is_not_measured_without_a_warm_started_run():
    verdict = by_number(judge(pd.DataFrame([run("vanilla_dip", 6.0, 28.5, 18.0)])))[11]
    assert verdict.verdict == NOT_MEASURED and "compute_quick" in verdict.missing


def test_warm_started_runs_get_their_own_name_except_subspace_dip():
    assert paper_method_name({"method.name": "vanilla_dip", "method.input": "fbp", "method.warm_start.steps": 10}) \
        == "vanilla_dip_warm_start"
    assert paper_method_name({"method.name": "vanilla_dip", "method.input": "fbp"}) == "vanilla_dip_fbp_input"
    assert paper_method_name({"method.name": "subspace_dip", "method.warm_start.steps": 10}) == "subspace_dip"


def test_time_to_reach_is_the_first_traced_iterate_at_or_above_the_level():
    trace = pd.DataFrame({"step": [1, 10, 20, 30], "psnr": [5.0, 19.0, 21.0, 20.0], "wall_time_s": [0.1, 1.0, 2.0, 3.0]})
    assert time_to_reach(trace, 20.0) == (2.0, 20.0)
    assert time_to_reach(trace, 19.0) == (1.0, 10.0)
    assert all(pd.isna(v) for v in time_to_reach(trace, 22.0))


def test_wall_time_table_and_figure_from_stored_traces(tmp_path):
    rows = []
    for name, scale, trainable in (("vanilla_dip", 1.0, 1000), ("subspace_dip", 0.5, 8)):
        folder = tmp_path / name
        folder.mkdir()
        pd.DataFrame({"step": [1, 10, 20, 30], "psnr": [5.0, 26.0, 28.0, 27.0],
                      "wall_time_s": [scale * t for t in (0.1, 1.0, 2.0, 3.0)]}).to_parquet(folder / "trace.parquet")
        rows.append(run(name, 5.0, 28.0, 27.0, path=str(folder), n_trainable=trainable))
    runs = pd.DataFrame(rows)
    assert levels(runs) == [25.0, 26.0, 27.0, 27.5]
    table = wall_time_table(runs).set_index("method")
    assert table.loc["subspace_dip", "≥ 27 dB: s (iter)"] == "1.0 (20)"
    assert table.loc["vanilla_dip", "≥ 27 dB: s (iter)"] == "2.0 (20)"
    assert table.loc["subspace_dip", "trainable"] == "8"
    section = compute_section(runs, "t", tmp_path / "out")
    assert section.figures and section.figures[0].is_file() and "Wall time to reach" in "\n".join(section.markdown)
