"""One page per experiment id (reports/experiments.py) on a hand-made results folder: fixture runs
written with the run store, as tests/test_leaderboard.py does, never trained."""
import pandas as pd
import pytest

from benchmark.config import resolve
from benchmark.store import RunStore
from reports.build import build_reports
from reports.experiments import STATED_NUMBERS, stated_numbers
from reports.snapshot import write_snapshot

CT = "real Walnut 1 slice (256² copy, resized to 32²), fan-beam measurement simulated on real slice with ASTRA"
PHOTO = "real photo (scikit-image), 32² crop, simulated Gaussian noise σ = 50/255"


def _write(store, suite, method, dataset, metrics, run=None, trace=None):
    config = resolve({"method": method, "dataset": dataset, "run": {"max_steps": 300, **(run or {})}})
    kind = "baseline" if method["name"] == "tv" else "dip"
    store.write(suite, config, {"status": "finished", "method": method["name"], "dataset": dataset["name"], "kind": kind,
                                "has_ground_truth": True, "metric": "PSNR", **metrics}, trace, {})


def _results(tmp_path):
    """B-T2: vanilla DIP and TV on the CPU; B-F9/B-S5: vanilla and warm-started DIP (the warm start's
    first PSNR only in its trace); A-F1: denoising, two seeds; a demo and a regression suite."""
    store = RunStore(tmp_path / "results")
    walnut = {"name": "walnut", "image_size": 32}
    cpu = {"accelerator": "cpu"}
    _write(store, "t2", {"name": "vanilla_dip"}, walnut, {
        "provenance": CT, "peak_psnr": 25.0, "peak_step": 120, "es.running_variance.psnr": 24.0,
        "es.running_variance.step": 150, "es.running_variance.stop_step": 200, "final_psnr": 20.0, "first_psnr": 8.0},
        run=cpu)
    for weight, peak in ((0.05, 25.5), (0.5, 26.5)):  # the transferred setting and an oracle trial (suite key oracle:)
        _write(store, "t2", {"name": "dip_tv_joint", "tv_weight": weight}, walnut,
               {"provenance": CT, "peak_psnr": peak, "peak_step": 900, "final_psnr": peak - 1}, run=cpu)
    trial = resolve({"method": {"name": "dip_tv_joint", "tv_weight": 0.5}, "dataset": walnut,
                     "run": {"max_steps": 300, **cpu}}).run_id
    _write(store, "t2", {"name": "tv"}, walnut, {"provenance": CT, "peak_psnr": 23.5, "peak_step": None,
                                                 "final_psnr": 23.5}, run=cpu)
    _write(store, "f9", {"name": "vanilla_dip"}, walnut, {"provenance": CT, "peak_psnr": 24.0, "peak_step": 100,
                                                          "final_psnr": 21.0, "first_psnr": 7.0})
    trace = pd.DataFrame({"step": [-5, 1, 10, 20], "psnr": [5.0, 22.0, 23.0, 23.5], "loss": [1.0, 0.5, 0.4, 0.3]})
    _write(store, "f9", {"name": "vanilla_dip", "input": "fbp", "warm_start": {"steps": 10}}, walnut,
           {"provenance": CT, "peak_psnr": 23.5, "peak_step": 20, "final_psnr": 23.0}, trace=trace)
    denoising = {"name": "denoising", "crop": 32}
    for seed, peak_step in ((0, 200), (1, 210)):
        _write(store, "f1", {"name": "vanilla_dip"}, denoising, {"provenance": PHOTO, "peak_psnr": 24.0,
                                                                 "peak_step": peak_step, "final_psnr": 18.0},
               run={"seed": seed})
    for suite, experiment in (("demo", "demo"), ("ci", "regression")):
        _write(store, suite, {"name": "vanilla_dip"}, denoising, {"provenance": PHOTO, "peak_psnr": 20.0,
                                                                  "peak_step": 50, "final_psnr": 15.0})
        store.write_suite_info(suite, {"experiment": experiment})
    for suite, experiment in (("t2", "B-T2"), ("f9", ["B-F9", "B-S5"]), ("f1", "A-F1")):
        store.write_suite_info(suite, {"experiment": experiment, **({"oracle_runs": [trial]} if suite == "t2" else {})})
    return tmp_path / "results"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    results, out = _results(tmp), tmp / "out"
    build_reports(results, out)
    return out


