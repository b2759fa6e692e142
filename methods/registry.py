"""Registered methods. A method is either a DIP ``LightningModule`` (trained with
``Trainer.fit``) or a classical ``Baseline`` (one closed-form or iterative
reconstruction, no network). Each file in ``methods/`` or ``methods/baselines/``
registers itself with :func:`register_method`; adding a method is adding one file.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    name: str
    cls: type  # DIPModule subclass or Baseline subclass
    config: type  # dataclass of its settings with the paper defaults
    description: str
    paper: str  # where it comes from, e.g. "Survey B Alg. 1"

    @property
    def kind(self) -> str:
        from methods.baselines.base import Baseline

        return "baseline" if issubclass(self.cls, Baseline) else "dip"


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, config: type, description: str, paper: str = ""):
    def decorator(cls):
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = MethodSpec(name, cls, config, description, paper)
        cls.method_name = name
        return cls

    return decorator


def load_all() -> dict[str, MethodSpec]:
    """Import every module of ``methods`` and ``methods.baselines`` so they register."""
    import methods
    import methods.baselines

    skip = {"registry", "base", "callbacks", "networks", "inputs", "baselines"}
    for pkg in (methods, methods.baselines):
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name not in skip:
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
    return METHODS
