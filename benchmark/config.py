"""Run configurations: resolve a method/dataset name plus overrides into validated
dataclasses, and back into a plain dict (what is stored and hashed).

A resolved run config is::

    {"method": {"name": …, <method fields>}, "dataset": {"name": …, <dataset fields>},
     "run": {<RunSettings fields>}}

Keys and values are validated against the dataclasses' type hints (``Literal`` choices,
``core.schema`` ranges and tagged configs) before anything runs; an error names the
dotted key and what is valid.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal

from benchmark.precision import check_precision
from core.schema import ConfigError, Keyed, PositiveInt, Range, Seed, from_dict
from core.yamlio import yaml_load
from datamodules.registry import DATASETS
from methods.presets import load_preset
from methods.registry import METHODS, incompatibility
from scoring.stopping import RunningVarianceConfig, stopping_rule_configs


class IncompatibleError(ConfigError):
    """The method cannot run on the task (a capability it requires is missing); suites skip
    such pairs with this reason instead of storing a failed run."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _default_stopping() -> dict:
    return {"running_variance": RunningVarianceConfig()}


@dataclass
class DivergenceSettings:
    """When a run has diverged: it is stopped and stored as failed with the iteration, the
    reason and its trace so far (scoring/guards.py). Always on a NaN/inf loss or iterate; in
    the reconstruction stage also when, for ``patience`` consecutive iterations, the loss stays
    above ``factor`` × its value at the first iteration (explodes; ``factor: null`` turns this
    off for a method whose returned loss grows by design), or (``stall: true``) the loss does
    not change at all (vanished gradients, e.g. a sigmoid output saturated by a huge step).
    At the end of a run a trailing streak of min(``patience``, 10) such iterations is enough
    (a run shorter than ``patience``, or diverging in its last ``patience`` iterations;
    scoring/guards.py ``END_MIN_ITERATIONS``, docs/conventions.md §15)."""

    factor: Annotated[float, Range(gt=1)] | None = 10.0
    patience: PositiveInt = 100
    stall: bool = True


@dataclass
class RunSettings:
    """Settings of one run that are not the method's or the dataset's."""

    seed: Seed = 0  # network initialisation, input noise, the method's generator
    max_steps: PositiveInt = 2000  # iterations of the reconstruction stage (docs/conventions.md §2)
    trace_every: PositiveInt = 10  # trace stride in iterations
    ssim_every: PositiveInt = 10  # SSIM on every n-th trace row
    stopping: Annotated[dict, Keyed(stopping_rule_configs)] = field(default_factory=_default_stopping)  # rule -> settings
    ema_decay: Annotated[float, Range(ge=0, lt=1)] = 0.99
    # Lightning precision; auto: per device (benchmark/precision.py); the mixed / half ones are refused with the
    # measured reason (docs/conventions.md §20)
    precision: Literal["32-true", "64-true", "auto", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    deterministic: bool = True
    save_images: bool = True
    divergence: DivergenceSettings = field(default_factory=DivergenceSettings)  # scoring/guards.py


def parse_value(text: str):
    """A ``--set key=value`` value: YAML scalars/lists (``3``, ``1e-3``, ``true``, ``[0,4]``, ``null``)."""
    return yaml_load(text)


def set_dotted(config: dict, key: str, value) -> None:
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a mapping")
    node[parts[-1]] = value


@dataclass
class RunConfig:
    method: str
    dataset: str
    method_cfg: typing.Any
    dataset_cfg: typing.Any
    run: RunSettings = field(default_factory=RunSettings)
    presets: dict = field(default_factory=dict)  # method setting -> source of the preset that supplied it

    def to_dict(self) -> dict:
        preset = {"preset": dict(sorted(self.presets.items()))} if self.presets else {}
        return {
            "method": {"name": self.method, **_without_unset_warm_start(dataclasses.asdict(self.method_cfg)), **preset},
            "dataset": {"name": self.dataset, **dataclasses.asdict(self.dataset_cfg)},
            "run": dataclasses.asdict(self.run),
        }

    @property
    def run_id(self) -> str:
        """Stable id from the resolved config: ``<method>__<dataset>__<sha1[:10]>``."""
        digest = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.method}__{self.dataset}__{digest}"


def _without_unset_warm_start(method: dict) -> dict:
    """``warm_start: null`` (the default of every DIP method) is left out of the stored config, so
    the option's arrival changed no run id (docs/conventions.md §18)."""
    return {k: v for k, v in method.items() if not (k == "warm_start" and v is None)}


