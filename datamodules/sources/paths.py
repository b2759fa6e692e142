"""Where real data sets live on this machine, and where caches go.

Resolution order for a data set folder: an explicit ``root`` in the dataset config;
``$DIPBENCH_DATA/<name>``; ``./data/<name>`` in the project; ``../shared/data/<name>``
(the shared copy on the development machines).

Caches (CT matrices, coil maps): ``$DIPBENCH_CACHE`` if set, else the user's cache
folder (``platformdirs.user_cache_dir("dipbench")``, e.g. ``~/.cache/dipbench`` on Linux),
so the project folder stays clean.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """``$DIPBENCH_CACHE`` if set, else the user's cache folder for dipbench."""
    if os.environ.get("DIPBENCH_CACHE"):
        return Path(os.environ["DIPBENCH_CACHE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dipbench", appauthor=False))


def cache_dir(kind: str) -> Path:
    """The cache folder of one kind of cached object (``operators``, ``coil_maps``)."""
    return cache_root() / kind


class MissingDataError(FileNotFoundError):
    """A data set folder is missing; the message says where to get it."""


def candidate_roots(name: str) -> list[Path]:
    roots = []
    if os.environ.get("DIPBENCH_DATA"):
        roots.append(Path(os.environ["DIPBENCH_DATA"]) / name)
    roots += [PROJECT_ROOT / "data" / name, PROJECT_ROOT.parent / "shared" / "data" / name]
    return roots


def find_data_root(name: str, root: str | None, how_to_get: str) -> Path:
    """The folder of data set ``name``, or a :class:`MissingDataError` explaining how
    to obtain it (``how_to_get``) and where it was looked for."""
    if root:
        path = Path(root).expanduser()
        if path.is_dir():
            return path
        raise MissingDataError(f"{name}: folder {path} does not exist.\n{how_to_get}")
    for path in candidate_roots(name):
        if path.is_dir():
            return path
    looked = "\n  ".join(str(p) for p in candidate_roots(name))
    raise MissingDataError(
        f"{name}: data not found. Looked in:\n  {looked}\n{how_to_get}\n"
        f"Or point the dataset at it with --set dataset.root=/path/to/{name} "
        f"or DIPBENCH_DATA=/path/containing/{name}."
    )
