"""Registered datasets (task builders): the dataset registry (``core.registry``). Each
module in ``datamodules/tasks`` registers one or more with :func:`register_dataset`; adding
a dataset is adding one file there.

A dataset declares its *capabilities*, what a method may rely on (see
:data:`CAPABILITIES`); a method states why it cannot run on a task (``skip``, methods/
protocol.py), and a suite skips those pairs, with the reason, before anything runs. A task
file that fails to import is recorded in ``DATASETS.broken`` (``python -m benchmark list``
shows its error) and everything else keeps working. Plugins from outside the project are
loaded by the orchestrator (``benchmark/plugins.py``) and register here the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.registry import Entry, Registry

CAPABILITIES = {
    "linear": "A is linear with an exact adjoint A_adjoint (deepinv LinearPhysics)",
    "fbp": "the task provides an FBP-type image in extras['fbp'] (CT)",
    "ct": "computed tomography (ray transform)",
    "mri_multicoil": "multi-coil MRI y = M F S x with coil maps (SENSE operator)",
    "complex_image": "x is a complex image stored as 2 real channels (signed range)",
    "real_image": "x is a real-valued image",
    "natural_image": "x is a natural photo in [0, 1] (1 or 3 channels)",
    "reference_image": "the task provides a reference image in extras['reference'] (Ref-G input: dataset.reference)",
    "signal_1d": "x is a 1-D signal stored as a 1×N image (1, C, 1, N); needs a 1-D network (docs/conventions.md §17)",
}


# Task families: settings that depend on the task (weights, input, output layer) are presets per
# method × family (methods/presets/<family>/<method>.yaml). A dataset's family follows from the
# capability that defines it, so a user's own file of a family gets that family's presets.
FAMILIES = {"ct": "ct", "mri": "mri_multicoil", "natural": "natural_image"}  # family -> defining capability


def family_of(capabilities) -> str | None:
    """The task family of a dataset with these capabilities (None: none of them)."""
    return next((family for family, cap in FAMILIES.items() if cap in capabilities), None)


@dataclass(frozen=True)
class TaskInfo:
    """What a method may ask of a task before it is built: its name and capabilities."""

    name: str
    capabilities: frozenset[str]


@dataclass(frozen=True)
class DatasetSpec(Entry):
    """A registered dataset: ``target`` builds the task from the config (``build(cfg)``)."""

    capabilities: frozenset[str] | Callable = frozenset()  # a set, or (config) -> set for config-dependent ones

    @property
    def build(self) -> Callable:
        return self.target

    def capabilities_for(self, cfg) -> frozenset[str]:
        caps = self.capabilities(cfg) if callable(self.capabilities) else self.capabilities
        return frozenset(caps)

    def family(self, cfg) -> str | None:
        return family_of(self.capabilities_for(cfg))

    def info(self, cfg) -> TaskInfo:
        return TaskInfo(self.name, self.capabilities_for(cfg))


DATASETS = Registry("dataset", packages=("datamodules.tasks",), entry_type=DatasetSpec)
BROKEN = DATASETS.broken  # module name -> import error of dataset files that failed to load


def register_dataset(name: str, config: type, description: str, capabilities=frozenset(), smoke_config: dict | None = None):
    unknown = set() if callable(capabilities) else set(capabilities) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown capabilities {sorted(unknown)}; valid: {', '.join(CAPABILITIES)}")
    caps = capabilities if callable(capabilities) else frozenset(capabilities)
    return DATASETS.register(name, config, description, smoke_config=smoke_config, capabilities=caps)


def load_all() -> Registry:
    """Every registered dataset, the built-in ones imported (plugins are loaded by the
    orchestrator before it resolves configs: ``benchmark/plugins.py``)."""
    return DATASETS.load_builtins()