def resolve(config: dict, presets: bool = True) -> RunConfig:
    """Validate a raw ``{"method": {...}, "dataset": {...}, "run": {...}}`` dict: a pure
    function of the config, the registries (plugins are loaded by the caller beforehand) and
    the preset files. The preset of the method for the dataset's family (methods/presets.py)
    fills the method settings the config leaves unset, unless ``presets`` is False; a config
    that already records its presets (``method.preset``: a stored, resolved config) keeps
    that record."""
    unknown = sorted(set(config) - {"method", "dataset", "run"})
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; valid: method, dataset, run")
    methods, datasets = METHODS, DATASETS
    method = dict(config.get("method") or {})
    dataset = dict(config.get("dataset") or {})
    mname, dname = method.pop("name", None), dataset.pop("name", None)
    if mname not in methods:
        raise ConfigError(f"unknown method {mname!r}; valid: {', '.join(sorted(methods))}")
    if dname not in datasets:
        raise ConfigError(f"unknown dataset {dname!r}; valid: {', '.join(sorted(datasets))}")
    dataset_cfg = from_dict(datasets[dname].config, dataset, "dataset")
    recorded = method.pop("preset", None)
    if recorded is not None:
        applied = dict(recorded)
    else:
        family = datasets[dname].family(dataset_cfg) if presets else None
        preset = load_preset(mname, family, methods[mname].config)
        size = next((s for s in (getattr(dataset_cfg, k, None) for k in ("image_size", "crop"))
                     if isinstance(s, int) and not isinstance(s, bool)), None)
        applied = {key: p.source_at(size) for key, p in preset.items() if key not in method}
        method = {**{key: preset[key].value for key in applied}, **method}
    run = RunConfig(
        method=mname,
        dataset=dname,
        method_cfg=from_dict(methods[mname].config, method, "method"),
        dataset_cfg=dataset_cfg,
        run=from_dict(RunSettings, dict(config.get("run") or {}), "run"),
        presets=applied,
    )
    check_compatible_sizes(run)
    refused = check_precision(run.run.precision)
    if refused:
        raise ConfigError(f"run.precision: {refused}")
    reason = incompatibility(methods[mname], run.method_cfg, datasets[dname], run.dataset_cfg)
    if reason:
        raise IncompatibleError(reason)
    return run


def check_compatible_sizes(run: RunConfig) -> None:
    """The image (``dataset.crop`` / ``dataset.image_size``, when ints) must be at least the
    network's minimum input size (``method.net.min_size``)."""
    net = getattr(run.method_cfg, "net", None)
    min_size = getattr(net, "min_size", None)
    if min_size is None:
        return
    for key in ("crop", "image_size"):
        size = getattr(run.dataset_cfg, key, None)
        if isinstance(size, int) and not isinstance(size, bool) and size < min_size:
            scales = f" (method.net.scales = {net.scales})" if hasattr(net, "scales") else ""
            raise ConfigError(f"dataset.{key} = {size} is smaller than the network's minimum input size {min_size}"
                              f"{scales}; use a larger {key} or fewer scales")


def parse_overrides(pairs: list[str]) -> dict:
    """``--set key=value`` pairs as ``{dotted key: value}``; keys start with method., dataset. or run."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value (e.g. run.max_steps=100), got {pair!r}")
        key, value = pair.split("=", 1)
        if key.split(".")[0] not in ("method", "dataset", "run"):
            raise ConfigError(f"--set key {key!r} must start with method., dataset. or run.")
        out[key] = parse_value(value)
    return out


def check_devices_here(runs) -> None:
    """One line of error, before anything runs, when a run asks for an accelerator this
    machine lacks (for runs executed in this process: ``--executor local``, ``reconstruct``)."""
    import torch

    wanted = {r.run.accelerator for r in runs}
    if wanted & {"gpu", "cuda"} and not torch.cuda.is_available():
        raise ConfigError("run.accelerator = gpu but this machine has no CUDA GPU; use run.accelerator=auto (or cpu), "
                          "or run on a GPU machine (--executor ray/slurm)")
    if "mps" in wanted and not torch.backends.mps.is_available():
        raise ConfigError("run.accelerator = mps but this machine has no Apple GPU; use run.accelerator=auto (or cpu)")
