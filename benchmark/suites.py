"""Suites: declarative grids (YAML) of methods × datasets × seeds × settings.

A suite file (``benchmark/suites/<name>.yaml``)::

    name: default               # optional (default: the file name); the suite's folder of the results:
                                # letters, digits, '.', '_', '-', not starting with '.'
    description: …
    experiment: A-F3            # optional experiment id(s): A-F3 = Survey A Fig. 3, B-T2 = Survey B Table 2
    methods: [vanilla_dip, {name: vanilla_dip, input: fbp}]
    datasets: [denoising]
    seeds: [0, 1]               # a non-empty list of non-negative integers
    set:  {dataset.crop: 64, run.max_steps: 1500}      # defaults of every run
    grid: {dataset.image: [astronaut, coffee]}         # cartesian product
          # a value {image_set: a_fig3} expands to that named image set
    plugins: [my_methods.py]    # optional: files registering methods/datasets (paths relative
                                # to this file; benchmark/plugins.py), loaded before expansion
    presets: true               # optional (default true): fill unset task-dependent settings from
                                # the method's preset for the dataset's family
    batch: seeds                # optional: the runs that differ only in seed are optimised together in
                                # one process (benchmark/batched.py; docs/conventions.md §19)
    oracle: {points: 4}         # optional: also sweep every DIP method's tunables on these
                                # measurements (the surveys' tuning), reported beside the preset

Presets: a method's settings that depend on the task family come from its preset
(``methods/presets/<family>/<method>.yaml``) unless the suite gives them; ``presets: false``
runs every method with its config defaults instead.

Precedence (mappings merge key by key, except that a mapping naming another component, e.g.
``net: {name: deep_decoder}`` over a ``set:`` U-Net, replaces it): ``set`` < ``grid`` < keys of a ``methods`` /
``datasets`` entry < ``--set`` overrides. A grid key that an entry also gives is an error
(ambiguous), and so are two DIP runs of the file that resolve to the same run id. If
``--set`` makes distinct runs of the file coincide, a warning on stderr says how many; so
does a stopping rule whose window is longer than ``run.max_steps`` (it can pick nothing).

Baselines (methods without a network) run once per dataset setting, not per seed, and
ignore DIP settings (``method.*`` keys they do not have, ``run.max_steps``, …), so
changing those never reruns a baseline.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmark.config import ConfigError, IncompatibleError, RunConfig, resolve, set_dotted, yaml_load
from benchmark.plugins import load_file
from core.results import MethodKind
from core.schema import MAX_SEED, tunables
from datamodules.sources.image_sets import images_in_set
from methods.registry import METHODS

SUITES_DIR = Path(__file__).parent / "suites"
# resources: executor options (benchmark/cli.py EXECUTOR_OPTIONS), not part of run ids; tune: written by
# benchmark/calibration.py for a calibration suite (method, family, tunables)
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # a suite name is a folder of the results: no '/', '..', ''
SUITE_KEYS = {"name", "description", "experiment", "methods", "datasets", "seeds", "set", "grid", "notes", "plugins",
              "resources", "presets", "tune", "oracle", "batch"}


@dataclass
class Suite:
    name: str
    description: str
    runs: list[RunConfig]
    raw: dict
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (method, dataset, reason): incompatible pairs
    plugins: list = field(default_factory=list)  # benchmark.plugins.Plugin loaded by the suite's plugins: key
    oracle: list[str] = field(default_factory=list)  # run ids of the oracle-tuning trials (suite key oracle:)


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
    if not path.is_file():
        raise ConfigError(f"suite file {path} does not exist")
    try:
        raw = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{line}: {getattr(exc, 'problem', None) or exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a suite must be a mapping with keys {', '.join(sorted(SUITE_KEYS))}")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown suite key(s) {', '.join(unknown)}; valid: {', '.join(sorted(SUITE_KEYS))}")
    for key in ("methods", "datasets"):
        if not raw.get(key) or not isinstance(raw[key], list):
            raise ConfigError(f"{path}: suite needs a non-empty '{key}' list")
    for key in ("set", "grid"):
        if not isinstance(raw.get(key) or {}, dict):
            raise ConfigError(f"{path}: '{key}' must be a mapping of dotted keys (e.g. dataset.crop: 64)")
    if raw.get("batch") not in (None, False, "seeds"):
        raise ConfigError(f"{path}: batch must be 'seeds' (optimise the runs that differ only in seed together, "
                          f"benchmark/batched.py) or false, got {raw['batch']!r}")
    name = check_suite_name(raw.get("name", path.stem), f"{path}: " + ("name" if "name" in raw else "the file name"))
    plugins = _load_plugins(raw.get("plugins"), path)
    skipped: list[tuple[str, str, str]] = []
    oracle: list[RunConfig] = []
    runs = expand(raw, overrides or {}, str(path), skipped, oracle)
    _warn_short_windows(runs, str(path))
    return Suite(name, raw.get("description", ""), runs + oracle, raw, skipped, plugins, [r.run_id for r in oracle])


def check_suite_name(name, where: str = "suite name") -> str:
    """``name`` if it is safe as a folder of the results (it becomes ``<results>/<name>``):
    letters, digits, ``.``, ``_`` and ``-``, not starting with ``.``; else one line of
    :class:`ConfigError`."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{where} {name!r} is not a valid suite name: use letters, digits, '.', '_' and '-' only, "
                          "not starting with '.' (it names the suite's folder of the results)")
    return name


