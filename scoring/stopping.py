"""Early-stopping rules: pluggable callbacks with a registry, usable with every method.

A rule watches the reconstruction iterates online, keeps the iterate it would return
(``pick_step``, ``pick_x``) and records when it would stop (``stop_step``). The run is
never stopped, so one run gives every rule's pick next to the oracle peak and the final
iterate. A suite chooses the rules and their settings with ``run.stopping``::

    run.stopping: {running_variance: {window: 100, patience: 1000}, es_wmv: {}, discrepancy: {tau: 1.0}}

Rules (docs/conventions.md §8): ``running_variance`` (Survey B Algorithm 2), ``es_wmv`` and
``es_emv`` (ES-DIP, Wang et al. TMLR 2023; Survey A eq 16), ``discrepancy`` (Morozov).

Metrics per rule: ``es.<rule>.psnr``, ``.ssim``, ``.step`` (the pick), ``.stop_step``
(None: the rule never fired before the last iteration) and ``.data_residual`` (‖Ax − y‖ of
the pick); the reports derive ``.gap_db`` (oracle peak − pick). A rule without a pick
reports ``.psnr`` NaN and ``.step`` None. Trace column: ``es.<rule>.g``, the monitored
value. Every rule takes its monitored value through ``update(step, g, x)``; a NaN/inf g (or
iterate) is never an improvement and never crashes a rule, and patience only counts once a
rule has a pick.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Literal

import torch

from core import keys
from core.registry import Registry
from core.schema import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from scoring.callbacks import IterateCallback, StepOutput, data_residual
from scoring.noise import estimate_noise_sigma, task_noise_sigma

STOPPING_RULES = Registry("stopping rule")  # the rules below and those of plugins (target: the rule class)


def register_stopping_rule(name: str, config: type, description: str, paper: str = ""):
    def decorator(cls):
        STOPPING_RULES.register(name, config, description, paper)(cls)
        cls.rule_name = name
        return cls

    return decorator


stopping_rule_configs = STOPPING_RULES.configs


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

    def _pick(self, step: int, x: torch.Tensor | None) -> None:
        self.pick_step = step
        self.pick_x = None if x is None else x.detach().clone()

    def trace_values(self):
        return {keys.es(self.rule_name, "g"): self.g}

    def summary(self):
        name = self.rule_name
        if self.pick_x is None:  # without a ground truth no PSNR key at all (docs/conventions.md §11)
            nan = {keys.es(name, "psnr"): float("nan")} if self.has_gt else {}
            return {**nan, keys.es(name, "step"): None, keys.es(name, "stop_step"): None}, {}
        metrics = {**{keys.es(name, k): v for k, v in self.scores(self.pick_x).items()},
                   keys.es(name, "step"): self.pick_step, keys.es(name, "stop_step"): self.stop_step,
                   keys.es(name, "data_residual"): data_residual(self.task.physics, self.pick_x, self.task.y)}
        return metrics, {keys.es_image(name): self.pick_x}


class WindowVariance:
    """VAR(k) = (1/W) Σ_w ‖x^(w) − x̄‖² over the W iterates ending at iteration k (Survey B
    eq 19 = Survey A eq 16 indexed by the window's newest iterate), from running sums in
    float64. NaN until W iterates are in; NaN while a non-finite iterate is in the window (the
    sums are then recomputed from the window each step, so the value recovers once it leaves)."""

    def __init__(self, window: int):
        self.window = window
        self.frames: deque[torch.Tensor] = deque()
        self.sum: torch.Tensor | None = None
        self.sum_sq = 0.0

    def push(self, x: torch.Tensor) -> float:
        frame = x.detach().to(torch.float64)
        self.frames.append(frame)
        self.sum = frame.clone() if self.sum is None else self.sum.add_(frame)
        self.sum_sq += float(frame.pow(2).sum())
        if len(self.frames) > self.window:
            old = self.frames.popleft()
            self.sum.sub_(old)
            self.sum_sq -= float(old.pow(2).sum())
            if not math.isfinite(self.sum_sq):  # a NaN/inf iterate passed through: rebuild the sums
                self.sum = torch.stack(tuple(self.frames)).sum(0)
                self.sum_sq = float(sum(float(f.pow(2).sum()) for f in self.frames))
        if len(self.frames) < self.window or not math.isfinite(self.sum_sq):
            return float("nan")
        mean = self.sum / self.window
        return max(self.sum_sq / self.window - float(mean.pow(2).sum()), 0.0)


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
        self.variance = WindowVariance(self.cfg.window)
        self.g_min = float("inf")

    def on_iterate(self, step: int, out: StepOutput) -> None:
        self.g = self.variance.push(out.x)
        if len(self.variance.frames) >= self.cfg.window:  # full window (g NaN if it holds a non-finite iterate)
            self.update(step, self.g, out.x)

    def update(self, step: int, g: float, x: torch.Tensor | None = None) -> None:
        """One step of Algorithm 2 for metric value g = g(step)."""
        if self.stop_step is not None:
            return
        if math.isfinite(g) and g < self.cfg.delta * self.g_min:
            self.g_min = g
            self._pick(step, x)
        elif self.pick_step is not None and step > self.pick_step + self.cfg.patience:
            self.stop_step = step


class ConsecutivePatienceES(StoppingRule):
    """The ES-DIP decision (Wang et al., TMLR 2023, Alg. 1) shared by ES-WMV and ES-EMV: a new
    minimum is any strict decrease of g; each resets the count of consecutive non-improving
    iterations, and the rule stops at the ``cfg.patience``-th of them."""

    def __init__(self, task, cfg, scorer=None):
        super().__init__(task, cfg, scorer)
        self.g_min = float("inf")
        self.wait = 0  # consecutive non-improving iterations since the last new minimum

    def update(self, step: int, g: float, x: torch.Tensor | None = None) -> None:
        """The check for g = g(step) (called once per iteration); NaN is never an improvement."""
        if self.stop_step is not None:
            return
        if math.isfinite(g) and g < self.g_min:
            self.g_min, self.wait = g, 0
            self._pick(step, x)
        elif self.pick_step is not None:
            self.wait += 1
            if self.wait >= self.cfg.patience:
                self.stop_step = step


@dataclass
class WMVConfig:
    window: PositiveInt = 100  # W (ES-DIP code, ES_WMV.ipynb: buffer_size = 100)
    patience: PositiveInt = 1000  # P: consecutive iterations without a new minimum (ES_WMV.ipynb: patience = 1000)


@register_stopping_rule("es_wmv", WMVConfig,
                        "windowed moving variance, stop after P consecutive iterations without a new minimum",
                        "ES-WMV, Wang et al. TMLR 2023 Alg. 1; Survey A eq (16)")
class WindowedMovingVarianceES(ConsecutivePatienceES):
    """ES-WMV (Wang et al., "Early stopping for deep image prior", TMLR 2023; Survey A eq 16).

    g(k) = VAR over the W iterates x^(k−W+1) … x^(k) (Survey A eq 16 writes VAR_t for the
    window starting at t = k − W + 1). A new minimum is any strict decrease g(k) < g_min;
    each one resets the count of consecutive non-improving iterations, and the rule stops at
    the P-th (k_stop = k_min + P). The pick is x^(k_min), the newest iterate of the window with
    the smallest variance: the reference code (sun-umn/Early_Stopping_for_DIP, ES_WMV.ipynb)
    records ``best_epoch`` = the iteration whose image was just pushed into the buffer.

    Differs from ``running_variance`` (Survey B Alg. 2), which has the same g but counts only
    decreases below δ·g_min (δ = 0.99) and stops at k_min + p + 1. The reference divides VAR by
    the number of pixels as well; a constant factor changes no decision.
    """

    def __init__(self, task, cfg: WMVConfig | None = None, scorer=None):
        super().__init__(task, cfg or WMVConfig(), scorer)
        self.variance = WindowVariance(self.cfg.window)

    def on_iterate(self, step: int, out: StepOutput) -> None:
        self.g = self.variance.push(out.x)
        if len(self.variance.frames) >= self.cfg.window:
            self.update(step, self.g, out.x)


@dataclass
class EMVConfig:
    alpha: Annotated[float, Range(gt=0, lt=1)] = 0.1  # α: weight of the newest iterate (ES_EMV.ipynb: alpha = 0.1)
    patience: PositiveInt = 1000  # P: consecutive iterations without a new minimum (ES_EMV.ipynb: patience = 1000)
    burn_in: NonNegativeInt = 100  # updates after the first iterate before EMV is compared (ES_EMV.ipynb: iterator > 100)
    pick: Literal["ema", "iterate"] = "ema"  # image returned at the EMV minimum (ES_EMV.ipynb reports the EMA's PSNR)


@register_stopping_rule("es_emv", EMVConfig,
                        "exponential moving variance, stop after P consecutive iterations without a new minimum",
                        "ES-EMV, Wang et al. TMLR 2023")
class ExponentialMovingVarianceES(ConsecutivePatienceES):
    """ES-EMV, the memory-light variant of ES-WMV (Wang et al., TMLR 2023; reference code
    sun-umn/Early_Stopping_for_DIP, ES_EMV.ipynb). With δ = x^(k) − EMA:

        EMA ← EMA + α δ,    EMV ← (1 − α)(EMV + α ‖δ‖²),      EMA = x^(1), EMV = 0 at the start.

    The EMA is clipped to [0, 1] on tasks whose images lie there (``x_range == "unit"``), as
    the reference does. EMV is compared once ``burn_in`` updates have followed the first iterate
    (before that EMV starts from 0 and would be an unbeatable minimum), with ES-WMV's strict
    decrease and consecutive patience. The pick is the EMA at the EMV minimum (``pick: ema``, what
    the reference reports; its PSNR can exceed the raw iterates' peak, giving a negative gap) or
    the iterate x^(k_min) (``pick: iterate``). A non-finite iterate is not folded in (g = NaN).
    """

    def __init__(self, task, cfg: EMVConfig | None = None, scorer=None):
        super().__init__(task, cfg or EMVConfig(), scorer)
        self.ema: torch.Tensor | None = None
        self.emv = 0.0
        self.updates = 0  # iterates folded in after the initialising one
        self.clip = getattr(task, "x_range", "unit") == "unit"

    def on_iterate(self, step: int, out: StepOutput) -> None:
        x = out.x.detach().to(torch.float64)
        if not bool(torch.isfinite(x).all()):
            self.g = float("nan")
        elif self.ema is None:
            self.ema, self.emv, self.g = x.clone(), 0.0, float("nan")
            return
        else:
            delta = x - self.ema
            self.ema = self.ema + self.cfg.alpha * delta
            if self.clip:
                self.ema = self.ema.clamp(0, 1)
            self.emv = (1 - self.cfg.alpha) * (self.emv + self.cfg.alpha * float(delta.pow(2).sum()))
            self.updates += 1
            self.g = self.emv if self.updates > self.cfg.burn_in else float("nan")
        if self.ema is not None and self.updates > self.cfg.burn_in:
            self.update(step, self.g, self.ema.to(out.x.dtype) if self.cfg.pick == "ema" else out.x)


@dataclass
class DiscrepancyConfig:
    tau: PositiveFloat = 1.0  # τ of ‖Ax − y‖² ≤ τ m σ² (Survey B eq 31; Cascarano et al.'s cDIP notebooks: tau = 1)
    sigma: NonNegativeFloat | None = None  # σ in y's units; None: the task's stated σ, else estimated from y


@register_stopping_rule("discrepancy", DiscrepancyConfig,
                        "discrepancy principle, stop at the first ‖Ax − y‖² ≤ τ m σ²",
                        "Morozov; Survey B eq (31) as a stopping rule")
class DiscrepancyES(StoppingRule):
    """Morozov's discrepancy principle as a stopping rule: stop at the first iteration k with
    ‖A x^(k) − y‖² ≤ τ m σ² (the constraint set S_σ of Survey B eq 31), m = number of measured
    entries of y (non-zero: inpainting holes and unsampled k-space are stored as 0), σ = config
    ``sigma``, else the task's stated noise level, else :func:`scoring.noise.estimate_noise_sigma`.
    Monitored value g(k) = ‖A x^(k) − y‖² / (m σ²), so the threshold is τ. The pick is x^(k) at
    that first crossing; a run that never reaches it has no pick (psnr NaN, step None). With
    σ = 0 (a noise-free task) it fires only on an exact fit. Needs no window.
    """

    def __init__(self, task, cfg: DiscrepancyConfig | None = None, scorer=None):
        super().__init__(task, cfg or DiscrepancyConfig(), scorer)
        stated = task_noise_sigma(getattr(task, "info", {}) or {})
        if self.cfg.sigma is not None:
            self.sigma, self.sigma_source = float(self.cfg.sigma), "config"
        elif stated is not None:
            self.sigma, self.sigma_source = stated, "task"
        else:
            self.sigma, self.sigma_source = estimate_noise_sigma(task.y, task.physics), "estimate"
        self.y = torch.view_as_real(task.y) if task.y.is_complex() else task.y  # σ is per real component
        self.m = int(torch.count_nonzero(self.y))

    def residual(self, x: torch.Tensor) -> float:
        """‖A x − y‖² in float64."""
        with torch.no_grad():
            if self.y.device != x.device:
                self.y = self.y.to(x.device)
            r = self.task.physics.A(x)
            r = torch.view_as_real(r) if r.is_complex() else r
            return float((r - self.y).double().pow(2).sum())

    def on_iterate(self, step: int, out: StepOutput) -> None:
        res, bound = self.residual(out.x), self.m * self.sigma**2
        self.g = res / bound if bound > 0 else (0.0 if res == 0 else float("inf"))
        self.update(step, self.g, out.x)

    def update(self, step: int, g: float, x: torch.Tensor | None = None) -> None:
        """Fire at the first g ≤ τ (NaN never satisfies it)."""
        if self.stop_step is None and g <= self.cfg.tau:
            self.stop_step = step
            self._pick(step, x)

    def summary(self):
        metrics, images = super().summary()
        metrics[keys.es(self.rule_name, "sigma")] = self.sigma
        return metrics, images


def build_stopping_rules(task, settings: dict, scorer=None) -> list[StoppingRule]:
    """One callback per configured rule (``settings``: rule name → its config)."""
    unknown = set(settings) - set(STOPPING_RULES)
    if unknown:
        raise ValueError(f"unknown stopping rule(s) {sorted(unknown)}; valid: {', '.join(STOPPING_RULES)}")
    return [STOPPING_RULES[name].target(task, cfg, scorer) for name, cfg in settings.items()]
