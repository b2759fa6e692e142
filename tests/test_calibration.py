"""Calibration (issue 18): declared tunables, presets per task family with their provenance,
and ``benchmark tune`` end to end on a tiny task (resumable after SIGKILL; the preset it
writes is used by the next run of the family, and never overrides what a suite gives)."""
from __future__ import annotations

import signal

import pandas as pd
import pytest

import methods.presets as presets
from benchmark.calibration import PROTOCOLS, choose, tune_suite
from benchmark.cli import main
from benchmark.config import ConfigError, resolve
from core.results import MethodKind
from core.schema import Tunable, from_dict, tunables
from datamodules.registry import DATASETS, family_of
from methods.presets import PresetValue, load_preset, write_preset
from methods.registry import METHODS
from tests.grid_helpers import NET, cli, fingerprints, wait_for

TINY_CT = ["--set", "dataset.image_size=32", "--set", f"method.net={NET}", "--set", "run.trace_every=5",
           "--set", "run.stopping.running_variance.window=5", "--set", "run.stopping.running_variance.patience=5"]


def test_a_tunable_spans_its_range_on_its_scale_and_rejects_bad_ranges():
    assert Tunable(1e-3, 1.0).grid(4) == [0.001, 0.01, 0.1, 1.0]
    assert Tunable(0.0, 1.0, "linear").grid(3) == [0.0, 0.5, 1.0]
    assert Tunable(1, 10, integer=True).grid(4) == [1, 2, 5, 10]
    for bad in [(1.0, 1.0), (0.0, 1.0), (2.0, 1.0)]:
        with pytest.raises(ValueError):
            Tunable(*bad)


def test_every_declared_tunable_is_a_valid_setting_and_its_default_passes_validation():
    declared = {name: tunables(spec.config) for name, spec in METHODS.items()}
    assert {"dip_tv_joint", "dip_tv_hqs", "dip_wtv_admm", "self_guided_dip", "aseqdip", "dip_red_apg",
            "dip_denoiser_hqs", "dip_denoiser_admm"} <= {n for n, t in declared.items() if t}
    for name, found in declared.items():
        for key, tunable in found.items():
            # every grid value is accepted by the schema (ranges of the field and of the search agree)
            for value in tunable.grid(3):
                from_dict(METHODS[name].config, {key: value}, "method")


def test_the_family_follows_the_capability_so_a_users_file_gets_its_familys_presets():
    assert family_of({"ct", "linear"}) == "ct" and family_of({"mri_multicoil"}) == "mri"
    assert family_of({"natural_image"}) == "natural" and family_of({"linear"}) is None
    for name, family in {"walnut": "ct", "aapm": "ct", "ct_calibration": "ct", "measurement_ct": "ct",
                         "fastmri_knee": "mri", "measurement_mri": "mri", "denoising": "natural",
                         "measurement_image": "natural"}.items():
        spec = DATASETS[name]
        assert spec.family(spec.config()) == family, name


@pytest.fixture
def preset_root(tmp_path, monkeypatch):
    root = tmp_path / "presets"
    monkeypatch.setattr(presets, "PRESETS_DIR", root)
    return root


def test_a_preset_fills_unset_settings_records_its_source_and_the_suite_wins(preset_root):
    write_preset("dip_tv_joint", "ct", {"tv_weight": PresetValue(0.2, "calibrated: test")})
    run = resolve({"method": {"name": "dip_tv_joint"}, "dataset": {"name": "walnut", "image_size": 32}})
    assert run.method_cfg.tv_weight == 0.2 and run.presets == {"tv_weight": "calibrated: test"}
    assert run.to_dict()["method"]["preset"] == {"tv_weight": "calibrated: test"}
    assert resolve(run.to_dict()).run_id == run.run_id  # a stored config resolves to the same run
    given = resolve({"method": {"name": "dip_tv_joint", "tv_weight": 0.01}, "dataset": {"name": "walnut", "image_size": 32}})
    assert given.method_cfg.tv_weight == 0.01 and given.presets == {}
    other_family = resolve({"method": {"name": "dip_tv_joint"}, "dataset": {"name": "denoising"}})
    assert other_family.presets == {} and other_family.method_cfg.tv_weight == METHODS["dip_tv_joint"].config().tv_weight
    off = resolve({"method": {"name": "dip_tv_joint"}, "dataset": {"name": "walnut", "image_size": 32}}, presets=False)
    assert off.presets == {} and off.run_id != run.run_id


def test_a_malformed_preset_is_one_line_naming_the_file(preset_root):
    path = preset_root / "ct" / "dip_tv_joint.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("method: dip_tv_joint\nfamily: ct\nvalues:\n  tv_wieght: {value: 1, source: 'paper: x'}\n")
    with pytest.raises(ConfigError, match=r"dip_tv_joint.yaml: 'tv_wieght' is not a setting of dip_tv_joint"):
        load_preset("dip_tv_joint", "ct", METHODS["dip_tv_joint"].config)
    path.write_text("method: dip_tv_joint\nfamily: ct\nvalues:\n  tv_weight: {value: 1}\n")
    with pytest.raises(ConfigError, match="needs a value and a source"):
        load_preset("dip_tv_joint", "ct", METHODS["dip_tv_joint"].config)