def _warn_short_windows(runs: list[RunConfig], where: str) -> None:
    """A stopping rule whose window is longer than the run never fills it (never picks an
    iterate): a warning, not an error."""
    short = {}
    for run in runs:
        if METHODS[run.method].kind == MethodKind.BASELINE:
            continue
        for rule, cfg in run.run.stopping.items():
            window = getattr(cfg, "window", None)
            if isinstance(window, int) and window > run.run.max_steps:
                short.setdefault((rule, window, run.run.max_steps), []).append(run.run_id)
    for (rule, window, steps), ids in short.items():
        print(f"warning: {where}: run.stopping.{rule}.window = {window} is longer than run.max_steps = {steps} "
              f"({len(ids)} run(s)): that rule never fills its window and picks no iterate", file=sys.stderr)


def _load_plugins(paths, suite_path: Path) -> list:
    """The suite's ``plugins:`` files (relative to the suite file), imported before expansion."""
    if paths is None:
        return []
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ConfigError(f"{suite_path}: 'plugins' must be a list of .py file paths (relative to the suite file), "
                          f"got {paths!r}")
    loaded = [load_file(suite_path.parent / Path(p).expanduser(), f"{suite_path}: plugins[{i}]") for i, p in enumerate(paths)]
    for i, plugin in enumerate(loaded):
        if plugin.error:  # the suite needs it: an error here, not a warning
            raise ConfigError(f"{suite_path}: plugins[{i}] ({plugin.target}) failed to import: "
                              f"{plugin.error.splitlines()[0]}")
    return loaded


def _entry(item) -> dict:
    if not isinstance(item, (str, dict)):
        raise ConfigError(f"a methods/datasets entry must be a name or a mapping with a name, got {item!r}")
    return {"name": item} if isinstance(item, str) else dict(item)


def _flatten(value, key: str) -> dict:
    """``{"a": {"b": 1}}`` under ``key`` → ``{"key.a.b": 1}`` (mappings merge key by key; ``{}``
    replaces)."""
    if isinstance(value, dict) and value:
        return {k: v for sub, item in value.items() for k, v in _flatten(item, f"{key}.{sub}").items()}
    return {key: value}


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _grid_values(key: str, values, dataset_source: str | None) -> list:
    if isinstance(values, dict) and "image_set" in values:
        return list(images_in_set(values["image_set"], dataset_source or "skimage"))
    return values if isinstance(values, list) else [values]


