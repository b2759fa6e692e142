"""Plugins outside the project (benchmark/plugins.py): a method and a dataset defined in a
file in tmp_path run through ``--plugins``, through a suite's ``plugins:`` key, and through
an entry point of a distribution pip-installed for the test; ``list`` says where each name
comes from; a broken plugin is reported and everything else keeps working; a plugin that
reuses a name fails with both sources named."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from benchmark import plugins
from benchmark.cli import main
from datamodules.registry import DATASETS
from datamodules.registry import load_all as load_datasets
from methods.registry import METHODS
from methods.registry import load_all as load_methods
from scoring.stopping import STOPPING_RULES

PROJECT = Path(__file__).resolve().parents[1]

# A plugin as a user would write it: a method whose trace carries its own scalar (so the run
# provably executed the plugin's code) and a dataset wrapping a built-in builder.
PLUGIN = textwrap.dedent('''
    from __future__ import annotations

    from dataclasses import dataclass

    from datamodules.registry import register_dataset
    from datamodules.tasks.denoising import DenoisingConfig, build_denoising
    from methods.base import DIPConfig, DIPModule
    from methods.registry import register_method


    @dataclass
    class TaggedDIPConfig(DIPConfig):
        tag: float = 7.0  # traced as the scalar "plugin_tag"


    @register_method("{prefix}_dip", TaggedDIPConfig, "vanilla DIP from a plugin file", "tests")
    class TaggedDIP(DIPModule):
        def training_step(self, batch, batch_idx):
            x = self.net(self.network_input())
            loss = self.data_fidelity(self.physics.A(x), batch["y"])
            return {{"loss": loss, "x": x.detach(), "scalars": {{"plugin_tag": self.cfg.tag}}}}


    @dataclass
    class PhotoConfig(DenoisingConfig):
        pass


    @register_dataset("{prefix}_photo", PhotoConfig, "denoising from a plugin file",
                      capabilities={{"linear", "real_image", "natural_image"}})
    def build_photo(cfg):
        task = build_denoising(cfg)
        task.provenance = "from a plugin: " + task.provenance
        return task
''')

NET = "{name: unet, scales: 3, channels: 8, skip_channels: [0, 4, 4]}"


def write_plugin(folder: Path, prefix: str, name: str = "my_plugin.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(PLUGIN.format(prefix=prefix))
    return path


def write_suite(folder: Path, prefix: str, plugins_key: str = "", steps: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(f"name: plugged\n{plugins_key}methods: [{prefix}_dip]\ndatasets: [{prefix}_photo]\nseeds: [0]\n"
                    f"set:\n  dataset.crop: 16\n  method.net: {NET}\n  run.max_steps: {steps}\n  run.trace_every: 2\n"
                    "  run.stopping.running_variance: {window: 3, patience: 4}\n")
    return path


def stored(results: Path) -> tuple[dict, pd.DataFrame]:
    (run_dir,) = [p for p in (results / "plugged").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return json.loads((run_dir / "metrics.json").read_text()), pd.read_parquet(run_dir / "trace.parquet")


@pytest.fixture(autouse=True)
def isolated_registries():
    """Every test's plugins are forgotten afterwards (registries, plugin records, modules)."""
    load_methods(), load_datasets()  # the built-ins register once per process: keep them in the snapshot
    saved = [(d, dict(d)) for d in (METHODS, DATASETS, STOPPING_RULES, plugins.PLUGINS)]
    scanned, modules = plugins._scanned_path, set(sys.modules)
    yield
    for d, content in saved:
        d.clear()
        d.update(content)
    plugins._scanned_path = scanned
    for name in set(sys.modules) - modules:
        if name.startswith(("dipbench_plugin_", "dipbench_testplug")):
            del sys.modules[name]


def test_plugin_file_via_cli_option_runs_and_list_shows_its_origin(tmp_path, capsys):
    plugin = write_plugin(tmp_path / "elsewhere", "opt")
    suite, results = write_suite(tmp_path, "opt"), tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "--plugins", str(plugin)]) == 0, capsys.readouterr().err
    metrics, trace = stored(results)
    assert metrics["status"] == "finished" and metrics["method"] == "opt_dip" and metrics["dataset"] == "opt_photo"
    assert metrics["provenance"].startswith("from a plugin: ")
    assert (trace["plugin_tag"] == 7.0).all() and trace["step"].max() == 8  # the plugin's training_step ran
    capsys.readouterr()
    assert main(["list", "--json", "--plugins", str(plugin)]) == 0
    listing = json.loads(capsys.readouterr().out)
    origin = f"file {plugin.resolve()}"
    assert listing["methods"]["opt_dip"]["origin"] == origin and listing["datasets"]["opt_photo"]["origin"] == origin
    assert listing["methods"]["vanilla_dip"]["origin"] == "built-in methods.vanilla_dip"
    assert listing["plugins"][origin] == {"kind": "file", "methods": ["opt_dip"], "datasets": ["opt_photo"],
                                          "stopping_rules": []}
    assert main(["list", "--plugins", str(plugin)]) == 0
    assert any("opt_dip" in line and f"[{origin}]" in line for line in capsys.readouterr().out.splitlines())


