"""End-to-end: tiny suites through the orchestrator, the store and the report."""
import json

import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.config import resolve
from benchmark.runner import execute
from benchmark.store import RunStore
from core import keys
from datamodules.sources.paths import MissingDataError

TINY = {
    "method": {"name": "vanilla_dip", "lr": 0.01,
               "net": {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}},
    "dataset": {"name": "denoising", "image": "coffee", "crop": 32, "sigma": 50},
    "run": {"max_steps": 150, "trace_every": 5, "stopping": {"running_variance": {"window": 10, "patience": 50}}},
}


def tiny(**run):
    return resolve({**TINY, "run": {**TINY["run"], **run}})


def test_tiny_run_loss_decreases_and_peak_beats_the_noisy_input(tmp_path):
    metrics = execute(tiny(), "t", RunStore(tmp_path))
    assert metrics["status"] == "finished", metrics.get("traceback")
    trace = pd.read_parquet(next(tmp_path.glob("t/*/trace.parquet")))
    assert trace["loss"].iloc[-5:].mean() < 0.5 * trace["loss"].iloc[:3].mean()
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 3
    assert 1 <= metrics["peak_step"] <= 150 and metrics["final_step"] == 150
    assert metrics["placement"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # the run's device
    assert {"step", "stage", "loss", "psnr", "ssim", "psnr_ema", "es.running_variance.g"} <= set(trace.columns)
    run_dir = next(tmp_path.glob("t/*"))
    assert ({"config.json", "metrics.json", "trace.parquet", "images.npz", "gt.png", "peak.png"}
            <= {p.name for p in run_dir.iterdir()})


def test_same_config_gives_a_bitwise_identical_trace(tmp_path):
    for name in ("a", "b"):
        execute(tiny(max_steps=40), name, RunStore(tmp_path))
    a, b = (pd.read_parquet(next(tmp_path.glob(f"{n}/*/trace.parquet"))) for n in ("a", "b"))
    assert a[keys.WALL_TIME].is_monotonic_increasing  # the one column a clock writes: not reproducible
    pd.testing.assert_frame_equal(a.drop(columns=keys.WALL_TIME), b.drop(columns=keys.WALL_TIME), check_exact=True)
    other = tiny(max_steps=40, seed=1)
    execute(other, "c", RunStore(tmp_path))
    c = pd.read_parquet(next(tmp_path.glob("c/*/trace.parquet")))
    assert not a["loss"].equals(c["loss"])  # the seed matters


def _suite_file(tmp_path, max_steps=20):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\nmethods: [vanilla_dip, degraded]\ndatasets: [denoising]\nseeds: [0]\n"
        f"set:\n  dataset.crop: 24\n  method.net: {{scales: 2, channels: 8, skip_channels: [0, 4]}}\n"
        f"  run.max_steps: {max_steps}\n  run.stopping.running_variance.window: 5\n"
        "grid:\n  dataset.image: [coffee, astronaut]\n")
    return path


def test_rerun_skips_finished_runs_and_report_renders(tmp_path, capsys):
    suite, results = _suite_file(tmp_path), tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results)]) == 0
    stamps = {p: p.stat().st_mtime_ns for p in results.glob("tiny/*/metrics.json")}
    assert len(stamps) == 4
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results)]) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in results.glob("tiny/*/metrics.json")}
    out = tmp_path / "reports"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    table = (out / "tiny" / "table.md").read_text()
    assert "vanilla_dip" in table and "degraded" in table and "simulated Gaussian noise" in table
    assert (out / "tiny" / "psnr_vs_iteration.png").stat().st_size > 10_000
    assert (out / "tiny" / "table.tex").read_text().count("vanilla") >= 1


def test_failed_run_is_stored_and_retried_and_partial_folders_are_ignored(tmp_path):
    store = RunStore(tmp_path)
    run = resolve({**TINY, "dataset": {**TINY["dataset"], "source": "cbsd68", "root": str(tmp_path / "nowhere")}})
    metrics = execute(run, "s", store)
    assert metrics["status"] == "failed" and "make data-cbsd68" in metrics["error"]
    assert not store.is_finished("s", run)
    (tmp_path / "s" / f".{run.run_id}.partial").mkdir()  # what a killed write leaves behind
    assert [p.name for p in store.runs("s")] == [run.run_id]


def test_missing_data_folder_error_says_how_to_get_it(tmp_path, monkeypatch):
    from datamodules.sources.images import load_image

    monkeypatch.setenv("DIPBENCH_DATA", str(tmp_path))
    monkeypatch.setattr("datamodules.sources.paths.candidate_roots", lambda name: [tmp_path / name])
    with pytest.raises(MissingDataError, match=r"(?s)data not found.*make data-cbsd68.*dataset.root"):
        load_image("cbsd68", "0000")


def test_stored_config_reproduces_the_run_id(tmp_path):
    run = tiny(max_steps=3)
    execute(run, "r", RunStore(tmp_path))
    stored = json.loads(next(tmp_path.glob("r/*/config.json")).read_text())
    again = resolve({k: stored[k] for k in ("method", "dataset", "run")})
    assert again.run_id == run.run_id == stored["run_id"]


def test_paper_comparison_pairs_our_runs_with_survey_b_rows():
    from reports.tables import paper_comparison

    paper = pd.DataFrame({"method": ["vanilla_dip", "tv_baseline"], "peak_psnr": [28.0, 26.0], "peak_iter": [1000, None],
                          "es_psnr": [27.0, None], "es_iter": [900, None], "final_psnr": [17.0, None]})
    ours = pd.DataFrame({"status": ["finished"] * 3, "paper_method": ["vanilla_dip", "vanilla_dip", "tv_baseline"],
                         "peak_psnr": [29.0, 31.0, 25.0], "peak_step": [500, 700, None], "es_psnr": [28.0, 28.0, None],
                         "es_step": [600, 600, None], "final_psnr": [20.0, 22.0, 25.0]})
    table = paper_comparison(ours, paper).set_index("method")
    assert table.loc["vanilla_dip", "peak_psnr_ours"] == 30.0 and table.loc["vanilla_dip", "peak_psnr_diff"] == 2.0
    assert table.loc["vanilla_dip", "peak_iter_ours"] == 600
    assert table.loc["tv_baseline", "final_psnr_ours"] == 25.0


def test_the_report_leaves_out_runs_the_suites_current_definition_no_longer_has(tmp_path, capsys):
    from reports.build import build_reports

    store = RunStore(tmp_path / "results")
    runs = [resolve({**TINY, "run": {**TINY["run"], "max_steps": 5, "seed": seed}}) for seed in (0, 1)]
    for run in runs:
        execute(run, "s", store)
    store.write_suite_info("s", {"name": "s", "runs": {runs[0].run_id: 5}})  # the suite changed: seed 1 is gone
    build_reports(tmp_path / "results", tmp_path / "out")
    table = (tmp_path / "out" / "s" / "table.md").read_text()
    per_run = table.split("## Per run")[1].split("Stopping-rule")[0]
    seeds = [line.split("|")[4].strip() for line in per_run.splitlines() if line.startswith("| denoising")]
    assert seeds == ["0"]  # seed 1's run is left out
    assert "left out 1 run(s) stored under suite s" in capsys.readouterr().err