def _build(names: dict, seed: int, layers: list[tuple[dict, bool]], skip) -> dict:
    """A raw run config: the layers in order of precedence, each ``(keys, filtered by skip)``."""
    config = {"method": {"name": names["method"]}, "dataset": {"name": names["dataset"]}, "run": {"seed": seed}}
    for layer, filtered in layers:
        leaves = {leaf: v for key, value in layer.items() for leaf, v in _flatten(value, key).items()}
        _drop_replaced_choices(config, {k: v for k, v in leaves.items() if not (filtered and skip(k))})
        for key, value in layer.items():
            for leaf, v in _flatten(value, key).items():
                if not (filtered and skip(leaf)):
                    set_dotted(config, leaf, copy.deepcopy(v))
    return config


def _drop_replaced_choices(config: dict, leaves: dict) -> None:
    """A layer that names another component under a key (``method.net.name: deep_decoder`` over a
    ``set:`` U-Net) replaces the mapping there instead of merging into it."""
    for leaf, value in leaves.items():
        if not leaf.endswith(".name") or leaf.count(".") < 2:  # method.name / dataset.name are the run's own
            continue
        *parents, last = leaf.removesuffix(".name").split(".")
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        old = node.get(last) if isinstance(node, dict) else None
        if isinstance(old, dict) and old.get("name") not in (None, value):
            del node[last]


def expand(raw: dict, overrides: dict, where: str = "suite", skipped: list | None = None,
           oracle: list | None = None) -> list[RunConfig]:
    """All runs of a suite (see the module doc for precedence and the duplicate checks).
    Method × dataset pairs that cannot run together are left out and appended to
    ``skipped`` as ``(method, dataset, reason)``, once per distinct reason. With the suite key
    ``oracle: {points: N}``, the oracle-tuning trials (:func:`oracle_trials`) are appended to
    ``oracle``."""
    skipped = [] if skipped is None else skipped

    methods = METHODS
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool)
                                                            and 0 <= x <= MAX_SEED for x in seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers in [0, {MAX_SEED}] (e.g. seeds: [0, 1]), "
                          f"got {seeds!r}")
    fixed, grid = dict(raw.get("set") or {}), dict(raw.get("grid") or {})
    use_presets = raw.get("presets", True)  # false: every method runs with its config defaults (methods/presets.py)
    if not isinstance(use_presets, bool):
        raise ConfigError(f"{where}: presets must be true or false, got {use_presets!r}")
    points = []  # (label, is_baseline, run of the file alone or None, final run)
    for i, method_item in enumerate(raw["methods"]):
        for j, dataset_item in enumerate(raw["datasets"]):
            m, d = _entry(method_item), _entry(dataset_item)
            names = {"method": m.pop("name", None), "dataset": d.pop("name", None)}
            entry = {k: v for part, keys in (("method", m), ("dataset", d)) for key, value in keys.items()
                     for k, v in _flatten(value, f"{part}.{key}").items()}  # never filtered for baselines
            pair = f"methods[{i}] {names['method']} × datasets[{j}] {names['dataset']}"
            clash = [(g, e) for g in grid for e in entry if _overlaps(g, e)]
            if clash:
                raise ConfigError(f"{where}: grid key {clash[0][0]} is also given by the entry of {pair} "
                                  f"({clash[0][1]}); ambiguous: remove one of them")
            source = overrides.get("dataset.source", entry.get("dataset.source", fixed.get("dataset.source")))
            keys = list(grid)
            value_lists = [_grid_values(k, grid[k], source) for k in keys]
            spec = methods.get(names["method"])
            is_baseline = spec is not None and spec.kind == MethodKind.BASELINE
            skip = (lambda key, cls=spec.config: _not_for_baselines(key, cls)) if is_baseline else (lambda key: False)
            for combo in itertools.product(*value_lists):
                for seed in ([0] if is_baseline else seeds):
                    label = ", ".join([pair, *(f"{k}={v}" for k, v in zip(keys, combo)), f"seed {seed}"])
                    layers = [(fixed, True), (dict(zip(keys, combo)), True), (entry, False)]
                    try:
                        final = _resolve(_build(names, seed, [*layers, (overrides, True)], skip), f"{where}, {label}",
                                         use_presets)
                    except IncompatibleError as exc:
                        reason = (names["method"], names["dataset"], exc.reason)
                        if reason not in skipped:
                            skipped.append(reason)
                        continue
                    alone = _try_resolve(_build(names, seed, layers, skip), use_presets) if overrides else final
                    points.append((label, is_baseline, alone, final))
    _check_no_duplicate_dip_runs(points, where)
    if overrides:
        _warn_collapsed(points, overrides, where)
    runs = {}
    for _, _, _, run in points:
        runs.setdefault(run.run_id, run)  # baselines ignore seeds and DIP keys: one run per setting
    if raw.get("oracle") and oracle is not None:
        oracle.extend(oracle_trials(list(runs.values()), raw["oracle"], where))
    return list(runs.values())


