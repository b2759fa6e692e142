"""Methods and datasets from outside the project: plugins.

A plugin is a Python module that registers methods, datasets (or stopping rules) when it
is imported — with the same decorators as the built-in files (``register_method``,
``register_dataset``, ``register_stopping_rule``). Three ways to load one:

* an **entry point** of the group ``dipbench.plugins`` in an installed distribution
  (``[project.entry-points."dipbench.plugins"] myplugin = "mypackage.dipbench_plugin"``):
  loaded by :func:`load_all`, which the CLI and every executor worker call once (registries
  never load plugins);
* ``--plugins path/to/file.py`` (repeatable) on the commands: the file is imported by path;
* a suite's ``plugins: [file.py, …]`` key: paths relative to the suite file.

Each plugin is recorded in :data:`PLUGINS` with what it registered; every spec keeps its
``origin`` (``file /abs/path.py``, ``entry point name = module (distribution dist 1.0)``
or ``built-in methods.x``), which ``python -m benchmark list`` shows. A plugin that fails
to import is recorded with its error (``list`` shows it with the broken built-in files),
whatever it registered before failing is removed again, and every other command keeps
working. A plugin registering a name that already exists is such a failure too, and
:func:`check_conflicts` (called by ``run``) turns it into an error naming both sources.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.config import ConfigError
from core.registry import REGISTRIES, RegistrationConflict, Registry, registering_from
from datamodules.registry import DATASETS
from methods.registry import METHODS
from scoring.stopping import STOPPING_RULES

ENTRY_POINT_GROUP = "dipbench.plugins"


@dataclass
class Plugin:
    origin: str  # "file /abs/path.py" or "entry point name = module (distribution dist version)"
    kind: str  # "file" | "entry_point"
    target: str  # the file path or the entry point's value
    methods: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    stopping_rules: list[str] = field(default_factory=list)
    error: str | None = None  # import error (the plugin registered nothing)
    conflict: bool = False  # the error is a name registered twice

    @property
    def ok(self) -> bool:
        return self.error is None


PLUGINS: dict[str, Plugin] = {}  # origin -> plugin, in load order
_scanned_path: tuple | None = None  # sys.path of the last entry-point scan


class PluginError(ConfigError):
    """A plugin could not be used (file missing, name registered twice); says what to do."""


KINDS = {"methods": METHODS, "datasets": DATASETS, "stopping_rules": STOPPING_RULES}  # recorded per plugin


def _registries() -> dict[str, Registry]:
    """Every registry, its built-ins loaded first (a plugin reusing a built-in name is the one
    in conflict)."""
    for registry in list(REGISTRIES.values()):
        registry.load_builtins()
    return dict(REGISTRIES)


def load_all(files=(), where: str = "--plugins") -> list[Plugin]:
    """The orchestrator's one call (CLI commands, executor workers): every registry's
    built-ins, the plugin ``files`` and the installed plugins (entry points)."""
    _registries()
    return [*load_files(files, where), *load_entry_points()]


def _load(plugin: Plugin, do_import) -> Plugin:
    """Import a plugin, attributing its registrations to it; on failure undo them."""
    registries = _registries()
    before = {kind: set(reg.entries) for kind, reg in registries.items()}
    PLUGINS[plugin.origin] = plugin
    try:
        with registering_from(plugin.origin):
            do_import()
    except Exception as exc:  # recorded and shown by `list`; the other commands keep working
        plugin.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
        plugin.conflict = isinstance(exc, RegistrationConflict)
        for kind, reg in registries.items():
            reg.remove(set(reg.entries) - before[kind])  # half-loaded plugins register nothing
        return plugin
    for field_name, reg in KINDS.items():
        setattr(plugin, field_name, sorted(set(reg.entries) - before[reg.kind]))
    return plugin


def load_file(path: str | Path, where: str = "--plugins") -> Plugin:
    """Import a plugin file by path (once per resolved path). A missing file raises
    :class:`PluginError`; an import error is recorded in the returned plugin."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PluginError(f"{where}: plugin file {path} does not exist (give the path of a .py file that registers "
                          "methods or datasets)")
    path = path.resolve()
    origin = f"file {path}"
    if origin in PLUGINS:
        return PLUGINS[origin]
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"dipbench_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"

    def do_import():
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path} as a Python module (is it a .py file?)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and type hints look the module up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise

    return _load(Plugin(origin, "file", str(path)), do_import)


def load_files(paths, where: str = "--plugins") -> list[Plugin]:
    return [load_file(p, where) for p in paths or []]


def load_entry_points() -> list[Plugin]:
    """Load the installed plugins (entry points of :data:`ENTRY_POINT_GROUP`) not loaded
    yet; rescans only when ``sys.path`` changed since the last scan."""
    global _scanned_path
    key = tuple(sys.path)
    if key == _scanned_path:
        return []
    _scanned_path = key
    loaded = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        source = f"distribution {dist.name} {dist.version}" if dist is not None else "unknown distribution"
        origin = f"entry point {ep.name} = {ep.value} ({source})"
        if origin not in PLUGINS:
            loaded.append(_load(Plugin(origin, "entry_point", ep.value), ep.load))
    return loaded


def broken() -> dict[str, str]:
    """Plugins that failed to load: origin -> error."""
    return {origin: p.error for origin, p in PLUGINS.items() if p.error}


def check_conflicts() -> None:
    """Raise :class:`PluginError` if a plugin registered a name that already existed."""
    clashes = [p for p in PLUGINS.values() if p.conflict]
    if clashes:
        raise PluginError("; ".join(p.error.splitlines()[0].removeprefix("RegistrationConflict: ") for p in clashes))


def warn_broken(stream=None) -> None:
    """One line on stderr per plugin that failed to import (conflicts excepted: an error)."""
    for origin, error in broken().items():
        if not PLUGINS[origin].conflict:
            print(f"warning: plugin {origin} failed to import and is not loaded (its methods and datasets are "
                  f"unavailable): {error.splitlines()[0]}", file=stream or sys.stderr)


def hint() -> str:
    """For an 'unknown method/dataset' error: which plugins failed to load."""
    failed = broken()
    if not failed:
        return ""
    return ("; note: these plugins failed to import, so their methods and datasets are missing: "
            + "; ".join(f"{o} ({e.splitlines()[0]})" for o, e in failed.items()))