def test_the_shipped_presets_load_and_every_value_has_a_source():
    for path in sorted(presets.PRESETS_DIR.glob("*/*.yaml")):
        family, method = path.parent.name, path.stem
        values = load_preset(method, family, METHODS[method].config)
        assert values and all(v.source.startswith(("paper:", "calibrated:")) for v in values.values()), path


def test_the_rule_picks_the_best_mean_and_a_failed_trial_ranks_last():
    table = pd.DataFrame({"w": [0.1, 0.1, 1.0, 1.0, 10.0, 10.0], "calibration_image": ["a", "b"] * 3,
                          "status": ["finished"] * 5 + ["failed"], "peak_psnr": [20, 22, 23, 22, 30, None],
                          "es_psnr": [21, 22, 20, 21, 25, None], "final_psnr": [18, 20, 22, 21, 29, None]})
    values, summary = choose(table, ["w"], "peak")
    assert values == {"w": 1.0}  # mean 22.5 beats 21; w = 10 failed on one image: −inf, whatever its other score
    assert summary.set_index("w").loc[10.0, "failed"] == 1
    assert choose(table, ["w"], "es")[0] == {"w": 0.1}  # mean early-stopped 21.5 beats 20.5


def _image_of(run) -> tuple:
    """What a run measures: its dataset, source and image (after defaults)."""
    cfg = run.dataset_cfg
    return run.dataset, getattr(cfg, "source", None), getattr(cfg, "image", None)


def test_the_calibration_images_are_not_the_evaluated_ones():
    from benchmark.suites import available_suites, load_suite

    # every image a suite reconstructs with a DIP method; not theory_quick's head CT, whose NTK spectrum at
    # initialisation (ntk_eigen) no tuned weight enters
    evaluated = {_image_of(run) for name in available_suites() for run in load_suite(name).runs
                 if METHODS[run.method].kind == MethodKind.DIP and run.method != "ntk_eigen"}
    assert ("fastmri_knee", "embedded", "shoulder") in evaluated  # the collection sees the MRI suites' image
    for family in PROTOCOLS:
        for run in tune_suite("dip_tv_joint", family).runs:
            assert run.dataset != "walnut"
            assert _image_of(run) not in evaluated, f"{family}: {_image_of(run)} is evaluated by a suite"