def oracle_trials(runs: list[RunConfig], options, where: str) -> list[RunConfig]:
    """The surveys' own protocol beside ours: every DIP run's declared tunables swept on the
    evaluation measurement itself (a grid of ``points`` per tunable, the other settings as in
    the run), so the report can set the transferred setting against the best one in
    hindsight (the "oracle"). Values equal to the run's own are not repeated."""
    points = options.get("points", 4) if isinstance(options, dict) else 4
    if options is not True and not (isinstance(options, dict) and set(options) <= {"points"}
                                    and isinstance(points, int) and points >= 2):
        raise ConfigError(f"{where}: oracle must be true or {{points: N}} with N >= 2, got {options!r}")
    trials = {}
    for run in runs:
        declared = tunables(METHODS[run.method].config) if METHODS[run.method].kind == MethodKind.DIP else {}
        if not declared:
            continue
        grids = [t.grid(points) for t in declared.values()]
        for combo in itertools.product(*grids):
            values = dict(zip(declared, combo))
            if all(getattr(run.method_cfg, k) == v for k, v in values.items()):
                continue
            config = run.to_dict()
            config["method"].update(values)
            recorded = {k: v for k, v in config["method"].pop("preset", {}).items() if k not in values}
            config["method"]["preset"] = recorded
            trial = resolve(config)
            trials.setdefault(trial.run_id, trial)
    return list(trials.values())


def _resolve(config: dict, label: str, presets: bool = True) -> RunConfig:
    try:
        return resolve(config, presets)
    except IncompatibleError:
        raise
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from exc


def _try_resolve(config: dict, presets: bool = True) -> RunConfig | None:
    try:
        return resolve(config, presets)
    except ConfigError:
        return None  # the file alone is incomplete; --set completes it


def _check_no_duplicate_dip_runs(points, where: str) -> None:
    seen = {}
    for label, is_baseline, alone, _ in points:
        if alone is None or is_baseline:
            continue
        if alone.run_id in seen:
            raise ConfigError(f"{where}: {seen[alone.run_id]} and {label} are the same run ({alone.run_id}); "
                              "remove the duplicate entry or grid value")
        seen[alone.run_id] = label


def _warn_collapsed(points, overrides: dict, where: str) -> None:
    groups: dict[str, dict[str, RunConfig]] = {}
    for _, _, alone, final in points:
        if alone is not None:
            groups.setdefault(final.run_id, {})[alone.run_id] = alone
    before = sum(len(g) for g in groups.values())
    if before == len(groups):
        return
    differing = sorted({key for g in groups.values() if len(g) > 1 for key in _differing_keys(list(g.values()))})
    sets = " ".join(f"--set {k}={json.dumps(v)}" for k, v in overrides.items())
    print(f"warning: {sets} collapses {before} runs of {where} into {len(groups)} "
          f"(runs that differed only in {', '.join(differing)} are now the same run)", file=sys.stderr)


def _differing_keys(runs: list[RunConfig]) -> set[str]:
    flat = [_flatten(run.to_dict(), "") for run in runs]
    return {key[1:] for key in set().union(*flat) if len({json.dumps(f.get(key), default=str) for f in flat}) > 1}


BASELINE_RUN_KEYS = {"run.save_images", "run.accelerator"}


def _not_for_baselines(key: str, config_cls) -> bool:
    if key.startswith("method."):
        return key.split(".")[1] not in {f.name for f in dataclasses.fields(config_cls)}
    return key.startswith("run.") and key not in BASELINE_RUN_KEYS
