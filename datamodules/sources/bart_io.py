"""BART files and the BART command line, through BART's own Python wrapper (PyPI
``mrbart``: modules ``bart.bart`` and ``bart.cfl``).

Array layout: BART orders dimensions [read, phase1, phase2, coil, map, …] in
column-major ``.cfl`` files; this project keeps complex 2D multi-coil data coil-first
``(coils, H, W)``. :func:`to_bart` / :func:`from_bart` convert between the two.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import numpy as np

BART_HOW_TO_INSTALL = (
    "BART (the Berkeley Advanced Reconstruction Toolbox) is needed for ESPIRiT coil "
    "sensitivity maps and pics. Install it with `sudo apt-get install bart` (Debian/Ubuntu), "
    "`conda install -c conda-forge bart`, or build it from https://mrirecon.github.io/bart/ ; "
    "if it is not on PATH, set BART_TOOLBOX_PATH to the folder holding the `bart` executable. "
    "Without BART, use the semi-synthetic default (dataset.source=embedded, dataset.coil_maps=simulated)."
)


class BartNotFoundError(RuntimeError):
    """The ``bart`` executable is not installed; the message says how to get it."""


class BartCommandError(RuntimeError):
    """A BART command exited with an error."""


def _stem(path: str | Path) -> str:
    path = str(path)
    for suffix in (".cfl", ".hdr"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def read_cfl(path: str | Path) -> np.ndarray:
    """A BART ``.cfl``/``.hdr`` pair (give either file or the common stem) as complex64."""
    from bart import cfl

    stem = _stem(path)
    missing = [s for s in (stem + ".hdr", stem + ".cfl") if not Path(s).is_file()]
    if missing:
        raise FileNotFoundError(f"BART file(s) not found: {', '.join(missing)}")
    return cfl.readcfl(stem)


def write_cfl(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as a BART ``.cfl``/``.hdr`` pair (complex64)."""
    from bart import cfl

    cfl.writecfl(_stem(path), np.asarray(array))


def to_bart(coil_first: np.ndarray) -> np.ndarray:
    """``(coils, H, W)`` -> BART 2D multi-coil layout ``[H, W, 1, coils]``."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(coil_first, dtype=np.complex64), 0, -1)[:, :, None, :])


def from_bart(bart_array: np.ndarray) -> np.ndarray:
    """BART ``[H, W, 1, coils(, maps)]`` (first map set) -> ``(coils, H, W)``."""
    a = np.asarray(bart_array)
    a = a.reshape(a.shape + (1,) * max(0, 4 - a.ndim))
    if a.ndim > 4:
        a = a[(slice(None),) * 4 + (0,) * (a.ndim - 4)]
    if a.shape[2] != 1:
        raise ValueError(f"expected 2D BART data [H, W, 1, coils], got dims {list(bart_array.shape)}")
    return np.ascontiguousarray(np.moveaxis(a[:, :, 0, :], -1, 0))


def bart_executable() -> Path | None:
    """The ``bart`` executable: ``$BART_TOOLBOX_PATH/bart`` if set, else ``bart`` on PATH."""
    if os.environ.get("BART_TOOLBOX_PATH"):
        path = Path(os.environ["BART_TOOLBOX_PATH"]) / "bart"
        return path if path.is_file() else None
    found = shutil.which("bart")
    return Path(found) if found else None


def require_bart() -> Path:
    exe = bart_executable()
    if exe is None:
        raise BartNotFoundError(f"BART executable not found. {BART_HOW_TO_INSTALL}")
    return exe


@cache
def _version(exe: str) -> str:
    return subprocess.run([exe, "version"], capture_output=True, text=True, check=True).stdout.strip()


def bart_version() -> str:
    """Version string of the installed BART (part of the coil-map cache key)."""
    return _version(str(require_bart()))


def run_bart(command: str, *inputs: np.ndarray, n_outputs: int = 1):
    """Run ``bart <command> <inputs…> <outputs…>`` through BART's Python wrapper.

    Returns one array (``n_outputs == 1``) or a list. Raises :class:`BartNotFoundError`
    when BART is missing and :class:`BartCommandError` (with BART's message) on failure.
    """
    exe = require_bart()
    import bart as bart_pkg

    # The wrapper finds the executable through BART_TOOLBOX_PATH (else only /usr/bin,
    # /usr/local/bin or WSL), and prints BART's output: point it at our executable
    # and capture what it prints.
    env_before = os.environ.get("BART_TOOLBOX_PATH")
    os.environ["BART_TOOLBOX_PATH"] = str(exe.parent)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            out = bart_pkg.bart(n_outputs, command, *inputs)
    finally:
        if env_before is None:
            os.environ.pop("BART_TOOLBOX_PATH", None)
        else:
            os.environ["BART_TOOLBOX_PATH"] = env_before
    err = getattr(bart_pkg.bart, "ERR", 0)
    if err or (n_outputs and out is None):
        stderr = getattr(bart_pkg.bart, "stderr", "") or printed.getvalue()
        raise BartCommandError(f"`bart {command}` failed (exit code {err}): {stderr.strip()}")
    return out
