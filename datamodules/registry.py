"""Registered datasets (task builders). Each module in ``datamodules/tasks`` registers
one or more with :func:`register_dataset`; adding a dataset is adding one file there.

A dataset declares its *capabilities*, what a method may rely on (see
:data:`CAPABILITIES`); a method declares what it requires, and a suite skips the pairs
that do not match, with the reason, before anything runs. A task file that fails to
import is recorded in :data:`BROKEN` (``python -m benchmark list`` shows its error) and
everything else keeps working.
"""
from __future__ import annotations

import importlib
import pkgutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

CAPABILITIES = {
    "linear": "A is linear with an exact adjoint A_adjoint (deepinv LinearPhysics)",
    "fbp": "the task provides an FBP-type image in extras['fbp'] (CT)",
    "ct": "computed tomography (ray transform)",
    "mri_multicoil": "multi-coil MRI y = M F S x with coil maps (SENSE operator)",
    "complex_image": "x is a complex image stored as 2 real channels (signed range)",
    "real_image": "x is a real-valued image",
    "natural_image": "x is a natural photo in [0, 1] (1 or 3 channels)",
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    config: type  # dataclass with the dataset's settings and their defaults
    build: Callable  # (config) -> Task
    description: str
    capabilities: frozenset[str] | Callable = frozenset()  # a set, or (config) -> set for config-dependent ones
    smoke_config: dict = field(default_factory=dict)  # overrides for a tiny instance (contract tests)
    module: str = ""

    def capabilities_for(self, cfg) -> frozenset[str]:
        caps = self.capabilities(cfg) if callable(self.capabilities) else self.capabilities
        return frozenset(caps)


DATASETS: dict[str, DatasetSpec] = {}
BROKEN: dict[str, str] = {}  # module name -> import error of dataset files that failed to load


def register_dataset(name: str, config: type, description: str, capabilities=frozenset(), smoke_config: dict | None = None):
    unknown = set() if callable(capabilities) else set(capabilities) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown capabilities {sorted(unknown)}; valid: {', '.join(CAPABILITIES)}")

    def decorator(build):
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        caps = capabilities if callable(capabilities) else frozenset(capabilities)
        DATASETS[name] = DatasetSpec(name, config, build, description, caps, dict(smoke_config or {}), build.__module__)
        return build

    return decorator


def load_all() -> dict[str, DatasetSpec]:
    """Import every module of ``datamodules.tasks`` so they register themselves; a module
    that fails to import is recorded in :data:`BROKEN` instead of breaking the others."""
    import datamodules.tasks as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        name = f"{pkg.__name__}.{mod.name}"
        if name in BROKEN:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken plugin file must not break the other commands
            BROKEN[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
    return DATASETS
