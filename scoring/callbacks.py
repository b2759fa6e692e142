"""Shared callbacks that watch what a method's ``training_step`` returns and score it
against the task's ground truth (only these callbacks hold it; methods never do).

Iteration numbering: iteration k is ``pl_module.iteration`` (1 … max_steps in the
reconstruction stage, ≤ 0 in preparatory stages), x^(k) = f_{θ_{k-1}}(z) for vanilla DIP
(Survey B Algorithm 1). Peak, EMA, stopping rules and the final image see only the
reconstruction stage; the trace records every stage. Nothing here writes files: the
runner asks each callback for its ``summary()``. Metric and column names: core/keys.py.

Without ground truth (``task.has_ground_truth`` False, a user's real measurement) nothing
is scored: every PSNR/SSIM metric and trace column is absent (not NaN), the oracle peak
does not exist, and the loss, the data residual ‖Ax − y‖₂ (trace column for every run),
the EMA and named iterates' images and every stopping rule's pick are still recorded
(docs/conventions.md §11).
"""
from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field

import torch
from lightning.pytorch.callbacks import Callback

from core import keys
from datamodules.task import Task


@dataclass
class StepOutput:
    """What one iteration returned (see methods/base.py for the contract)."""

    loss: float
    x: torch.Tensor
    iterates: dict[str, torch.Tensor] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, outputs, x_shape: tuple[int, ...]) -> StepOutput:
        if not isinstance(outputs, dict) or not isinstance(outputs.get("x"), torch.Tensor):
            raise TypeError("training_step must return a dict with the reconstruction 'x' (a tensor) and 'loss' "
                            f"(see methods/base.py); got {type(outputs).__name__}"
                            f"{' with keys ' + ', '.join(outputs) if isinstance(outputs, dict) else ''}")
        x = outputs["x"].detach()
        if tuple(x.shape[1:]) != tuple(x_shape):
            raise ValueError(f"training_step returned x of shape {tuple(x.shape)}; the task's images are (1, {x_shape})")
        iterates = {k: v.detach() for k, v in (outputs.get("iterates") or {}).items()}
        scalars = {k: float(v) for k, v in (outputs.get("scalars") or {}).items()}
        clash = (set(scalars) | {keys.iterate_psnr_column(k) for k in iterates}) & keys.TRACE_RESERVED
        if clash:
            raise ValueError(f"training_step returned names that clash with trace columns: {sorted(clash)}")
        for name, value in scalars.items():
            if not isinstance(value, numbers.Real):
                raise TypeError(f"scalar {name!r} must be a number")
        loss = outputs.get("loss")
        return cls(float(loss) if loss is not None else float("nan"), x, iterates, scalars)


def has_ground_truth(task) -> bool:
    return getattr(task, "gt", None) is not None


def data_residual(physics, x: torch.Tensor, y: torch.Tensor) -> float:
    """‖A x − y‖₂ over all entries (complex ones by modulus), in float64."""
    if x.dtype in (torch.float16, torch.bfloat16):  # mixed precision: the operator is float32 outside autocast
        x = x.float()
    with torch.no_grad():  # on y's device: the batch's during training, the task's (CPU) after Trainer.fit
        r = physics.A(x.to(y.device)) - y
        return float(torch.linalg.vector_norm(r.to(torch.complex128 if r.is_complex() else torch.float64)))


class Scorer:
    """What every callback of a run shares per step: the parsed step output and the PSNR of
    the current iterate, each computed once per step however many callbacks ask (PSNR only
    with a ground truth: ``available``)."""

    def __init__(self, task: Task):
        self.task = task
        self.available = has_ground_truth(task)
        self._step, self._value = None, float("nan")
        self._outputs, self._parsed = None, None  # the step output last parsed (held, so its id is not reused)

    def parse(self, outputs) -> StepOutput:
        """``StepOutput.parse(outputs)``, once per step output for all callbacks sharing this scorer."""
        if outputs is not self._outputs or self._parsed is None:
            self._parsed = StepOutput.parse(outputs, self.task.x_shape)
            self._outputs = outputs
        return self._parsed

    def psnr(self, step: int, x: torch.Tensor) -> float:
        if step != self._step:
            self._step, self._value = step, self.task.psnr(x)
        return self._value


