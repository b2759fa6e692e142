"""A run's memory, estimated from its config before anything is allocated, and the memory
this process may use (issue 23: ``image_size: 100000`` reached allocation and the whole grid
died with ``std::bad_alloc``).

The estimate is a **lower bound** (docs/conventions.md §16): the reconstruction grid's pixels
× the widest network layer's channels × 4 bytes × 3 (its activation, the activation's gradient
and one working copy), plus, for a CT task, the stored system matrix (about 2 non-zeros per
pixel and ray at 12 bytes each). Real runs need more (every layer keeps its activation), so a
run refused here could never have run; one that passes may still run out of memory, and is
then stored as failed (``failure.kind = out_of_memory``) like any other failure.

The limit is the least of the machine's available memory (``MemAvailable``), the cgroup's
``memory.max`` and ``RLIMIT_AS``; ``DIPBENCH_MEMORY_LIMIT_GB`` overrides it (a scheduler's
allocation, or tests).
"""
from __future__ import annotations

import dataclasses
import math
import os
import resource
from pathlib import Path

BYTES_PER_VALUE = 4
SIZE_FIELDS = ("image_size", "crop", "size", "length")  # square side (or 1-D length) of the reconstruction grid


class RunTooLarge(MemoryError):
    """The run's lower-bound memory estimate exceeds the memory this process may use."""


def grid_pixels(dataset_cfg) -> int | None:
    """Pixels of the reconstruction grid named by the dataset config (None if it names none)."""
    values = {f.name: getattr(dataset_cfg, f.name) for f in dataclasses.fields(dataset_cfg)}
    for name in SIZE_FIELDS:
        value = values.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value if name == "length" else value * value
    return None


def widest_layer(method_cfg) -> int:
    net = getattr(method_cfg, "net", None)
    widths = [getattr(net, "channels", 0) or 0, *(getattr(net, "skip_channels", None) or [])]
    return max([w for w in widths if isinstance(w, int)] + [1])


def estimate_bytes(run) -> int | None:
    """Lower bound of the memory ``run`` (a resolved RunConfig) needs; None if its grid size is
    not in the config (e.g. a full image without a crop)."""
    pixels = grid_pixels(run.dataset_cfg)
    if pixels is None:
        return None
    total = pixels * widest_layer(run.method_cfg) * BYTES_PER_VALUE * 3
    cfg = run.dataset_cfg
    angles = getattr(cfg, "n_angles", None) or getattr(cfg, "n_views", None)
    if angles:  # a CT task stores its system matrix: rays × ~2 pixels per ray and pixel row
        side = math.isqrt(pixels)
        detectors = getattr(cfg, "n_detectors", None) or math.ceil(math.sqrt(2) * side)
        total += angles * detectors * 2 * side * 12
    return total


def memory_limit() -> tuple[int | None, str]:
    """(bytes this process may use, where the number comes from); (None, why) if unknown."""
    override = os.environ.get("DIPBENCH_MEMORY_LIMIT_GB")
    if override:
        return int(float(override) * 2**30), "DIPBENCH_MEMORY_LIMIT_GB"
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append((int(line.split()[1]) * 1024, "available memory"))
    except OSError:
        pass
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append((int(text), "cgroup memory.max"))
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1):
        limits.append((soft, "RLIMIT_AS"))
    return min(limits) if limits else (None, "unknown")


def gb(n: int) -> str:
    return f"{n / 2**30:.3g} GB"


def check_fits(run) -> int | None:
    """Raise :class:`RunTooLarge` (with the estimate and the limit) if ``run`` cannot fit; else
    return the estimate (None if unknown)."""
    need = estimate_bytes(run)
    limit, source = memory_limit()
    if need is not None and limit is not None and need > limit:
        raise RunTooLarge(f"this run needs at least {gb(need)} (reconstruction grid of {grid_pixels(run.dataset_cfg)} "
                          f"pixels) but this process may use {gb(limit)} ({source}); use a smaller image_size/crop "
                          "or a machine with more memory (DIPBENCH_MEMORY_LIMIT_GB overrides the limit)")
    return need
