"""Registered datasets (task builders). Each module in ``datamodules/tasks`` registers
one or more with :func:`register_dataset`; adding a dataset is adding one file there.

A dataset declares its *capabilities*, what a method may rely on (see
:data:`CAPABILITIES`); a method declares what it requires, and a suite skips the pairs
that do not match, with the reason, before anything runs. A task file that fails to
import is recorded in :data:`BROKEN` (``python -m benchmark list`` shows its error) and
everything else keeps working.

Datasets (and methods) may also come from outside the project: plugins loaded by
``benchmark/plugins.py`` (entry points of the group ``dipbench.plugins``, ``--plugins
file.py``, a suite's ``plugins:`` key). Every spec records its ``origin``; registering a
name twice raises :class:`RegistrationConflict` naming both sources.
"""
from __future__ import annotations

import importlib
import pkgutil
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

CAPABILITIES = {
    "linear": "A is linear with an exact adjoint A_adjoint (deepinv LinearPhysics)",
    "fbp": "the task provides an FBP-type image in extras['fbp'] (CT)",
    "ct": "computed tomography (ray transform)",
    "mri_multicoil": "multi-coil MRI y = M F S x with coil maps (SENSE operator)",
    "complex_image": "x is a complex image stored as 2 real channels (signed range)",
    "real_image": "x is a real-valued image",
    "natural_image": "x is a natural photo in [0, 1] (1 or 3 channels)",
    "reference_image": "the task provides a reference image in extras['reference'] (Ref-G input: dataset.reference)",
    "diffusion_weights": "pretrained diffusion weights; no task provides them: set method.checkpoint (methods/diffusion.py)",
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
    origin: str = ""  # built-in module, plugin file or entry point (see origin_of)

    def capabilities_for(self, cfg) -> frozenset[str]:
        caps = self.capabilities(cfg) if callable(self.capabilities) else self.capabilities
        return frozenset(caps)


DATASETS: dict[str, DatasetSpec] = {}
BROKEN: dict[str, str] = {}  # module name -> import error of dataset files that failed to load

BUILTIN_PACKAGES = ("datamodules", "methods")
_ORIGINS: list[str] = []  # stack: the plugin being imported (benchmark/plugins.py), innermost last


class RegistrationConflict(ValueError):
    """A method or dataset name is registered by two sources (the message names both)."""


@contextmanager
def registering_from(origin: str) -> Iterator[None]:
    """Attribute everything registered inside the block to ``origin`` (a plugin)."""
    _ORIGINS.append(origin)
    try:
        yield
    finally:
        _ORIGINS.pop()


def origin_of(module: str, source_file: str = "") -> str:
    """Where a registration comes from: the plugin being loaded, a built-in module, or
    another module (imported by the user's own code)."""
    if _ORIGINS:
        return _ORIGINS[-1]
    if module.split(".")[0] in BUILTIN_PACKAGES:
        return f"built-in {module}"
    return f"module {module}" + (f" ({source_file})" if source_file else "")


def conflict(kind: str, name: str, existing_origin: str, new_origin: str) -> RegistrationConflict:
    return RegistrationConflict(
        f"{kind} {name!r} from {new_origin} is already registered by {existing_origin}; give one of them another "
        f"name (the name is what suites and --set use)")


def register_dataset(name: str, config: type, description: str, capabilities=frozenset(), smoke_config: dict | None = None):
    unknown = set() if callable(capabilities) else set(capabilities) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown capabilities {sorted(unknown)}; valid: {', '.join(CAPABILITIES)}")

    def decorator(build):
        origin = origin_of(build.__module__, getattr(build.__code__, "co_filename", ""))
        if name in DATASETS:
            raise conflict("dataset", name, DATASETS[name].origin, origin)
        caps = capabilities if callable(capabilities) else frozenset(capabilities)
        DATASETS[name] = DatasetSpec(name, config, build, description, caps, dict(smoke_config or {}), build.__module__,
                                     origin)
        return build

    return decorator


def load_all() -> dict[str, DatasetSpec]:
    """Every dataset: the built-in ones (:func:`load_builtins`) and those of installed
    plugins (entry points of ``dipbench.plugins``; broken ones are recorded, see
    ``benchmark/plugins.py``). Plugin files are added by ``--plugins`` / a suite's
    ``plugins:`` key before this is called."""
    from benchmark.plugins import load_entry_points

    load_builtins()
    load_entry_points()
    return DATASETS


def load_builtins() -> dict[str, DatasetSpec]:
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
