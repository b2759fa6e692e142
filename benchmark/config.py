"""Run configurations: resolve a method/dataset name plus overrides into validated
dataclasses, and back into a plain dict (what is stored and hashed).

A resolved run config is::

    {"method": {"name": …, <method fields>}, "dataset": {"name": …, <dataset fields>},
     "run": {<RunSettings fields>}}

Keys are validated against the dataclasses; an unknown key fails with the valid ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A config key or value is wrong; the message lists what is valid."""


@dataclass
class RunSettings:
    """Settings of one run that are not the method's or the dataset's."""

    seed: int = 0  # network initialisation and input noise
    max_steps: int = 2000
    trace_every: int = 10  # trace stride in iterations
    ssim_every: int = 10  # SSIM on every n-th trace row
    es_window: int = 100  # Survey B Alg. 2: window W
    es_patience: int = 1000  # patience p
    es_delta: float = 0.99  # relative decrease δ
    ema_decay: float = 0.99
    precision: str = "32-true"  # Lightning precision, e.g. bf16-mixed
    accelerator: str = "auto"  # auto | cpu | gpu
    deterministic: bool = True
    save_images: bool = True


def from_dict(cls, data: dict, where: str):
    """Build dataclass ``cls`` from ``data``, recursing into dataclass fields; unknown
    keys raise :class:`ConfigError` naming the valid ones."""
    valid = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + '.' + k for k in unknown)}; valid keys of {where}: "
                          f"{', '.join(sorted(valid))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name} must be a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}")
            base = dataclasses.asdict(_default_of(valid[name]))
            kwargs[name] = from_dict(hint, {**base, **value}, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def _default_of(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _coerce(value, hint, where):
    """Light type checking: ints/floats/bools from YAML or ``--set`` strings."""
    if value is None:
        return None
    origin_args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for t in origin_args:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
        if t in (list, dict) and isinstance(value, t):
            return value
        if typing.get_origin(t) in (list, dict) and isinstance(value, typing.get_origin(t)):
            return value
    names = ", ".join(getattr(t, "__name__", str(t)) for t in origin_args)
    raise ConfigError(f"{where} = {value!r} has the wrong type; expected {names}")


def parse_value(text: str):
    """A ``--set key=value`` value: YAML scalars/lists (``3``, ``1e-3``, ``true``, ``[0,4]``, ``null``)."""
    import yaml

    return yaml.safe_load(text)


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

    def to_dict(self) -> dict:
        return {
            "method": {"name": self.method, **dataclasses.asdict(self.method_cfg)},
            "dataset": {"name": self.dataset, **dataclasses.asdict(self.dataset_cfg)},
            "run": dataclasses.asdict(self.run),
        }

    @property
    def run_id(self) -> str:
        """Stable id from the resolved config: ``<method>__<dataset>__<sha1[:10]>``."""
        digest = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.method}__{self.dataset}__{digest}"


def resolve(config: dict) -> RunConfig:
    """Validate a raw ``{"method": {...}, "dataset": {...}, "run": {...}}`` dict."""
    from datamodules.registry import load_all as load_datasets
    from methods.registry import load_all as load_methods

    unknown = sorted(set(config) - {"method", "dataset", "run"})
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; valid: method, dataset, run")
    methods, datasets = load_methods(), load_datasets()
    method = dict(config.get("method") or {})
    dataset = dict(config.get("dataset") or {})
    mname, dname = method.pop("name", None), dataset.pop("name", None)
    if mname not in methods:
        raise ConfigError(f"unknown method {mname!r}; valid: {', '.join(sorted(methods))}")
    if dname not in datasets:
        raise ConfigError(f"unknown dataset {dname!r}; valid: {', '.join(sorted(datasets))}")
    return RunConfig(
        method=mname,
        dataset=dname,
        method_cfg=from_dict(methods[mname].config, method, "method"),
        dataset_cfg=from_dict(datasets[dname].config, dataset, "dataset"),
        run=from_dict(RunSettings, dict(config.get("run") or {}), "run"),
    )
