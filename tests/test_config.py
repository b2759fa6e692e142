import json
from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional

import pytest

from benchmark.cli import main
from benchmark.config import ConfigError, check_compatible_sizes, from_dict, parse_value, resolve
from benchmark.suites import load_suite
from core.schema import PositiveInt, Probability, Range
from methods.networks import NetConfig, SkipNetConfig, UNetConfig
from methods.networks.config import NETWORKS


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


# -- value validation at resolution -------------------------------------------------------


@dataclass
class Settings:
    optimizer: Literal["adam", "sgd"] = "adam"
    mode: Optional[Literal["a", "b"]] = None
    steps: PositiveInt = 10
    clip: Optional[Annotated[float, Range(gt=0)]] = 1.0
    ratio: Annotated[Optional[float], Range(ge=0, le=1)] = None
    p: Probability = 0.5
    weights: list[float] = field(default_factory=lambda: [1.0])
    sizes: list[int] = field(default_factory=list)
    net: NetConfig = field(default_factory=lambda: UNetConfig(scales=3, channels=16, skip_channels=[0, 4, 4]))


def test_a_wrong_choice_names_the_dotted_key_and_lists_the_valid_values():
    with pytest.raises(ConfigError, match=r"^method\.optimizer = 'adamw' is not a valid choice; valid: adam, sgd$"):
        from_dict(Settings, {"optimizer": "adamw"}, "method")
    with pytest.raises(ConfigError, match=r"method\.mode = 'c' is not a valid choice; valid: a, b"):
        from_dict(Settings, {"mode": "c"}, "method")
    assert from_dict(Settings, {"optimizer": "sgd", "mode": None}, "method").optimizer == "sgd"


def test_a_wrong_dataset_choice_fails_at_resolution():
    error = r"dataset\.mask_type = 'nope' is not a valid choice; valid: random, box, blocks$"
    with pytest.raises(ConfigError, match=error):
        resolve({"method": {"name": "degraded"}, "dataset": {"name": "inpainting", "mask_type": "nope"}})


def test_ranges_are_checked_after_the_type_also_inside_optional():
    with pytest.raises(ConfigError, match=r"^method\.steps = -1 is out of range; must be >= 1$"):
        from_dict(Settings, {"steps": -1}, "method")
    with pytest.raises(ConfigError, match=r"method\.steps = 'x' has the wrong type; expected int >= 1"):
        from_dict(Settings, {"steps": "x"}, "method")
    with pytest.raises(ConfigError, match=r"method\.clip = 0\.0 is out of range; must be > 0"):
        from_dict(Settings, {"clip": 0}, "method")
    with pytest.raises(ConfigError, match=r"method\.ratio = 2\.0 is out of range; must be in \[0, 1\]"):
        from_dict(Settings, {"ratio": 2}, "method")
    with pytest.raises(ConfigError, match=r"method\.p = 1\.5 is out of range; must be in \[0, 1\]"):
        from_dict(Settings, {"p": 1.5}, "method")
    ok = from_dict(Settings, {"clip": None, "ratio": None, "p": 1}, "method")
    assert ok.clip is None and ok.ratio is None and ok.p == 1.0 and isinstance(ok.p, float)


def test_list_elements_are_checked_and_ints_count_as_floats():
    ok = from_dict(Settings, {"weights": [1, 2.5], "sizes": [3, 4]}, "method")
    assert ok.weights == [1.0, 2.5] and all(isinstance(w, float) for w in ok.weights)
    with pytest.raises(ConfigError, match=r"method\.sizes\[1\] = 2\.5 has the wrong type; expected int"):
        from_dict(Settings, {"sizes": [1, 2.5]}, "method")
    with pytest.raises(ConfigError, match=r"method\.weights = 3 has the wrong type; expected list of float"):
        from_dict(Settings, {"weights": 3}, "method")


def test_a_tagged_net_field_merges_over_its_default_or_over_the_chosen_class_defaults():
    assert from_dict(Settings, {}, "method").net == UNetConfig(scales=3, channels=16, skip_channels=[0, 4, 4])
    same = from_dict(Settings, {"net": {"norm": "batch"}}, "method").net  # no name: the default's class
    assert same == UNetConfig(scales=3, channels=16, skip_channels=[0, 4, 4], norm="batch")
    other = from_dict(Settings, {"net": {"name": "skipnet", "upsample": "bilinear"}}, "method").net
    assert other == SkipNetConfig(upsample="bilinear")  # a different class: over its own defaults


