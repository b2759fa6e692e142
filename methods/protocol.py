"""What every method states about itself, DIP module or baseline alike (benchopt's
``skip``): the task capabilities it needs, whether it can run on a task and why not, and
how many iterations a run of it takes. The runner dispatches on :attr:`kind`."""
from __future__ import annotations

from typing import ClassVar

from core.results import MethodKind
from datamodules.registry import CAPABILITIES, TaskInfo


class MethodProtocol:
    kind: ClassVar[MethodKind]
    method_name: str = "method"  # set by register_method
    requires: frozenset[str] = frozenset()  # task capabilities the method always needs

    @classmethod
    def requirements(cls, cfg) -> set[str]:
        """Capabilities needed with these settings (``datamodules.registry.CAPABILITIES``)."""
        return set(cls.requires)

    @classmethod
    def skip(cls, cfg, task: TaskInfo) -> str | None:
        """Why this method cannot run on ``task`` with these settings, or None. The default
        names the task capabilities it lacks; a method overrides it to state other reasons
        (missing weights, a missing program)."""
        missing = cls.requirements(cfg) - task.capabilities
        if not missing:
            return None
        needs = "; ".join(f"{m} ({CAPABILITIES.get(m, '?')})" for m in sorted(missing))
        return f"{cls.method_name} needs {needs}, which {task.name} does not provide"

    @classmethod
    def iterations(cls, cfg, max_steps: int) -> int:
        """Iterations of the reconstruction stage a run takes (progress and time estimates)."""
        return max_steps if cls.kind == MethodKind.DIP else 0
