"""Registered datasets (task builders). Each module in ``datamodules/tasks`` registers
one or more with :func:`register_dataset`; adding a dataset is adding one file there.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    config: type  # dataclass with the dataset's settings and their defaults
    build: Callable  # (config) -> Task
    description: str


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, config: type, description: str):
    def decorator(build):
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetSpec(name, config, build, description)
        return build

    return decorator


def load_all() -> dict[str, DatasetSpec]:
    """Import every module of ``datamodules.tasks`` so they register themselves."""
    import datamodules.tasks as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
    return DATASETS
