"""Shared callbacks that watch the iterates x^(k) a DIP method returns from
``training_step`` (``outputs["x"]``) and score them against the task's ground truth.

Iteration numbering: iteration k (1-based) is the output computed in the k-th
training step, i.e. x^(k) = f_{θ_{k-1}}(z), as in Survey B Algorithm 1.
Nothing here writes files: the runner asks each callback for its ``summary()``.
"""
from __future__ import annotations

from collections import deque

import torch
from lightning.pytorch.callbacks import Callback

from datamodules.task import Task


class Scorer:
    """PSNR of the current iterate, computed once per step however many callbacks ask."""

    def __init__(self, task: Task):
        self.task = task
        self._step, self._value = -1, float("nan")

    def psnr(self, step: int, x: torch.Tensor) -> float:
        if step != self._step:
            self._step, self._value = step, self.task.psnr(x)
        return self._value


class IterateCallback(Callback):
    """Base: gives subclasses ``on_iterate(step, x, loss)`` once per training step."""

    def __init__(self, task: Task, scorer: Scorer | None = None):
        self.task = task
        self.scorer = scorer or Scorer(task)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.on_iterate(trainer.global_step, outputs["x"], outputs["loss"])

    def on_iterate(self, step: int, x: torch.Tensor, loss: torch.Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    def trace_values(self) -> dict:
        """Extra columns this callback contributes to the trace row of this step."""
        return {}

    def summary(self) -> tuple[dict, dict]:
        """(metrics, images) at the end of the run."""
        return {}, {}


class OracleBest(IterateCallback):
    """The peak-PSNR iterate (needs the ground truth: an oracle, Survey B Table 2 "peak")."""

    def __init__(self, task, scorer=None):
        super().__init__(task, scorer)
        self.best_psnr, self.best_step, self.best_x = float("-inf"), 0, None

    def on_iterate(self, step, x, loss):
        psnr = self.scorer.psnr(step, x)
        if psnr > self.best_psnr:
            self.best_psnr, self.best_step, self.best_x = psnr, step, x.clone()

    def summary(self):
        ssim = self.task.ssim(self.best_x) if self.best_x is not None else float("nan")
        return {"peak_psnr": self.best_psnr, "peak_step": self.best_step, "peak_ssim": ssim}, {"peak": self.best_x}


class FinalIterate(IterateCallback):
    """The last iterate x^(N) (the original DIP's reported output)."""

    def __init__(self, task, scorer=None):
        super().__init__(task, scorer)
        self.x, self.step, self.loss = None, 0, float("nan")

    def on_iterate(self, step, x, loss):
        self.x, self.step, self.loss = x, step, float(loss)

    def summary(self):
        if self.x is None:
            return {"final_psnr": float("nan"), "final_ssim": float("nan"), "final_step": 0}, {}
        metrics = {"final_psnr": self.task.psnr(self.x), "final_ssim": self.task.ssim(self.x), "final_step": self.step,
                   "final_loss": self.loss}
        return metrics, {"final": self.x}


class EMAOutput(IterateCallback):
    """Exponential moving average of the iterates, x̄ ← d·x̄ + (1−d)·x^(k) (DeepRED,
    self-guided DIP; conventions.md §6). Its PSNR is scored only where the trace
    samples it (``psnr_ema``) and at the end, so it costs no metric call per step."""

    def __init__(self, task, decay: float = 0.99, scorer=None):
        super().__init__(task, scorer)
        self.decay = decay
        self.ema: torch.Tensor | None = None
        self.step = 0
        self.best_psnr, self.best_step = float("-inf"), 0

    def on_iterate(self, step, x, loss):
        self.ema = x.clone() if self.ema is None else self.ema.lerp_(x, 1.0 - self.decay)
        self.step = step

    def trace_values(self):
        psnr = self.task.psnr(self.ema)
        if psnr > self.best_psnr:
            self.best_psnr, self.best_step = psnr, self.step
        return {"psnr_ema": psnr}

    def summary(self):
        if self.ema is None:
            return {}, {}
        final = self.task.psnr(self.ema)
        return {"ema_final_psnr": final, "ema_peak_psnr_traced": max(self.best_psnr, final),
                "ema_peak_step_traced": self.best_step if self.best_psnr >= final else self.step}, {"ema": self.ema}


class RunningVarianceES(IterateCallback):
    """Early stopping by running variance (Survey B Algorithm 2 with g = VAR of eq 19).

    VAR(k) = (1/W) Σ_{w} ‖x^(w) − x̄‖² over the W iterates ending at iteration k
    (computed from running sums in float64). Algorithm 2: when g(k) < δ·g_min,
    g_min ← g(k), k_min ← k; stop once k > k_min + p. The early-stopped image is
    x^(k_min), the newest iterate of the window with the smallest variance (the one a
    user stopping online would hold). The run is not stopped: the callback records the
    stop iteration and the pick, so peak, early-stopped and final are all known.
    """

    def __init__(self, task, window: int = 100, patience: int = 1000, delta: float = 0.99, scorer=None):
        super().__init__(task, scorer)
        self.window, self.patience, self.delta = window, patience, delta
        self.frames: deque[torch.Tensor] = deque()
        self.sum: torch.Tensor | None = None
        self.sum_sq = 0.0
        self.variance = float("nan")
        self.g_min, self.k_min, self.x_min = float("inf"), None, None
        self.stop_step: int | None = None

    def on_iterate(self, step, x, loss):
        frame = x.detach().to(torch.float64)
        self.frames.append(frame)
        self.sum = frame.clone() if self.sum is None else self.sum.add_(frame)
        self.sum_sq += float(frame.pow(2).sum())
        if len(self.frames) > self.window:
            old = self.frames.popleft()
            self.sum.sub_(old)
            self.sum_sq -= float(old.pow(2).sum())
        if len(self.frames) < self.window:
            self.variance = float("nan")
            return
        mean = self.sum / self.window
        self.variance = max(self.sum_sq / self.window - float(mean.pow(2).sum()), 0.0)
        self.update(step, self.variance, x)

    def update(self, step: int, g: float, x: torch.Tensor | None = None) -> None:
        """One step of Algorithm 2 for metric value g = g(step)."""
        if self.stop_step is not None:
            return
        if g < self.delta * self.g_min:
            self.g_min, self.k_min = g, step
            self.x_min = None if x is None else x.clone()
        elif step > self.k_min + self.patience:
            self.stop_step = step

    def trace_values(self):
        return {"variance": self.variance}

    def summary(self):
        if self.k_min is None:
            return {"es_psnr": float("nan"), "es_step": None, "es_stop_step": None}, {}
        metrics = {
            "es_psnr": self.task.psnr(self.x_min),
            "es_ssim": self.task.ssim(self.x_min),
            "es_step": self.k_min,
            "es_stop_step": self.stop_step,  # None: patience not exhausted before N
        }
        return metrics, {"early_stopped": self.x_min}


class Trace(IterateCallback):
    """Per-iteration trace at a stride, kept in memory (written once by the runner):
    step, loss, PSNR, SSIM (every ``ssim_every`` rows) and the other callbacks' columns."""

    def __init__(self, task, every: int = 10, ssim_every: int = 10, others=(), scorer=None):
        super().__init__(task, scorer)
        self.every, self.ssim_every = every, ssim_every
        self.others = list(others)
        self.rows: list[dict] = []
        self._last = None

    def on_iterate(self, step, x, loss):
        self._last = (step, x, loss)
        if step % self.every and step != 1:
            return
        self._record(step, x, loss)

    def on_train_end(self, trainer, pl_module):
        if self._last is not None and (not self.rows or self.rows[-1]["step"] != self._last[0]):
            self._record(*self._last)  # the final iterate is always in the trace

    def _record(self, step, x, loss):
        row = {"step": step, "loss": float(loss), "psnr": self.scorer.psnr(step, x)}
        if len(self.rows) % self.ssim_every == 0:
            row["ssim"] = self.task.ssim(x)
        for other in self.others:
            row.update(other.trace_values())
        self.rows.append(row)