def test_a_tagged_net_field_lists_valid_names_keys_and_choices():
    valid = "valid: " + ", ".join(sorted(NETWORKS))  # every registered network
    with pytest.raises(ConfigError, match=r"method\.net\.name = 'nope' is not a valid choice; " + valid):
        from_dict(Settings, {"net": {"name": "nope"}}, "method")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) method\.net\.depth; valid keys of method\.net: channels"):
        from_dict(Settings, {"net": {"name": "skipnet", "depth": 3}}, "method")
    norm_error = r"method\.net\.norm = 'batchnorm' is not a valid choice; valid: group, batch, none$"
    with pytest.raises(ConfigError, match=norm_error):
        from_dict(Settings, {"net": {"norm": "batchnorm"}}, "method")
    with pytest.raises(ConfigError, match=r"method\.net must be a mapping"):
        from_dict(Settings, {"net": "unet"}, "method")


def test_a_constructor_value_error_becomes_a_config_error_naming_the_section():
    with pytest.raises(ConfigError, match=r"method\.net: skip_channels needs one entry per scale \(4\)"):
        from_dict(Settings, {"net": {"scales": 4}}, "method")


def test_net_name_switches_the_config_class_through_resolve():
    net = {"name": "skipnet", "scales": 3, "skip_channels": [4, 4, 4]}
    run = resolve({"method": {"name": "vanilla_dip", "net": net}, "dataset": {"name": "denoising"}})
    assert isinstance(run.method_cfg.net, SkipNetConfig) and run.to_dict()["method"]["net"]["name"] == "skipnet"
    with pytest.raises(ConfigError, match=r"valid: group, batch, none"):
        resolve({"method": {"name": "vanilla_dip", "net": {"norm": "batchnorm"}}, "dataset": {"name": "denoising"}})


def test_set_values_read_every_common_float_notation_and_keep_ints():
    assert parse_value("1e-3") == 0.001 and parse_value("1.0e6") == 1e6 and parse_value("1E6") == 1e6
    assert parse_value("-2.5e-4") == -2.5e-4 and parse_value(".5") == 0.5 and parse_value("1.") == 1.0
    assert parse_value("inf") == parse_value(".inf") == float("inf") and parse_value("nan") != parse_value("nan")
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("[1e-3, 2]") == [0.001, 2] and isinstance(parse_value("[1e-3, 2]")[1], int)
    assert parse_value("coffee") == "coffee" and parse_value("null") is None and parse_value("true") is True


def test_negative_sigma_and_too_small_crops_fail_at_resolution():
    for dataset, message in [({"sigma": -1}, r"dataset\.sigma = -1\.0 is out of range; must be >= 0"),
                             ({"crop": 0}, r"dataset\.crop = 0 is out of range; must be >= 8"),
                             ({"crop": 1}, r"dataset\.crop = 1 is out of range; must be >= 8")]:
        with pytest.raises(ConfigError, match=message):
            resolve({"method": {"name": "degraded"}, "dataset": {"name": "denoising", **dataset}})


def test_an_image_smaller_than_the_network_minimum_fails_naming_both_keys():
    with pytest.raises(ConfigError, match=r"dataset\.crop = 16 is smaller than the network's minimum input size 32 "
                                          r"\(method\.net\.scales = 6\); use a larger crop or fewer scales"):
        resolve({"method": {"name": "vanilla_dip"}, "dataset": {"name": "denoising", "crop": 16}})
    with pytest.raises(ConfigError, match=r"dataset\.image_size = 16 is smaller .* size 32"):
        resolve({"method": {"name": "vanilla_dip"}, "dataset": {"name": "walnut", "image_size": 16}})
    run = resolve({"method": {"name": "degraded"}, "dataset": {"name": "denoising", "crop": 16}})
    run.method_cfg = Settings()  # a net of 3 scales: minimum 4
    check_compatible_sizes(run)


