"""Markers that config dataclasses put in ``typing.Annotated`` to declare what is valid;
``benchmark.config.from_dict`` checks them when a run config is resolved.

    crop: Annotated[int, Range(ge=8)] = 64
    net: Annotated[object, Tagged(network_configs)] = field(default_factory=UNetConfig)

Choices are plain ``typing.Literal``.
"""
from __future__ import annotations

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
        if low and high:
            return f"in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
        if low or high:
            bound, _, op = low or high
            return f"{op} {bound:g}"
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


class TaggedRegistry:
    """Components chosen by the ``name`` of their config (networks, denoisers, …): ``register``
    maps a name to (config class, component class); ``field_type`` is the ``Annotated`` type of
    a config field holding one of the configs; ``component(cfg)`` is the class to build."""

    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, tuple[type, type]] = {}
        self.field_type = Annotated[object, Tagged(self.configs)]

    def register(self, name: str, config_cls: type):
        def decorator(cls):
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self.entries[name] = (config_cls, cls)
            return cls

        return decorator

    def configs(self) -> dict[str, type]:
        return {name: config_cls for name, (config_cls, _) in self.entries.items()}

    def component(self, cfg) -> type:
        if cfg.name not in self.entries:
            raise ValueError(f"unknown {self.kind} {cfg.name!r}; valid: {', '.join(self.entries)}")
        return self.entries[cfg.name][1]

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries)


PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Probability = Annotated[float, Range(ge=0, le=1)]

# Smallest image side of a task: the SSIM metric's 11×11 Gaussian window (reflect padding 5)
# needs 6 pixels, and a 1×1 "image" would fail deep inside PyTorch; 8 leaves a margin.
MIN_IMAGE_SIZE = 8
ImageSize = Annotated[int, Range(ge=MIN_IMAGE_SIZE)]