def paper_vs_ours(page) -> pd.DataFrame:
    """The page's 'Paper vs ours' markdown table as a frame of strings."""
    lines = page.read_text().split("## Paper vs ours", 1)[1].splitlines()
    table = [line for line in lines if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return pd.DataFrame(cells[2:], columns=cells[0])


def row(table, **match) -> pd.Series:
    found = table
    for column, value in match.items():
        found = found[found[column] == value]
    assert len(found) == 1, (match, table)
    return found.iloc[0]


def test_one_page_per_evidence_experiment_and_none_for_demo_or_regression(report):
    assert sorted(p.name for p in (report / "experiments").iterdir()) == ["A-F1.md", "B-F9.md", "B-S5.md", "B-T2.md"]
    page = (report / "experiments" / "B-T2.md").read_text()
    assert "[`t2`](../t2/table.md)" in page and "| vanilla_dip" in page and "`f9`" not in page
    figures = [line for line in (report / "experiments" / "B-F9.md").read_text().splitlines() if line.startswith("Figures:")]
    assert figures and "](../f9/psnr_vs_iteration.png)" in figures[0] and (report / "f9" / "psnr_vs_iteration.png").is_file()
    html = (report / "index.html").read_text()
    assert 'href="experiments/B-T2.md"' in html and "experiments/demo" not in html and "regression.md" not in html


def test_the_leaderboard_is_restricted_to_the_experiment_runs(report):
    page = (report / "experiments" / "B-T2.md").read_text()
    board = [[c.strip() for c in line.strip("|").split("|")]
             for line in page.split("## Stopping rules on these runs", 1)[1].split("##", 1)[0].splitlines()
             if line.startswith("| ") and "Method" not in line]
    assert [cells[:4] for cells in board] == [["dip_tv_joint", "walnut", "running_variance", "1"],  # not its trial
                                              ["vanilla_dip", "walnut", "running_variance", "1"]]  # t2's runs only


def test_paper_vs_ours_holds_both_numbers_and_their_difference(report):
    t2 = paper_vs_ours(report / "experiments" / "B-T2.md")
    tv = row(t2, quantity="psnr", method="tv_baseline", paper="26.88")
    assert (tv["ours"], tv["difference"], tv["suite"]) == ("23.50", "-3.38", "t2")
    assert tv["setting"] == "simulated measurement on a real slice; 32² vs 501²; CPU twin"  # a baseline has no iterations
    assert "Table 2 caption" in tv["where"]
    peak = row(t2, quantity="peak_psnr", method="vanilla_dip")  # a Table 2 cell
    assert (peak["paper"], peak["ours"], peak["difference"]) == ("28.58", "25.00", "-3.58")
    assert peak["setting"] == "simulated measurement on a real slice; 32² vs 501²; 300 iterations vs 10 000; CPU twin"
    es = row(t2, quantity="es_iteration", method="vanilla_dip")
    assert (es["paper"], es["ours"], es["difference"]) == ("2189", "150", "-2039")
    f9 = paper_vs_ours(report / "experiments" / "B-F9.md")
    warm = row(f9, quantity="first_psnr", method="vanilla_dip_warm_start")  # from the trace: first row with step > 0
    assert (warm["paper"], warm["ours"], warm["difference"]) == ("24.00", "22.00", "-2.00")
    below = row(f9, quantity="peak_psnr_below_vanilla")
    assert (below["paper"], below["ours"], below["difference"]) == ("0.60", "0.50", "-0.10")
    f1 = paper_vs_ours(report / "experiments" / "A-F1.md")
    peak_step = row(f1, quantity="peak_iteration", task="denoising")  # median of 200 and 210
    assert (peak_step["paper"], peak_step["ours"], peak_step["difference"], peak_step["setting"]) == (
        "340", "205", "-135", "300 iterations vs 2 500")


def test_paper_vs_ours_gives_the_oracle_number_beside_the_transferred_one_where_the_suite_has_both(report):
    t2 = paper_vs_ours(report / "experiments" / "B-T2.md")
    tv = row(t2, quantity="peak_psnr", method="dip_tv_joint")
    assert (tv["paper"], tv["ours"], tv["ours (oracle)"]) == ("28.40", "25.50", "26.50")  # the trial is no 'ours'
    assert row(t2, quantity="peak_psnr", method="vanilla_dip")["ours (oracle)"] == "25.00"  # nothing to sweep
    assert "ours (oracle)" not in paper_vs_ours(report / "experiments" / "A-F1.md")  # no oracle trials there


def test_a_stated_number_without_runs_says_not_measured_and_what_to_run(report):
    f1 = paper_vs_ours(report / "experiments" / "A-F1.md")
    mri = row(f1, quantity="peak_iteration", task="fastmri_knee")
    assert mri["ours"].startswith("not measured: run suite mri_quick") and mri["difference"] == "—"
    admm = row(paper_vs_ours(report / "experiments" / "B-T2.md"), quantity="final_psnr", method="dip_denoiser_admm")
    assert admm["ours"] == "not measured: run suite survey_b_table2_quick or survey_b_table2"


def test_every_stated_number_cites_where_and_has_a_quantity_function():
    stated = stated_numbers()
    assert (stated["where"].str.startswith("Survey ")).all() and stated["paper_value"].notna().all()
    assert {"A-F1", "A-F6", "B-T2", "B-F9"} <= set(pd.read_csv(STATED_NUMBERS)["experiment"])


def test_the_snapshot_copies_the_experiment_pages_linking_the_copied_suite_pages(report, tmp_path):
    written = write_snapshot(report, tmp_path / "docs", None, leave_out={"demo", "ci"})
    page = tmp_path / "docs" / "experiments" / "B-T2.md"
    assert page in written and "[`t2`](../t2.md)" in page.read_text()
    assert page.read_text().startswith("<!-- written by `python -m benchmark report --snapshot")
    assert not (tmp_path / "other" / "experiments").exists()
    only_f1 = write_snapshot(report, tmp_path / "other", ["f1"])
    assert [p.name for p in only_f1 if p.parent.name == "experiments"] == ["A-F1.md"]


def test_rendering_the_report_trains_nothing(tmp_path, monkeypatch):
    import benchmark.runner as runner

    def no_training(*args, **kwargs):
        raise AssertionError("the report must not run a method")

    monkeypatch.setattr(runner, "execute", no_training)
    monkeypatch.setattr(runner, "RUNNERS", {kind: no_training for kind in runner.RUNNERS})
    out = tmp_path / "out"
    build_reports(_results(tmp_path), out)
    assert (out / "experiments" / "B-T2.md").is_file() and (out / "index.html").is_file()