class CallbackGroup(Callback):
    """Several callbacks as one for Lightning, called in order: Lightning wraps every hook of
    every callback in its profiler and bookkeeping (about 7 hooks × every callback per
    iteration), so a run's own callbacks go in as one. Forwards the hooks the benchmark's
    callbacks use (others' callbacks, e.g. a test's, stay separate Lightning callbacks)."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for cb in self.callbacks:
            cb.on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        for cb in self.callbacks:
            cb.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_fit_start(self, trainer, pl_module):
        for cb in self.callbacks:
            cb.on_fit_start(trainer, pl_module)

    def on_train_start(self, trainer, pl_module):
        for cb in self.callbacks:
            cb.on_train_start(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        for cb in self.callbacks:
            cb.on_train_end(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module):
        for cb in self.callbacks:
            cb.on_fit_end(trainer, pl_module)


class IterateCallback(Callback):
    """Base: gives subclasses ``on_iterate(step, out)`` once per iteration of the
    reconstruction stage (every stage if ``reconstruction_only`` is False)."""

    reconstruction_only = True

    def __init__(self, task: Task, scorer: Scorer | None = None):
        self.task = task
        self.scorer = scorer or Scorer(task)
        self.has_gt = has_ground_truth(task)

    def scores(self, x: torch.Tensor) -> dict[str, float]:
        """``{"psnr", "ssim"}`` of ``x`` against the ground truth; ``{}`` without one."""
        return {"psnr": self.task.psnr(x), "ssim": self.task.ssim(x)} if self.has_gt else {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.reconstruction_only and not pl_module.reconstructing:
            return
        self.stage = pl_module.stage.name
        self.on_iterate(pl_module.iteration, self.scorer.parse(outputs))

    def on_iterate(self, step: int, out: StepOutput) -> None:  # pragma: no cover - interface
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
        self.first_psnr = float("nan")  # x^(1): where the reconstruction starts (warm start, Survey B Fig. 9)

    def on_iterate(self, step, out):
        if not self.has_gt:
            return  # no oracle without a ground truth
        psnr = self.scorer.psnr(step, out.x)
        if step == 1:
            self.first_psnr = psnr
        if psnr > self.best_psnr:
            self.best_psnr, self.best_step, self.best_x = psnr, step, out.x.clone()

    def summary(self):
        if not self.has_gt:
            return {}, {}
        ssim = self.task.ssim(self.best_x) if self.best_x is not None else float("nan")
        return ({keys.PEAK_PSNR: self.best_psnr, keys.PEAK_STEP: self.best_step, keys.PEAK_SSIM: ssim,
                 keys.FIRST_PSNR: self.first_psnr}, {"peak": self.best_x})


class FinalIterate(IterateCallback):
    """The last iterate x^(N) (the original DIP's reported output)."""

    def __init__(self, task, scorer=None):
        super().__init__(task, scorer)
        self.x, self.step, self.loss = None, 0, float("nan")

    def on_iterate(self, step, out):
        self.x, self.step, self.loss = out.x, step, out.loss

    def summary(self):
        if self.x is None:
            nan = {keys.FINAL_PSNR: float("nan"), keys.FINAL_SSIM: float("nan")} if self.has_gt else {}
            return {**nan, keys.FINAL_STEP: 0}, {}
        scores = self.scores(self.x)
        metrics = {**({keys.FINAL_PSNR: scores["psnr"], keys.FINAL_SSIM: scores["ssim"]} if scores else {}),
                   keys.FINAL_STEP: self.step, keys.FINAL_LOSS: self.loss,
                   keys.FINAL_RESIDUAL: data_residual(self.task.physics, self.x, self.task.y)}
        return metrics, {"final": self.x}


class EMAOutput(IterateCallback):
    """Exponential moving average of the iterates, x̄ ← d·x̄ + (1−d)·x^(k) (DeepRED,
    self-guided DIP; docs/conventions.md §6). Its PSNR is scored only where the trace
    samples it (``psnr_ema``) and at the end, so it costs no metric call per step."""

    def __init__(self, task, decay: float = 0.99, scorer=None):
        super().__init__(task, scorer)
        self.decay = decay
        self.ema: torch.Tensor | None = None
        self.step = 0
        self.best_psnr, self.best_step = float("-inf"), 0

    def on_iterate(self, step, out):
        self.ema = out.x.clone() if self.ema is None else self.ema.lerp_(out.x, 1.0 - self.decay)
        self.step = step

    def trace_values(self):
        if self.ema is None or not self.has_gt:
            return {}
        psnr = self.task.psnr(self.ema)
        if psnr > self.best_psnr:
            self.best_psnr, self.best_step = psnr, self.step
        return {"psnr_ema": psnr}

    def summary(self):
        if self.ema is None:
            return {}, {}
        if not self.has_gt:
            return {}, {"ema": self.ema}
        final = self.task.psnr(self.ema)
        return {"ema_final_psnr": final, "ema_peak_psnr_traced": max(self.best_psnr, final),
                "ema_peak_step_traced": self.best_step if self.best_psnr >= final else self.step}, {"ema": self.ema}


class NamedIterates(IterateCallback):
    """Secondary iterates a method returns by name (HQS's ``u``, a denoised image, …):
    PSNR at the trace stride (``psnr_<name>``), final and traced-peak PSNR in the metrics,
    final image stored as ``iterate_<name>``."""

    def __init__(self, task, scorer=None):
        super().__init__(task, scorer)
        self.latest: dict[str, torch.Tensor] = {}
        self.best: dict[str, tuple[float, int]] = {}
        self.step = 0

    def on_iterate(self, step, out):
        self.latest, self.step = out.iterates, step

    def trace_values(self):
        row = {}
        if not self.has_gt:
            return row
        for name, value in self.latest.items():
            psnr = self.task.psnr(value)
            row[keys.iterate_psnr_column(name)] = psnr
            if psnr > self.best.get(name, (float("-inf"), 0))[0]:
                self.best[name] = (psnr, self.step)
        return row

    def summary(self):
        metrics, images = {}, {}
        for name, value in self.latest.items():
            images[keys.iterate_image(name)] = value
            if not self.has_gt:
                continue
            final = self.task.psnr(value)
            peak, peak_step = max(self.best.get(name, (float("-inf"), 0)), (final, self.step))
            metrics.update({keys.iterate(name, "final_psnr"): final, keys.iterate(name, "peak_psnr"): peak,
                            keys.iterate(name, "peak_step"): peak_step})
        return metrics, images


class Trace(IterateCallback):
    """Per-iteration trace at a stride, kept in memory (written once by the runner):
    step, stage, loss, data residual ‖Ax − y‖₂, PSNR and SSIM (every ``ssim_every`` rows;
    only with a ground truth), the method's scalars and the other callbacks' columns, and
    ``wall_time_s``, the seconds since training started (every stage; docs/conventions.md §18).
    Records every stage."""

    reconstruction_only = False

    def __init__(self, task, every: int = 10, ssim_every: int = 10, others=(), scorer=None):
        super().__init__(task, scorer)
        self.every, self.ssim_every = every, ssim_every
        self.others = list(others)
        self.rows: list[dict] = []
        self._last = None
        self._physics, self._y = task.physics, task.y  # replaced by the module's (on its device) during fit
        self._t0 = time.perf_counter()

    def on_train_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.reconstructing = pl_module.reconstructing
        self._physics, self._y = pl_module.physics, batch["y"]  # on the module's device
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_iterate(self, step, out):
        self._last = (step, out, self.stage, self.reconstructing)
        if step % self.every and step != 1:
            return
        self._record(*self._last)

    def on_train_end(self, trainer, pl_module):
        if self._last is not None and (not self.rows or self.rows[-1]["step"] != self._last[0]):
            self._record(*self._last)  # the final iterate is always in the trace

    def _record(self, step, out, stage, reconstructing):
        row = {"step": step, "stage": stage, "loss": out.loss, keys.RESIDUAL: data_residual(self._physics, out.x, self._y)}
        row[keys.WALL_TIME] = time.perf_counter() - self._t0  # after the residual: a device sync has happened
        if self.has_gt:
            row["psnr"] = self.scorer.psnr(step, out.x)
            if len(self.rows) % self.ssim_every == 0:
                row["ssim"] = self.task.ssim(out.x)
        row.update(out.scalars)
        if reconstructing:
            for other in self.others:
                row.update(other.trace_values())
        self.rows.append(row)