def test_plugin_file_via_suite_key_relative_to_the_suite(tmp_path, capsys):
    write_plugin(tmp_path / "suites" / "lib", "key")
    suite = write_suite(tmp_path / "suites", "key", plugins_key="plugins: [lib/my_plugin.py]\n", steps=4)
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results)]) == 0, capsys.readouterr().err
    metrics, trace = stored(results)
    assert metrics["status"] == "finished" and metrics["method"] == "key_dip"
    assert (trace["plugin_tag"] == 7.0).all()
    assert METHODS["key_dip"].origin == f"file {(tmp_path / 'suites' / 'lib' / 'my_plugin.py').resolve()}"


def test_suite_plugin_errors_name_the_file(tmp_path, capsys):
    suite = write_suite(tmp_path, "gone", plugins_key="plugins: [missing.py]\n")
    assert main(["run", str(suite), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "plugins[0]" in err and str(tmp_path / "missing.py") in err and "does not exist" in err
    (tmp_path / "bad.py").write_text("import not_a_module_anywhere\n")
    suite = write_suite(tmp_path, "gone", plugins_key="plugins: [bad.py]\n")
    assert main(["run", str(suite), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.py" in err and "failed to import" in err and "not_a_module_anywhere" in err
    assert not (tmp_path / "r").exists()  # nothing ran, nothing stored


def test_broken_plugin_is_listed_and_other_commands_keep_working(tmp_path, capsys):
    bad = tmp_path / "broken_plugin.py"
    bad.write_text(PLUGIN.format(prefix="half") + "\nraise RuntimeError('deliberately broken after registering')\n")
    assert main(["list", "--json", "--plugins", str(bad)]) == 0
    listing = json.loads(capsys.readouterr().out)
    origin = f"file {bad.resolve()}"
    assert "deliberately broken" in listing["broken"][origin]["error"]
    assert "half_dip" not in listing["methods"] and "half_photo" not in listing["datasets"]  # rolled back
    assert "vanilla_dip" in listing["methods"] and "default" in listing["suites"]
    assert main(["list", "--plugins", str(bad)]) == 0
    out = capsys.readouterr().out
    assert "broken plugin files" in out and origin in out
    # run: a warning, and a suite needing the broken plugin's method fails with a hint
    suite = write_suite(tmp_path, "half")
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--plugins", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "warning: plugin" in err and "unknown method 'half_dip'" in err and "failed to import" in err
    assert main(["run", str(suite), "--plugins", str(tmp_path / "nope.py")]) == 2
    assert "nope.py does not exist" in capsys.readouterr().err


def test_plugin_reusing_a_name_is_an_error_naming_both_sources(tmp_path, capsys):
    clash = tmp_path / "clash.py"
    clash.write_text(PLUGIN.format(prefix="clash").replace('"clash_dip"', '"vanilla_dip"'))
    suite = write_suite(tmp_path, "clash")
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--plugins", str(clash)]) == 2
    err = capsys.readouterr().err
    assert f"method 'vanilla_dip' from file {clash.resolve()} is already registered by built-in methods.vanilla_dip" in err
    assert "another name" in err
    assert METHODS["vanilla_dip"].origin == "built-in methods.vanilla_dip" and "clash_photo" not in DATASETS
    assert main(["list", "--json", "--plugins", str(clash)]) == 0  # list keeps working and shows it
    assert "already registered" in json.loads(capsys.readouterr().out)["broken"][f"file {clash.resolve()}"]["error"]


@pytest.fixture
def installed_distribution(tmp_path) -> Path:
    """A real distribution with a ``dipbench.plugins`` entry point, built from its
    pyproject.toml and pip-installed (offline) into a folder of its own, which the test puts
    on the path: the shared venv is never changed, and tmp_path removes it afterwards."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "dipbench_testplug.py").write_text(PLUGIN.format(prefix="ep"))
    (dist / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "dipbench-testplug"
        version = "0.1"

        [project.entry-points."dipbench.plugins"]
        testplug = "dipbench_testplug"

        [tool.setuptools]
        py-modules = ["dipbench_testplug"]
    '''))
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(site), str(dist)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (site / "dipbench_testplug-0.1.dist-info" / "entry_points.txt").exists()
    return site


def test_entry_point_plugin_runs_in_a_fresh_interpreter_and_is_listed(installed_distribution, tmp_path, monkeypatch,
                                                                       capsys):
    site, results = installed_distribution, tmp_path / "results"
    suite = write_suite(tmp_path, "ep", steps=4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(PROJECT)])}
    done = subprocess.run([sys.executable, "-m", "benchmark", "run", str(suite), "--results", str(results)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics, trace = stored(results)
    assert metrics["status"] == "finished" and metrics["method"] == "ep_dip" and (trace["plugin_tag"] == 7.0).all()
    # in this process: the distribution appears on the path like any installed one
    assert "ep_dip" not in METHODS
    monkeypatch.syspath_prepend(str(site))
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    origin = "entry point testplug = dipbench_testplug (distribution dipbench-testplug 0.1)"
    assert listing["methods"]["ep_dip"]["origin"] == origin and listing["datasets"]["ep_photo"]["origin"] == origin
    assert listing["plugins"][origin]["methods"] == ["ep_dip"]
