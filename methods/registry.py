"""Registered methods. A method is either a DIP ``LightningModule`` (trained with
``Trainer.fit``) or a classical ``Baseline`` (one reconstruction, no network). Each file
in ``methods/`` or ``methods/baselines/`` registers itself with :func:`register_method`;
adding a method is adding one file.

A method declares what it needs of a task (``requirements(cfg)``, names from
``datamodules.registry.CAPABILITIES``); :func:`incompatibility` says why a pair cannot
run, so suites skip it instead of storing a failure. A method file that fails to import
is recorded in :data:`BROKEN` and the others keep working.

Methods may also come from outside the project (plugins, ``benchmark/plugins.py``: entry
points of the group ``dipbench.plugins``, ``--plugins file.py``, a suite's ``plugins:``
key); every spec records its ``origin``, and a name registered twice raises
``RegistrationConflict`` naming both sources.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import traceback
from dataclasses import dataclass, field

from datamodules.registry import conflict, origin_of

KINDS = ("dip", "baseline")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    cls: type  # DIPModule subclass or Baseline subclass
    config: type  # dataclass of its settings with the paper defaults
    description: str
    paper: str  # where it comes from, e.g. "Survey B Alg. 1"
    smoke_config: dict = field(default_factory=dict)  # overrides for a tiny, fast instance (contract tests)
    origin: str = ""  # built-in module, plugin file or entry point (datamodules.registry.origin_of)

    @property
    def kind(self) -> str:
        from methods.baselines.base import Baseline

        return "baseline" if issubclass(self.cls, Baseline) else "dip"

    @property
    def source_file(self) -> str:
        return inspect.getsourcefile(self.cls) or ""

    def requirements(self, cfg) -> frozenset[str]:
        return frozenset(self.cls.requirements(cfg))


METHODS: dict[str, MethodSpec] = {}
BROKEN: dict[str, str] = {}  # module name -> import error of method files that failed to load


def register_method(name: str, config: type, description: str, paper: str = "", smoke_config: dict | None = None):
    def decorator(cls):
        origin = origin_of(cls.__module__, inspect.getsourcefile(cls) or "")
        if name in METHODS:
            raise conflict("method", name, METHODS[name].origin, origin)
        METHODS[name] = MethodSpec(name, cls, config, description, paper, dict(smoke_config or {}), origin)
        cls.method_name = name
        return cls

    return decorator


def incompatibility(method: MethodSpec, method_cfg, dataset, dataset_cfg) -> str | None:
    """Why ``method`` cannot run on ``dataset`` (missing capabilities), or None."""
    missing = method.requirements(method_cfg) - dataset.capabilities_for(dataset_cfg)
    if not missing:
        return None
    from datamodules.registry import CAPABILITIES

    needs = "; ".join(f"{m} ({CAPABILITIES.get(m, '?')})" for m in sorted(missing))
    return f"{method.name} needs {needs}, which {dataset.name} does not provide"


NOT_METHODS = {"registry", "base", "callbacks", "stopping", "keys", "networks", "inputs", "baselines", "denoisers"}


def load_all() -> dict[str, MethodSpec]:
    """Every method: the built-in ones (:func:`load_builtins`) and those of installed
    plugins (entry points of ``dipbench.plugins``; broken ones are recorded, see
    ``benchmark/plugins.py``). Plugin files are added by ``--plugins`` / a suite's
    ``plugins:`` key before this is called."""
    from benchmark.plugins import load_entry_points

    load_builtins()
    load_entry_points()
    return METHODS


def load_builtins() -> dict[str, MethodSpec]:
    """Import every module of ``methods`` and ``methods.baselines`` so they register; a
    module that fails to import is recorded in :data:`BROKEN` instead."""
    import methods
    import methods.baselines

    for pkg in (methods, methods.baselines):
        for mod in pkgutil.iter_modules(pkg.__path__):
            name = f"{pkg.__name__}.{mod.name}"
            if mod.name in NOT_METHODS or name in BROKEN:
                continue
            try:
                importlib.import_module(name)
            except Exception as exc:  # a broken plugin file must not break the other commands
                BROKEN[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
    return METHODS
