import json

import pytest

from benchmark.cli import main
from benchmark.config import ConfigError, resolve
from benchmark.suites import load_suite


def test_unknown_keys_fail_listing_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"method\.lrr.*valid keys of method:.*\blr\b"):
        resolve({"method": {"name": "vanilla_dip", "lrr": 1}, "dataset": {"name": "denoising"}})
    with pytest.raises(ConfigError, match=r"net\.chanels.*channels"):
        resolve({"method": {"name": "vanilla_dip", "net": {"chanels": 8}}, "dataset": {"name": "denoising"}})
    with pytest.raises(ConfigError, match="unknown method 'nope'; valid:.*vanilla_dip"):
        resolve({"method": {"name": "nope"}, "dataset": {"name": "denoising"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [vanilla_dip]\ndatasets: [denoising]\nseedz: [0]\n")
    with pytest.raises(ConfigError, match="unknown suite key.*seedz.*valid:.*seeds"):
        load_suite(str(bad))


def test_cli_reports_bad_set_key_with_exit_code_2(capsys):
    assert main(["run", "default", "--set", "run.max_stepz=3", "--results", "/nonexistent"]) == 2
    assert "valid keys of run" in capsys.readouterr().err


def test_suite_expands_grid_seeds_and_overrides():
    suite = load_suite("default", {"run.max_steps": 7})
    dip = [r for r in suite.runs if r.method == "vanilla_dip"]
    base = [r for r in suite.runs if r.method == "degraded"]
    assert {(r.dataset_cfg.image, r.run.seed) for r in dip} == {(i, s) for i in ("astronaut", "coffee") for s in (0, 1)}
    assert len(base) == 2  # baselines run once per setting, not per seed
    assert all(r.run.max_steps == 7 for r in dip)
    assert {r.run_id for r in base} == {r.run_id for r in load_suite("default").runs if r.method == "degraded"}
    assert len({r.run_id for r in suite.runs}) == len(suite.runs)


def test_run_id_depends_only_on_the_resolved_config():
    a = resolve({"method": {"name": "vanilla_dip"}, "dataset": {"name": "denoising"}})
    b = resolve({"method": {"name": "vanilla_dip", "lr": 1e-3}, "dataset": {"name": "denoising", "sigma": 25}})
    c = resolve({"method": {"name": "vanilla_dip", "lr": 2e-3}, "dataset": {"name": "denoising"}})
    assert a.run_id == b.run_id != c.run_id


def test_list_json_shows_methods_datasets_suites(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "vanilla_dip" in listing["methods"] and "denoising" in listing["datasets"]
    assert listing["suites"]["default"]["runs"] >= 6


def test_every_shipped_suite_loads_and_expands():
    from benchmark.suites import available_suites

    for name in available_suites():
        suite = load_suite(name)
        assert suite.runs, name
        assert all(r.run_id.startswith(f"{r.method}__{r.dataset}__") for r in suite.runs)
