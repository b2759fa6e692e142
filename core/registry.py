"""One registry for every kind of plugin: methods, datasets, stopping rules, networks,
denoisers, diffusion samplers, measurement-file loaders.

An :class:`Entry` is what a plugin file registers: its name, the registered object (a
class or function), its config class, a description, the paper it comes from, a tiny
``smoke_config`` for the contract tests and its ``origin`` (the built-in module, the plugin
file or the entry point that registered it). Every registry has the same duplicate-name
policy: a second registration of a name raises :class:`RegistrationConflict`, naming both
sources. Built-in entries are the modules of the registry's packages, imported on first
use; a module that fails to import is recorded in ``registry.broken`` and the others keep
working. Plugins from outside the project are loaded by the orchestrator
(``benchmark/plugins.py``), never by a registry.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated

from core.schema import Tagged

BUILTIN_PACKAGES = ("core", "datamodules", "scoring", "methods")
_ORIGINS: list[str] = []  # stack: the plugin being imported (benchmark/plugins.py), innermost last
REGISTRIES: dict[str, Registry] = {}  # kind -> registry, in creation order (``benchmark list`` walks them)


class RegistrationConflict(ValueError):
    """A name is registered twice by two sources (the message names both)."""


@contextmanager
def registering_from(origin: str) -> Iterator[None]:
    """Attribute everything registered inside the block to ``origin`` (a plugin)."""
    _ORIGINS.append(origin)
    try:
        yield
    finally:
        _ORIGINS.pop()


def origin_of(obj) -> str:
    """Where a registration comes from: the plugin being loaded, a built-in module, or
    another module (imported by the user's own code)."""
    if _ORIGINS:
        return _ORIGINS[-1]
    module = getattr(obj, "__module__", "") or ""
    if module.split(".")[0] in BUILTIN_PACKAGES:
        return f"built-in {module}"
    try:
        source = inspect.getsourcefile(obj) or ""
    except TypeError:
        source = ""
    return f"module {module}" + (f" ({source})" if source else "")


@dataclass(frozen=True)
class Entry:
    """One registered plugin (see the module docstring)."""

    name: str
    target: object  # the registered class or function
    config: type | None = None  # dataclass of its settings and their defaults
    description: str = ""
    paper: str = ""  # where it comes from, e.g. "Survey B Alg. 1"
    smoke_config: dict = field(default_factory=dict)  # overrides for a tiny, fast instance (contract tests)
    origin: str = ""

    @property
    def module(self) -> str:
        return getattr(self.target, "__module__", "")

    @property
    def source_file(self) -> str:
        try:
            return inspect.getsourcefile(self.target) or ""
        except TypeError:
            return ""


class Registry:
    """Entries of one plugin kind by name (a read-only mapping; reading it first imports
    the built-in modules of ``packages``)."""

    def __init__(self, kind: str, packages: tuple[str, ...] = (), entry_type: type = Entry):
        self.kind = kind
        self.packages = packages
        self.entry_type = entry_type
        self.entries: dict[str, Entry] = {}
        self.broken: dict[str, str] = {}  # module name -> import error of a built-in file
        self._loaded = not packages
        REGISTRIES.setdefault(kind, self)

    # registration --------------------------------------------------------------------
    def add(self, entry: Entry) -> Entry:
        """Register ``entry``; a name already taken raises :class:`RegistrationConflict`."""
        entry = entry if entry.origin else replace(entry, origin=origin_of(entry.target))
        if entry.name in self.entries:
            raise RegistrationConflict(
                f"{self.kind} {entry.name!r} from {entry.origin} is already registered by "
                f"{self.entries[entry.name].origin} (a name registered twice); give one of them another name "
                f"(the name is what suites and --set use)")
        self.entries[entry.name] = entry
        return entry

    def register(self, name: str, config: type | None = None, description: str = "", paper: str = "",
                 smoke_config: dict | None = None, **extra) -> Callable:
        """Decorator registering a class or function under ``name`` (``extra``: fields of
        the registry's entry type)."""

        def decorator(target):
            self.add(self.entry_type(name=name, target=target, config=config, description=description, paper=paper,
                                     smoke_config=dict(smoke_config or {}), **extra))
            return target

        return decorator

    def remove(self, names) -> None:
        for name in names:
            self.entries.pop(name, None)

    def clear(self) -> None:
        self.entries.clear()

    def update(self, entries: dict[str, Entry]) -> None:
        """Restore entries saved with ``dict(registry)`` (tests isolating plugins)."""
        self.entries.update(entries)

    # built-ins ---------------------------------------------------------------------
    def load_builtins(self) -> Registry:
        """Import every module of the registry's packages, so they register (modules already
        imported are not run again); a module that fails to import is recorded in
        :attr:`broken` instead. Reading the registry does this once."""
        self._loaded = True
        self.broken.clear()
        for package_name in self.packages:
            package = importlib.import_module(package_name)
            for mod in pkgutil.iter_modules(package.__path__):
                name = f"{package_name}.{mod.name}"
                try:
                    importlib.import_module(name)
                except Exception as exc:  # a broken file must not break the other commands
                    self.broken[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
        return self

    def _ready(self) -> dict[str, Entry]:
        if not self._loaded:
            self.load_builtins()
        return self.entries

    # mapping -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Entry:
        return self._ready()[name]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self.entries)})"

    def get(self, name: str, default=None):
        return self._ready().get(name, default)

    def __contains__(self, name) -> bool:
        return name in self._ready()

    def __iter__(self):
        return iter(self._ready())

    def __len__(self) -> int:
        return len(self._ready())

    def keys(self):
        return self._ready().keys()

    def values(self):
        return self._ready().values()

    def items(self):
        return self._ready().items()

    def configs(self) -> dict[str, type]:
        """``{name: config class}`` (for ``Tagged`` / ``Keyed`` schema fields)."""
        return {name: entry.config for name, entry in self.items()}

    def lookup(self, name: str) -> Entry:
        """The entry ``name``, or a one-line error listing the valid names."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {', '.join(self)}")
        return self[name]


class TaggedRegistry(Registry):
    """Components chosen by the ``name`` of their config (networks, denoisers, …):
    ``register(name, config_cls)`` registers a component class; ``field_type`` is the
    ``Annotated`` type of a config field holding one of the configs; ``component(cfg)`` is
    the class to build."""

    def __init__(self, kind: str, packages: tuple[str, ...] = ()):
        super().__init__(kind, packages)
        self.field_type = Annotated[object, Tagged(self.configs)]

    def component(self, cfg) -> type:
        return self.lookup(cfg.name).target
