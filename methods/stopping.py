"""Early-stopping rules: pluggable callbacks with a registry, usable with every method.

A rule watches the reconstruction iterates online, keeps the iterate it would return
(``pick_step``, ``pick_x``) and records when it would stop (``stop_step``). The run is
never stopped, so one run gives every rule's pick next to the oracle peak and the final
iterate. A suite chooses the rules and their settings with ``run.stopping``::

    run.stopping: {running_variance: {window: 100, patience: 1000}}

Metrics per rule: ``es.<rule>.psnr``, ``.ssim``, ``.step`` (the pick), ``.stop_step``
(None: the rule never fired before the last iteration) and ``.gap_db`` (oracle peak − pick,
added by the runner). Trace column: ``es.<rule>.g``, the monitored value.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Annotated

import torch

from datamodules.schema import PositiveInt, Range
from methods import keys
from methods.callbacks import IterateCallback, StepOutput


@dataclass(frozen=True)
class StoppingRuleSpec:
    name: str
    cls: type
    config: type
    description: str
    paper: str


STOPPING_RULES: dict[str, StoppingRuleSpec] = {}


def register_stopping_rule(name: str, config: type, description: str, paper: str = ""):
    def decorator(cls):
        if name in STOPPING_RULES:
            raise ValueError(f"stopping rule {name!r} is registered twice")
        STOPPING_RULES[name] = StoppingRuleSpec(name, cls, config, description, paper)
        cls.rule_name = name
        return cls

    return decorator


def stopping_rule_configs() -> dict[str, type]:
    return {name: spec.config for name, spec in STOPPING_RULES.items()}


class StoppingRule(IterateCallback):
    """Base of a rule: subclasses call :meth:`update` with g(k) and the iterate."""

    rule_name = "rule"

    def __init__(self, task, cfg, scorer=None):
        super().__init__(task, scorer)
        self.cfg = cfg
        self.g = float("nan")
        self.pick_step: int | None = None
        self.pick_x: torch.Tensor | None = None
        self.stop_step: int | None = None

    def trace_values(self):
        return {keys.es(self.rule_name, "g"): self.g}

    def summary(self):
        name = self.rule_name
        if self.pick_x is None:
            return {keys.es(name, "psnr"): float("nan"), keys.es(name, "step"): None, keys.es(name, "stop_step"): None}, {}
        metrics = {keys.es(name, "psnr"): self.task.psnr(self.pick_x), keys.es(name, "ssim"): self.task.ssim(self.pick_x),
                   keys.es(name, "step"): self.pick_step, keys.es(name, "stop_step"): self.stop_step}
        return metrics, {f"es_{name}": self.pick_x}


@dataclass
class RunningVarianceConfig:
    window: PositiveInt = 100  # W: iterates in the variance window
    patience: PositiveInt = 1000  # p: iterations without a δ-relative decrease before stopping
    delta: Annotated[float, Range(gt=0, le=1)] = 0.99  # δ: g must fall below δ·g_min to count as a decrease


@register_stopping_rule("running_variance", RunningVarianceConfig,
                        "running variance of the iterates, stop after p iterations without relative decrease",
                        "Survey B Algorithm 2 with g = VAR of eq (19)")
class RunningVarianceES(StoppingRule):
    """Early stopping by running variance (Survey B Algorithm 2 with g = VAR of eq 19).

    VAR(k) = (1/W) Σ_{w} ‖x^(w) − x̄‖² over the W iterates ending at iteration k
    (computed from running sums in float64). Algorithm 2: when g(k) < δ·g_min,
    g_min ← g(k), k_min ← k; stop once k > k_min + p. The pick is x^(k_min), the newest
    iterate of the window with the smallest variance (the one a user stopping online holds).
    """

    def __init__(self, task, cfg: RunningVarianceConfig | None = None, scorer=None):
        super().__init__(task, cfg or RunningVarianceConfig(), scorer)
        self.frames: deque[torch.Tensor] = deque()
        self.sum: torch.Tensor | None = None
        self.sum_sq = 0.0
        self.g_min = float("inf")

    def on_iterate(self, step: int, out: StepOutput) -> None:
        window = self.cfg.window
        frame = out.x.detach().to(torch.float64)
        self.frames.append(frame)
        self.sum = frame.clone() if self.sum is None else self.sum.add_(frame)
        self.sum_sq += float(frame.pow(2).sum())
        if len(self.frames) > window:
            old = self.frames.popleft()
            self.sum.sub_(old)
            self.sum_sq -= float(old.pow(2).sum())
        if len(self.frames) < window:
            self.g = float("nan")
            return
        mean = self.sum / window
        self.g = max(self.sum_sq / window - float(mean.pow(2).sum()), 0.0)
        self.update(step, self.g, out.x)

    def update(self, step: int, g: float, x: torch.Tensor | None = None) -> None:
        """One step of Algorithm 2 for metric value g = g(step)."""
        if self.stop_step is not None:
            return
        if g < self.cfg.delta * self.g_min:
            self.g_min, self.pick_step = g, step
            self.pick_x = None if x is None else x.clone()
        elif step > self.pick_step + self.cfg.patience:
            self.stop_step = step


def build_stopping_rules(task, settings: dict, scorer=None) -> list[StoppingRule]:
    """One callback per configured rule (``settings``: rule name → its config)."""
    unknown = set(settings) - set(STOPPING_RULES)
    if unknown:
        raise ValueError(f"unknown stopping rule(s) {sorted(unknown)}; valid: {', '.join(STOPPING_RULES)}")
    return [STOPPING_RULES[name].cls(task, cfg, scorer) for name, cfg in settings.items()]
