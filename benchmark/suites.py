"""Suites: declarative grids (YAML) of methods × datasets × seeds × settings.

A suite file (``benchmark/suites/<name>.yaml``)::

    name: default
    description: …
    experiment: A-F3            # optional id(s) of reference/experiments.md
    methods: [vanilla_dip, {name: vanilla_dip, input: fbp}]
    datasets: [denoising]
    seeds: [0, 1]
    set:  {dataset.crop: 64, run.max_steps: 1500}      # applied to every run
    grid: {dataset.image: [astronaut, coffee]}         # cartesian product
          # a value {image_set: a_fig3} expands to that named image set

Baselines (methods without a network) run once per dataset setting, not per seed, and
ignore DIP settings (``method.*`` keys they do not have, ``run.max_steps``, …), so
changing those never reruns a baseline.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmark.config import ConfigError, RunConfig, resolve, set_dotted

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_KEYS = {"name", "description", "experiment", "methods", "datasets", "seeds", "set", "grid", "notes"}


@dataclass
class Suite:
    name: str
    description: str
    runs: list[RunConfig]
    raw: dict


def available_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SUITES_DIR.glob("*.yaml"))}


def load_suite(name_or_path: str, overrides: dict | None = None) -> Suite:
    """Read, validate and expand a suite; ``overrides`` (``--set``) win over the file."""
    path = Path(name_or_path)
    if not path.suffix:
        suites = available_suites()
        if name_or_path not in suites:
            raise ConfigError(f"unknown suite {name_or_path!r}; valid: {', '.join(suites)} (or a path to a .yaml file)")
        path = suites[name_or_path]
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown suite key(s) {', '.join(unknown)}; valid: {', '.join(sorted(SUITE_KEYS))}")
    for key in ("methods", "datasets"):
        if not raw.get(key):
            raise ConfigError(f"{path}: suite needs a non-empty '{key}' list")
    runs = expand(raw, overrides or {})
    return Suite(raw.get("name", path.stem), raw.get("description", ""), runs, raw)


def _entry(item) -> dict:
    return {"name": item} if isinstance(item, str) else dict(item)


def _grid_values(key: str, values, dataset_source: str | None) -> list:
    if isinstance(values, dict) and "image_set" in values:
        from datamodules.sources.image_sets import images_in_set

        return list(images_in_set(values["image_set"], dataset_source or "skimage"))
    return values if isinstance(values, list) else [values]


def expand(raw: dict, overrides: dict) -> list[RunConfig]:
    from methods.registry import load_all

    methods = load_all()
    seeds = raw.get("seeds", [0])
    fixed = dict(raw.get("set") or {})
    grid = dict(raw.get("grid") or {})
    runs, seen = [], set()
    for method_item in raw["methods"]:
        for dataset_item in raw["datasets"]:
            m, d = _entry(method_item), _entry(dataset_item)
            source = {**fixed, **overrides}.get("dataset.source", d.get("source"))
            keys = list(grid)
            value_lists = [_grid_values(k, grid[k], source) for k in keys]
            is_baseline = m.get("name") in methods and methods[m["name"]].kind == "baseline"
            for combo in itertools.product(*value_lists):
                for seed in ([0] if is_baseline else seeds):
                    config = {"method": dict(m), "dataset": dict(d), "run": {"seed": seed}}
                    for key, value in [*fixed.items(), *zip(keys, combo), *overrides.items()]:
                        if is_baseline and _not_for_baselines(key, methods[m["name"]].config):
                            continue  # DIP settings do not apply to (nor change the id of) baselines
                        set_dotted(config, key, value)
                    run = resolve(config)
                    if run.run_id not in seen:
                        seen.add(run.run_id)
                        runs.append(run)
    return runs


BASELINE_RUN_KEYS = {"run.save_images", "run.accelerator"}


def _not_for_baselines(key: str, config_cls) -> bool:
    if key.startswith("method."):
        return key.split(".")[1] not in _fields(config_cls)
    return key.startswith("run.") and key not in BASELINE_RUN_KEYS


def _fields(cls) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}
