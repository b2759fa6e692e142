"""``benchmark run SUITE --dry-run``: every shipped suite expands (a broken suite file fails
here, in CI), the plan names every run with its state and estimated time and the skipped
pairs with their reasons, missing data are reported with how to get them, and nothing is
stored."""
import pytest

from benchmark.cli import main
from benchmark.suites import available_suites


@pytest.mark.parametrize("name", sorted(available_suites()))
def test_every_shipped_suite_plans_without_storing_anything(name, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", name, "--dry-run", "--no-data-check", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"suite {name}:" in out and "nothing is stored" in out and "estimated time" in out
    assert "missing " in out or "finished " in out  # at least one run line with its state
    assert not results.exists()


def test_the_plan_checks_the_data_and_says_how_to_get_what_is_missing(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmethods: [fbp]\ndatasets: [{name: walnut, image_size: 32, root: "
                     f"{tmp_path / 'nowhere'}}}, {{name: ct_calibration, image_size: 32}}]\nseeds: [0]\n")
    assert main(["run", str(suite), "--dry-run", "--results", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "data missing: walnut: folder" in out and "data found" in out  # ct_calibration needs nothing
    assert not (tmp_path / "r").exists()
