"""Divergence detection: a run whose loss or iterate goes NaN/inf, whose loss explodes, or whose
optimisation is dead is stopped and stored as failed with the iteration, the reason and the
trace up to there.

:class:`DivergenceGuard` is the **first** callback of a run (benchmark/runner.py), so the
metric callbacks (peak, EMA, stopping rules, trace) never see a non-finite iterate: the run
stops at the iteration where it happened and the trace holds the iterations before it. The
rules (``run.divergence``, ``DivergenceSettings`` in benchmark/config.py):

- **non-finite** (always, every stage): the loss, the iterate ``x`` or a named iterate holds
  NaN or ±inf;
- **explosion** (reconstruction stage): the loss stays above ``factor`` × its value at the
  first reconstruction iteration for ``patience`` consecutive iterations (default 10 × for
  100 iterations). A DIP loss starts near its largest value (random network) and falls;
  short spikes of an unstable but recovering run (measured: lr 1 with a linear output,
  77 × for one iteration, then back down) do not count. ``factor: null`` turns the rule off
  for a run; a method whose returned loss grows by design (a penalty weight that increases,
  an augmented Lagrangian) sets the class attribute ``loss_may_grow = True`` and the rule
  skips it;
- **stall** (reconstruction stage, ``stall: true``; skipped for a method that sets
  ``loss_may_settle = True``: one that can converge exactly, e.g. L-BFGS on subspace DIP's
  k coefficients): the loss does not change at all for
  ``patience`` consecutive iterations: the gradients vanished. Measured: vanilla DIP with a
  sigmoid output at lr 1e3 saturates after one step and its loss never moves again (it
  used to be stored as finished, 12 dB below the noisy input). No healthy run of the stored
  suites repeats a loss value even twice.

**At the end of the run** (``on_fit_end``, after every other callback, so the stored trace
holds the last iteration) the guard judges what it has seen so far: a run shorter than
``patience`` (measured: 60 iterations of lr 1e3 with a linear output, stored as finished at
−100 dB final PSNR), or one that explodes or stalls in its last ``patience`` iterations,
never reaches the count above. Its trailing streak of exploded (or unchanged) losses counts from
``min(patience, END_MIN_ITERATIONS)`` = 10 iterations: the final iterate is what the run
reports, and no later iteration can show a recovery. Shorter streaks (a one-iteration spike,
the 5-iteration runs of the contract tests, any run of at most 10 reconstruction
iterations) are not judged; ``factor: null``, ``loss_may_grow`` and ``stall: false`` apply
as above. docs/conventions.md §15.
"""
from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import Callback

END_MIN_ITERATIONS = 10  # the end-of-run judgement needs a trailing streak this long (or ``patience``, if shorter)


class Diverged(RuntimeError):
    """A run diverged at ``step`` (iteration number, docs/conventions.md §2) for ``reason``."""

    def __init__(self, step: int, stage: str, reason: str):
        super().__init__(f"diverged at iteration {step} ({stage} stage): {reason}")
        self.step, self.stage, self.reason = step, stage, reason


def _nonfinite(t) -> bool:
    return isinstance(t, torch.Tensor) and t.numel() > 0 and not bool(torch.isfinite(t.detach()).all())


class DivergenceGuard(Callback):
    def __init__(self, factor: float | None = 10.0, patience: int = 100, stall: bool = True):
        self.factor, self.patience, self.stall = factor, patience, stall
        self.initial: float | None = None
        self.previous: float | None = None
        self.above = self.unchanged = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step, stage = pl_module.iteration, pl_module.stage.name
        if not isinstance(outputs, dict):
            return  # the trace callback reports a malformed return
        loss = outputs.get("loss")
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else (float(loss) if loss is not None else None)
        if value is not None and not math.isfinite(value):
            raise Diverged(step, stage, f"the loss is {value}")
        if _nonfinite(outputs.get("x")):
            raise Diverged(step, stage, "the iterate x holds NaN or inf values")
        for name, it in (outputs.get("iterates") or {}).items():
            if _nonfinite(it):
                raise Diverged(step, stage, f"the named iterate {name!r} holds NaN or inf values")
        if value is None or not pl_module.reconstructing:
            return
        if self.initial is None:
            self.initial = self.previous = value
            return
        explodes = self.factor is not None and not getattr(pl_module, "loss_may_grow", False) \
            and value > self.factor * abs(self.initial)
        self.above = self.above + 1 if explodes else 0
        settles = getattr(pl_module, "loss_may_settle", False)  # a method that converges exactly (L-BFGS in k dims)
        self.unchanged = self.unchanged + 1 if self.stall and not settles and value == self.previous else 0
        self.previous = value
        if self.above >= self.patience:
            raise Diverged(step, stage, f"the loss stayed above {self.factor:g} × its initial value {self.initial:.4g} "
                                        f"for {self.patience} consecutive iterations (now {value:.4g}; "
                                        "run.divergence.factor and .patience set this rule)")
        if self.unchanged >= self.patience:
            raise Diverged(step, stage, f"the loss has not changed for {self.patience} consecutive iterations "
                                        f"(stuck at {value:.4g}: vanished gradients, e.g. a saturated sigmoid output; "
                                        "run.divergence.stall and .patience set this rule)")

    def on_fit_end(self, trainer, pl_module):
        """The end of the run: judge the trailing streaks (module doc); raises :class:`Diverged`."""
        need = min(self.patience, END_MIN_ITERATIONS)
        step, stage = pl_module.iteration, pl_module.stage.name
        if self.above >= need:
            raise Diverged(step, stage, f"the loss stayed above {self.factor:g} × its initial value {self.initial:.4g} "
                                        f"in the last {self.above} iterations, up to the end of the run (now "
                                        f"{self.previous:.4g}; at the end of a run a streak of {need} counts; "
                                        "run.divergence.factor and .patience set this rule)")
        if self.unchanged >= need:
            raise Diverged(step, stage, f"the loss did not change in the last {self.unchanged} iterations, up to the end "
                                        f"of the run (stuck at {self.previous:.4g}: vanished gradients, e.g. a saturated "
                                        f"sigmoid output; at the end of a run a streak of {need} counts; "
                                        "run.divergence.stall and .patience set this rule)")