@pytest.mark.slow
def test_tune_runs_end_to_end_resumes_after_sigkill_and_its_preset_is_used(tmp_path, preset_root, capsys):
    results, out_root = tmp_path / "results", tmp_path / "written"
    args = ["tune", "dip_tv_joint", "--family", "ct", "--points", "2", "--results", str(results),
            "--presets-dir", str(out_root), *TINY_CT]
    suite_dir = results / "tune__dip_tv_joint__ct"
    proc = cli(*args, "--set", "run.max_steps=150", env={"OMP_NUM_THREADS": "1"})
    wait_for(lambda: suite_dir.is_dir() and any((p / "metrics.json").exists() for p in suite_dir.iterdir()
                                                 if not p.name.startswith(".")), 300, "a first stored trial", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    before = fingerprints(suite_dir)
    assert 1 <= len(before) < 4
    capsys.readouterr()
    assert main([*args, "--set", "run.max_steps=150"]) == 0
    out = capsys.readouterr().out
    assert f"{len(before)} already finished, {4 - len(before)} to run" in out
    after = fingerprints(suite_dir)
    assert {r: after[r] for r in before} == before  # stored trials untouched
    preset = out_root / "ct" / "dip_tv_joint.yaml"
    table = pd.read_csv(preset.with_suffix(".table.csv"))
    assert len(table) == 4 and table["chosen"].sum() == 2 and set(table["tv_weight"]) == {0.001, 3.0}
    chosen = float(table.loc[table["chosen"], "tv_weight"].iloc[0])
    value = load_preset("dip_tv_joint", "ct", METHODS["dip_tv_joint"].config, out_root)["tv_weight"]
    assert value.value == chosen and value.source.startswith("calibrated: suite tune__dip_tv_joint__ct")
    # the next run of the family uses it (the presets folder pointed at what tune wrote)
    presets.PRESETS_DIR = out_root
    run = resolve({"method": {"name": "dip_tv_joint"}, "dataset": {"name": "walnut", "image_size": 32}})
    assert run.method_cfg.tv_weight == chosen and run.presets["tv_weight"] == value.source
    # a second tune of the same grid reruns nothing
    assert main([*args, "--set", "run.max_steps=150"]) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().out


def test_tune_refuses_a_method_without_tunables_and_an_unknown_family():
    with pytest.raises(ConfigError, match="declares no tunable"):
        tune_suite("vanilla_dip", "ct")
    with pytest.raises(ConfigError, match="no calibration protocol for family 'xray'"):
        tune_suite("dip_tv_joint", "xray")


@pytest.mark.parametrize("family", sorted(PROTOCOLS))
def test_a_method_with_its_own_network_is_calibrated_on_it_and_a_unet_method_on_the_protocols(family):
    drp = tune_suite("deep_random_projector", family).runs[0].method_cfg
    default = METHODS["deep_random_projector"].config()
    assert (drp.net, drp.lr, drp.optimizer) == (default.net, default.lr, default.optimizer)  # DRP's skip net, lr 0.1
    joint = tune_suite("dip_tv_joint", family).runs[0].method_cfg
    settings = PROTOCOLS[family].settings
    assert (joint.lr, joint.net.name) == (settings["method.lr"], settings["method.net"]["name"])


def test_the_report_draws_a_sensitivity_figure_per_calibrated_method_and_lists_the_others(tmp_path):
    from reports.sensitivity import write_sensitivity

    root = tmp_path / "presets"
    (root / "ct").mkdir(parents=True)
    grid = Tunable(1e-3, 3.0).grid(3)
    table = pd.DataFrame({"tv_weight": [w for w in grid for _ in range(2)], "calibration_image": ["head", "ellipses/0"] * 3,
                          "status": "finished", "peak_psnr": [20, 21, 23, 22, 19, 18], "peak_step": 10,
                          "es_psnr": [19, 20, 22, 21, 18, 17], "final_psnr": [15, 16, 22, 21, 19, 18], "rule": "peak"})
    table["chosen"] = table["tv_weight"] == grid[1]
    table.to_csv(root / "ct" / "dip_tv_joint.table.csv", index=False)
    write_preset("dip_tv_joint", "ct", {"tv_weight": PresetValue(grid[1], "calibrated: test table")}, root=root)
    written = write_sensitivity(tmp_path / "out", root)
    assert (tmp_path / "out" / "sensitivity" / "ct__dip_tv_joint.png") in written
    text = (tmp_path / "out" / "sensitivity.md").read_text()
    assert f"dip_tv_joint: tv_weight = {grid[1]:g}" in text and "calibrated: test table" in text
    assert "Not calibrated for ct yet" in text and "`dip_tv_hqs`" in text


def test_a_calibrated_value_used_at_another_size_is_recorded_as_transferred(preset_root):
    write_preset("dip_tv_joint", "ct", {"tv_weight": PresetValue(0.2, "calibrated: test", 64)})
    same = resolve({"method": {"name": "dip_tv_joint"}, "dataset": {"name": "walnut", "image_size": 64}})
    other = resolve({"method": {"name": "dip_tv_joint"}, "dataset": {"name": "walnut", "image_size": 128}})
    assert same.presets["tv_weight"] == "calibrated: test"
    assert other.presets["tv_weight"] == "transferred from 64²: calibrated: test" and other.method_cfg.tv_weight == 0.2


def test_a_suite_with_oracle_reports_the_transferred_setting_beside_the_best_in_hindsight(tmp_path, preset_root, capsys):
    write_preset("dip_tv_joint", "natural", {"tv_weight": PresetValue(0.05, "calibrated: test")})
    suite = tmp_path / "oracle.yaml"
    suite.write_text("name: oracle\nmethods: [dip_tv_joint, degraded]\ndatasets: [denoising]\nseeds: [0]\n"
                     f"oracle: {{points: 2}}\nset:\n  dataset.crop: 16\n  method.net: {NET}\n  run.max_steps: 8\n"
                     "  run.stopping.running_variance.window: 4\n")
    results, out = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(suite), "--results", str(results)]) == 0
    assert "4 runs" in capsys.readouterr().out  # the transferred run, 2 oracle trials, the baseline
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    text = (out / "oracle" / "table.md").read_text()
    section = text.split("## Transferred vs oracle setting")[1]
    assert "| dip_tv_joint" in section and "tv_weight=0.05" in section and "settings tried" in section
    main_table = text.split("## Per run")[1].split("##")[0]
    assert main_table.count("dip_tv_joint") == 1  # the oracle trials are not rows of the suite's tables
    claims = (out / "claims.md").read_text()
    assert "| oracle setting (suite: measured) |" in claims  # the claims are also judged at the oracle setting


def test_a_choice_at_the_edge_of_the_range_says_so(tmp_path, capsys):
    from benchmark.calibration import write_calibrated_preset

    suite = tune_suite("dip_tv_joint", "ct", points=2)
    table = pd.DataFrame({"tv_weight": [0.001, 0.001, 3.0, 3.0], "calibration_image": ["head", "ellipses"] * 2,
                          "status": "finished", "peak_psnr": [20, 21, 25, 24], "peak_step": 5, "es_psnr": 19,
                          "final_psnr": 18, "code": "abc"})
    path = write_calibrated_preset(suite, table, "peak", tmp_path)
    assert "at the edge of the searched range (tv_weight)" in path.read_text()
    assert "widen the Tunable range" in capsys.readouterr().err
