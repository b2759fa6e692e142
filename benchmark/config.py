"""Run configurations: resolve a method/dataset name plus overrides into validated
dataclasses, and back into a plain dict (what is stored and hashed).

A resolved run config is::

    {"method": {"name": …, <method fields>}, "dataset": {"name": …, <dataset fields>},
     "run": {<RunSettings fields>}}

Keys and values are validated against the dataclasses' type hints (``Literal`` choices,
``datamodules.schema`` ranges and tagged configs) before anything runs; an error names the
dotted key and what is valid.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal

import yaml

from datamodules.schema import Keyed, NonNegativeInt, PositiveInt, Range, Tagged


class ConfigError(ValueError):
    """A config key or value is wrong; the message lists what is valid."""


class IncompatibleError(ConfigError):
    """The method cannot run on the task (a capability it requires is missing); suites skip
    such pairs with this reason instead of storing a failed run."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _stopping_rules() -> dict[str, type]:
    from methods.stopping import stopping_rule_configs

    return stopping_rule_configs()


def _default_stopping() -> dict:
    from methods.stopping import RunningVarianceConfig

    return {"running_variance": RunningVarianceConfig()}


@dataclass
class DivergenceSettings:
    """When a run has diverged: it is stopped and stored as failed with the iteration, the
    reason and its trace so far (benchmark/guards.py). Always on a NaN/inf loss or iterate; in
    the reconstruction stage also when, for ``patience`` consecutive iterations, the loss stays
    above ``factor`` × its value at the first iteration (explodes; ``factor: null`` turns this
    off for a method whose returned loss grows by design), or (``stall: true``) the loss does
    not change at all (vanished gradients, e.g. a sigmoid output saturated by a huge step)."""

    factor: Annotated[float, Range(gt=1)] | None = 10.0
    patience: PositiveInt = 100
    stall: bool = True


@dataclass
class RunSettings:
    """Settings of one run that are not the method's or the dataset's."""

    seed: NonNegativeInt = 0  # network initialisation, input noise, the method's generator
    max_steps: PositiveInt = 2000  # iterations of the reconstruction stage (docs/conventions.md §2)
    trace_every: PositiveInt = 10  # trace stride in iterations
    ssim_every: PositiveInt = 10  # SSIM on every n-th trace row
    stopping: Annotated[dict, Keyed(_stopping_rules)] = field(default_factory=_default_stopping)  # rule -> settings
    ema_decay: Annotated[float, Range(ge=0, lt=1)] = 0.99
    precision: Literal["32-true", "64-true", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"  # Lightning precision
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    deterministic: bool = True
    save_images: bool = True
    divergence: DivergenceSettings = field(default_factory=DivergenceSettings)  # benchmark/guards.py


def from_dict(cls, data: dict, where: str):
    """Build dataclass ``cls`` from ``data``, checking every value against the field's type
    (``Literal`` choices, ``Annotated`` ranges, ``Tagged`` configs, nested dataclasses,
    lists); unknown keys and wrong values raise :class:`ConfigError` naming the dotted key
    and what is valid. A ``ValueError`` of the constructor (``__post_init__`` checks
    involving several fields) becomes a :class:`ConfigError` naming ``where``."""
    if not isinstance(data, dict):
        keys = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(f"{where} must be a mapping of {keys}; got {data!r}")
    valid = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + '.' + k for k in unknown)}; valid keys of {where}: "
                          f"{', '.join(sorted(valid))}")
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}", _default_of(valid[k])) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _default_of(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


class _WrongType(ConfigError):
    """The value is not of the expected type (as opposed to a wrong choice or range)."""


