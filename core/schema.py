"""Markers that config dataclasses put in ``typing.Annotated`` to declare what is valid;
:func:`from_dict` checks them when a run config is resolved (the schema engine: every
config of the project, and a measurement file's metadata, is validated here).

    crop: Annotated[int, Range(ge=8)] = 64
    net: Annotated[object, Tagged(network_configs)] = field(default_factory=UNetConfig)

Choices are plain ``typing.Literal``.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``ge``/``gt`` below, ``le``/``lt`` above (None = unbounded)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, value) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self) -> str:
        """E.g. ``>= 1``, ``> 0``, ``in [0, 1]``."""
        low = (self.ge, "[", ">=") if self.ge is not None else (self.gt, "(", ">") if self.gt is not None else None
        high = (self.le, "]", "<=") if self.le is not None else (self.lt, ")", "<") if self.lt is not None else None
        def num(v):
            return str(v) if isinstance(v, int) else f"{v:g}"

        if low and high:
            return f"in {low[1]}{num(low[0])}, {num(high[0])}{high[1]}"
        if low or high:
            bound, _, op = low or high
            return f"{op} {num(bound)}"
        return "any number"


@dataclass(frozen=True)
class Tagged:
    """A field holding one of several config dataclasses, chosen by the ``tag`` key of its
    mapping; ``registry()`` returns ``{tag value: config class}``."""

    registry: Callable[[], dict[str, type]]
    tag: str = "name"


@dataclass(frozen=True)
class Keyed:
    """A mapping whose keys are names from ``registry()`` (``{name: config class}``) and whose
    values are those classes' configs; each key present switches that component on
    (e.g. ``run.stopping: {running_variance: {window: 50}}``)."""

    registry: Callable[[], dict[str, type]]


@dataclass(frozen=True)
class Tunable:
    """A setting that its paper tunes: ``benchmark tune`` searches ``[low, high]`` on a ``log``
    or ``linear`` scale (``integer``: rounded, e.g. inner steps). Put it in the field's
    ``Annotated`` metadata next to its ``Range``::

        tv_weight: Annotated[float, Range(ge=0), Tunable(1e-3, 1.0)] = 0.06
    """

    low: float
    high: float
    scale: typing.Literal["log", "linear"] = "log"
    integer: bool = False

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"Tunable: low = {self.low} must be below high = {self.high}")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"Tunable: a log scale needs low > 0, got {self.low}")
        if self.scale not in ("log", "linear"):
            raise ValueError(f"Tunable: scale must be log or linear, got {self.scale!r}")

    def grid(self, points: int) -> list:
        """``points`` values spanning the range evenly on its scale (ends included)."""
        if points < 2:
            raise ValueError("a grid needs at least 2 points")
        if self.scale == "log":
            ratio = (self.high / self.low) ** (1 / (points - 1))
            values = [self.low * ratio**i for i in range(points)]
        else:
            values = [self.low + (self.high - self.low) * i / (points - 1) for i in range(points)]
        values[-1] = self.high
        if self.integer:
            return sorted({int(round(v)) for v in values})
        return [float(f"{v:.3g}") for v in values]


def tunables(config_cls) -> dict[str, Tunable]:
    """The declared tunable fields of a config dataclass, in field order."""
    hints = typing.get_type_hints(config_cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(config_cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is typing.Annotated:
            marker = next((m for m in hint.__metadata__ if isinstance(m, Tunable)), None)
            if marker is not None:
                out[f.name] = marker
    return out


PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Probability = Annotated[float, Range(ge=0, le=1)]
MAX_SEED = 2**32 - 1  # numpy's (and so Lightning's seed_everything's) largest seed
Seed = Annotated[int, Range(ge=0, le=MAX_SEED)]

# Smallest image side of a task: the SSIM metric's 11×11 Gaussian window (reflect padding 5)
# needs 6 pixels, and a 1×1 "image" would fail deep inside PyTorch; 8 leaves a margin.
MIN_IMAGE_SIZE = 8
ImageSize = Annotated[int, Range(ge=MIN_IMAGE_SIZE)]


class ConfigError(ValueError):
    """A config key or value is wrong; the message lists what is valid."""


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
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}", _default_of(valid[k])) for k, v in data.items()}
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


def coerce(value, hint, where: str, default=None):
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
            value = coerce(value, args[0], where, default)
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
                return coerce(value, arg, where, default)
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
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
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
        if not math.isfinite(value):  # .inf/.nan pass every range check and then fail every run
            raise ConfigError(f"{where} = {value!r} is not a finite number; give a finite value")
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
