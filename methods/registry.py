"""Registered methods: the method registry (``core.registry``). A method is either a DIP
``LightningModule`` (trained with ``Trainer.fit``) or a classical ``Baseline`` (one
reconstruction, no network); both follow ``methods/protocol.py``. Each file in
``methods/`` or ``methods/baselines/`` registers itself with :func:`register_method`;
adding a method is adding one file.

A method states why it cannot run on a task (``skip(cfg, task)``, by default the task
capabilities it needs and the task lacks); suites skip such pairs with the reason instead
of storing a failure. A method file that fails to import is recorded in
``METHODS.broken`` and the others keep working. Plugins from outside the project are
loaded by the orchestrator (``benchmark/plugins.py``) and register here the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.registry import Entry, Registry
from core.results import MethodKind


@dataclass(frozen=True)
class MethodSpec(Entry):
    """A registered method: ``target`` is its DIPModule or Baseline subclass."""

    @property
    def cls(self) -> type:
        return self.target

    @property
    def kind(self) -> MethodKind:
        return self.cls.kind

    def requirements(self, cfg) -> frozenset[str]:
        return frozenset(self.cls.requirements(cfg))


METHODS = Registry("method", packages=("methods", "methods.baselines"), entry_type=MethodSpec)
BROKEN = METHODS.broken  # module name -> import error of method files that failed to load


def register_method(name: str, config: type, description: str, paper: str = "", smoke_config: dict | None = None):
    def decorator(cls):
        METHODS.register(name, config, description, paper, smoke_config)(cls)
        cls.method_name = name
        return cls

    return decorator


def incompatibility(method: MethodSpec, method_cfg, dataset, dataset_cfg) -> str | None:
    """Why ``method`` cannot run on ``dataset`` with these settings (the method's own
    ``skip``), or None."""
    return method.cls.skip(method_cfg, dataset.info(dataset_cfg))


def load_all() -> Registry:
    """Every registered method, the built-in ones imported (plugins are loaded by the
    orchestrator before it resolves configs: ``benchmark/plugins.py``)."""
    return METHODS.load_builtins()