def _coerce(value, hint, where: str, default=None):
    """``value`` checked (and ints widened to float) against type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        tagged = next((m for m in hint.__metadata__ if isinstance(m, Tagged)), None)
        if tagged is not None:
            return _tagged(value, tagged, where, default)
        keyed = next((m for m in hint.__metadata__ if isinstance(m, Keyed)), None)
        if keyed is not None:
            return _keyed(value, keyed, where, default)
        try:
            value = _coerce(value, args[0], where, default)
        except _WrongType as exc:
            if not str(exc).startswith(f"{where} = "):
                raise  # about an element or a nested key
            raise _WrongType(f"{where} = {value!r} has the wrong type; expected {_describe(hint)}") from None
        for bound in (m for m in hint.__metadata__ if isinstance(m, Range)):
            if value is not None and not bound.contains(value):
                raise ConfigError(f"{where} = {value!r} is out of range; must be {bound.describe()}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where, default)
            except ConfigError as exc:
                errors.append(exc)
        for exc in errors:
            if not isinstance(exc, _WrongType):
                raise exc  # right type, wrong value: the most specific message
        raise _WrongType(f"{where} = {value!r} has the wrong type; expected {_describe(hint)}")
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        error = ConfigError if any(type(value) is type(a) for a in args) else _WrongType
        raise error(f"{where} = {value!r} is not a valid choice; valid: {', '.join(map(str, args))}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise _WrongType(f"{where} must be a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}")
        base = dataclasses.asdict(default) if isinstance(default, hint) else {}
        return from_dict(hint, {**base, **value}, where)
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise _WrongType(f"{where} = {value!r} has the wrong type; expected {_describe(hint)}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _WrongType(f"{where} = {value!r} has the wrong type; expected a mapping")
        return value
    if hint in (typing.Any, object):
        return value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (hint is bool and isinstance(value, bool)) or (hint is int and is_number and isinstance(value, int)):
        return value
    if hint is float and is_number:
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    raise _WrongType(f"{where} = {value!r} has the wrong type; expected {_describe(hint)}")


def _tagged(value, tagged: Tagged, where: str, default):
    """A config class chosen from ``tagged.registry()`` by the mapping's tag key; merged
    over ``default`` when it is of the chosen class, else over the class's defaults."""
    classes = tagged.registry()
    if isinstance(value, tuple(classes.values())):
        return value
    if not isinstance(value, dict):
        raise _WrongType(f"{where} must be a mapping with a '{tagged.tag}' key (one of {', '.join(sorted(classes))}); "
                         f"got {value!r}")
    name = value.get(tagged.tag, getattr(default, tagged.tag, None))
    if name not in classes:
        raise ConfigError(f"{where}.{tagged.tag} = {name!r} is not a valid choice; valid: {', '.join(sorted(classes))}")
    cls = classes[name]
    base = dataclasses.asdict(default) if type(default) is cls else {}
    return from_dict(cls, {**base, **value}, where)


def _keyed(value, keyed: Keyed, where: str, default):
    """``{name: settings}`` with every name from ``keyed.registry()``; each name's settings are
    merged over the default's settings for that name, else over its class's defaults."""
    classes = keyed.registry()
    if not isinstance(value, dict):
        raise _WrongType(f"{where} must be a mapping of {' | '.join(sorted(classes))} to their settings; got {value!r}")
    unknown = sorted(set(value) - set(classes))
    if unknown:
        raise ConfigError(f"unknown {where} entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(classes))}")
    out = {}
    for name, settings in value.items():
        cls, previous = classes[name], (default or {}).get(name)
        if isinstance(settings, cls):
            out[name] = settings
            continue
        base = dataclasses.asdict(previous) if isinstance(previous, cls) else {}
        out[name] = from_dict(cls, {**base, **(settings or {})}, f"{where}.{name}")
    return out


def _describe(hint) -> str:
    """Readable type: ``int >= 1 or null``, ``one of adam, sgd``, ``list of float``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        ranges = [m.describe() for m in hint.__metadata__ if isinstance(m, Range)]
        return " ".join([_describe(args[0]), *ranges])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is list:
        return f"list of {_describe(args[0])}" if args else "list"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


class YAMLLoader(yaml.SafeLoader):
    """SafeLoader whose floats include ``1e-3``, ``1E6``, ``1.0e6``, ``.5``, ``1.``, ``inf``, ``nan``
    (PyYAML's YAML 1.1 resolver reads ``1e-3`` as a string); ints stay ints."""


_FLOAT_TAG = "tag:yaml.org,2002:float"
_EXPONENT = r"(?:[eE][-+]?[0-9]+)"
YAMLLoader.yaml_implicit_resolvers = {  # the SafeLoader's resolvers without its float one
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YAMLLoader.add_implicit_resolver(_FLOAT_TAG, re.compile(
    rf"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*{_EXPONENT}?|\.[0-9][0-9_]*{_EXPONENT}?|[0-9][0-9_]*{_EXPONENT})"
    r"|[-+]?\.?(?:inf|Inf|INF)|\.?(?:nan|NaN|NAN))$"), list("-+0123456789.iInN"))


def yaml_load(text: str):
    """Parse YAML (suite files, ``--set`` values) with every common float notation."""
    return yaml.load(text, Loader=YAMLLoader)


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
    from methods.registry import incompatibility
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
    run = RunConfig(
        method=mname,
        dataset=dname,
        method_cfg=from_dict(methods[mname].config, method, "method"),
        dataset_cfg=from_dict(datasets[dname].config, dataset, "dataset"),
        run=from_dict(RunSettings, dict(config.get("run") or {}), "run"),
    )
    check_compatible_sizes(run)
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