def _suite(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmethods: [vanilla_dip, degraded]\ndatasets: [denoising]\n" + text)
    return str(path)


TINY_NET = "  method.net: {scales: 3, channels: 8, skip_channels: [0, 4, 4]}\n"


def test_suite_numbers_in_exponent_notation_load_as_floats(tmp_path):
    suite = load_suite(_suite(tmp_path, "set:\n  method.lr: 1e-3\n  dataset.sigma: 1.5E1\n" + TINY_NET))
    dip = next(r for r in suite.runs if r.method == "vanilla_dip")
    assert dip.method_cfg.lr == 0.001 and dip.dataset_cfg.sigma == 15.0


def test_keys_of_a_suite_entry_win_over_set(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("methods: [vanilla_dip, {name: vanilla_dip, lr: 5e-3, net: {channels: 16}}]\n"
                    "datasets: [denoising]\nset:\n  method.lr: 1e-2\n" + TINY_NET)
    runs = load_suite(str(path)).runs
    assert {(r.method_cfg.lr, r.method_cfg.net.channels) for r in runs} == {(0.01, 8), (0.005, 16)}
    assert all(r.method_cfg.net.scales == 3 for r in runs)  # mappings merge key by key


def test_an_entry_naming_another_network_replaces_the_set_network_instead_of_merging(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("methods: [vanilla_dip, {name: vanilla_dip, net: {name: deep_decoder, layers: 3, channels: 4}},\n"
                    "          {name: vanilla_dip, lr: 5e-3, net: {name: unet, channels: 16}}]\n"
                    "datasets: [denoising]\nset:\n  method.net: {name: unet, scales: 3, channels: 8, skip_channels: [0, 4, 4]}\n")
    nets = {r.method_cfg.lr: r.method_cfg.net for r in load_suite(str(path)).runs if r.method_cfg.net.name == "unet"}
    decoder = [r.method_cfg.net for r in load_suite(str(path)).runs if r.method_cfg.net.name == "deep_decoder"]
    assert [(n.layers, n.channels) for n in decoder] == [(3, 4)]  # no U-Net key (scales, skips) leaked into it
    assert nets[5e-3].channels == 16 and nets[5e-3].scales == 3  # same component: merged key by key


def test_a_grid_key_also_given_by_an_entry_is_ambiguous(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("methods: [{name: vanilla_dip, lr: 5e-3}]\ndatasets: [denoising]\n"
                    "grid:\n  method.lr: [1e-2, 1e-3]\n")
    with pytest.raises(ConfigError, match=r"grid key method\.lr is also given by the entry of methods\[0\]"):
        load_suite(str(path))


def test_two_entries_giving_the_same_dip_run_fail_but_baselines_are_deduplicated(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("methods: [vanilla_dip, {name: vanilla_dip, lr: 0.01}, degraded]\ndatasets: [denoising]\n"
                    "set:\n  method.lr: 0.01\n" + TINY_NET)
    with pytest.raises(ConfigError, match=r"methods\[0\] vanilla_dip .* and methods\[1\] .* are the same run"):
        load_suite(str(path))
    runs = load_suite(_suite(tmp_path, "seeds: [0, 1]\nset:\n" + TINY_NET)).runs
    assert [r.method for r in runs].count("degraded") == 1 and [r.method for r in runs].count("vanilla_dip") == 2


def test_set_overrides_win_and_warn_when_they_collapse_runs(tmp_path, capsys):
    path = _suite(tmp_path, "set:\n  method.lr: 1e-2\n" + TINY_NET + "grid:\n  dataset.image: [astronaut, coffee]\n")
    runs = load_suite(path, {"dataset.image": "coffee", "method.lr": 0.02}).runs
    assert {(r.method, r.dataset_cfg.image) for r in runs} == {("vanilla_dip", "coffee"), ("degraded", "coffee")}
    assert all(r.method_cfg.lr == 0.02 for r in runs if r.method == "vanilla_dip")
    err = capsys.readouterr().err
    assert "collapses 4 runs" in err and "into 2" in err and "dataset.image" in err
    load_suite(path, {"method.lr": 0.02})
    assert capsys.readouterr().err == ""


def test_set_can_switch_the_network_class_of_a_suite(tmp_path):
    runs = load_suite(_suite(tmp_path, "set:\n" + TINY_NET), {"method.net.name": "skipnet"}).runs
    net = next(r for r in runs if r.method == "vanilla_dip").method_cfg.net
    assert net == SkipNetConfig(scales=3, channels=8, skip_channels=[0, 4, 4])


def test_missing_and_malformed_suite_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"suite file .*missing\.yaml does not exist"):
        load_suite(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "broken.yaml"
    bad.write_text("methods: [vanilla_dip\ndatasets: [denoising]\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: malformed YAML at line \d+"):
        load_suite(str(bad))
