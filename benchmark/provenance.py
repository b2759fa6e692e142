"""What code and libraries produced a run (stored in every run's metrics.json).

Run-id policy (docs/conventions.md §10): a run id hashes the fully resolved config (every
default written out), never the code version. Changing a default therefore changes the id
of every run that uses it, and those runs are recomputed rather than mixed with the old
ones under one id. A code change that leaves the config alone keeps the ids: finished runs
are kept, each stores the code version it came from, and the report flags a suite whose
runs come from different code versions (rerun with ``--force`` or into a fresh results folder).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import shutil
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "lightning", "deepinv", "astra-toolbox", "fastmri", "torchmetrics", "numpy")


@functools.cache
def git_version() -> dict:
    """Commit of the project checkout and whether it has uncommitted changes (None outside git)."""
    if not (PROJECT_ROOT / ".git").exists() or not shutil.which("git"):
        return {"git_commit": None, "git_dirty": None}
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        return {"git_commit": git("rev-parse", "HEAD") or None,
                "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def file_hash(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return None


@functools.cache
def library_versions() -> dict:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["bart"] = bart_version()
    return versions


def bart_version() -> str | None:
    exe = shutil.which("bart")
    if not exe:
        return None
    try:
        return subprocess.run([exe, "version"], capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def code_version(method_source: str) -> dict:
    """The code that ran: git commit (or the package version) and the method file's hash."""
    try:
        package = importlib.metadata.version("dipbench")
    except importlib.metadata.PackageNotFoundError:
        package = None
    return {**git_version(), "package_version": package, "method_source_sha256": file_hash(method_source)}


def run_provenance(method_source: str) -> dict:
    return {"code": code_version(method_source), "versions": library_versions()}
