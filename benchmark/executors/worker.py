"""What every executor runs for one run, in whatever process it lands in (the orchestrator's
own for ``local``, a fresh Ray worker, a SLURM array task).

:func:`run_one` takes the run's resolved config as a plain dict and resolves it again here
(a run is a pure function of its resolved config; a different run id means the code that
resolves configs differs between the two processes, and the run is refused). It then claims
the run in the store (benchmark/locks.py), checks again under the claim that it still needs
running (another invocation may have finished it meanwhile), executes it, and releases the
claim. It returns a small summary; everything else is in the store.
"""
from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback

from benchmark import plugins
from benchmark.config import resolve
from benchmark.locks import Claim, try_claim
from benchmark.quiet import quiet_lightning
from benchmark.runner import execute
from benchmark.store import LostClaim, RunStore
from core.results import Outcome, RunState

REDO_CHOICES = (RunState.FINISHED, RunState.FAILED)


def needs_run(state, redo: tuple[str, ...] | list[str], not_before: float) -> bool:
    """Whether a run in stored ``state`` (benchmark.store.StoredRun) must run: missing or damaged
    runs always; a finished / failed one only if its state is in ``redo`` and it was stored
    before ``not_before`` (the start of the invocation asking, so two ``--force`` invocations do
    not redo each other's fresh results)."""
    if state.state in (RunState.MISSING, RunState.DAMAGED):
        return True
    return state.state in redo and state.ended_at < not_before


class ClaimProgress(Callback):
    """Writes the iteration reached into the claim's progress file (at most every ``every_s``)."""

    def __init__(self, claim, total: int, every_s: float = 0.25):
        self.claim, self.total, self.every_s, self._last = claim, total, every_s, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.claim.report_progress(max(pl_module.iteration, 0), self.total)


def run_one(config: dict, suite: str, results: str, redo=(), not_before: float = float("inf"),
            executor: str = "local", extra_callbacks=(), plugin_files=()) -> Outcome:
    """Claim, execute and store one run; the outcome is finished, failed or skipped (with the
    reason: held by another process, or stored meanwhile). The plugins (installed ones and
    ``plugin_files``, i.e. ``--plugins``) are loaded first, as in the orchestrator."""
    quiet_lightning()
    plugins.load_all(plugin_files)
    run = resolve({k: config[k] for k in ("method", "dataset", "run")})
    expected = config.get("run_id", run.run_id)
    if run.run_id != expected:
        return Outcome(expected, RunState.FAILED, error=f"the config resolves to run id {run.run_id} in this process, "
                       f"not {expected}: the code here differs from the orchestrator's (install the same version)")
    store = RunStore(results)
    suite_dir = store.suite_dir(suite)
    if not needs_run(store.inspect(suite, run), redo, not_before):
        return Outcome(run.run_id, RunState.SKIPPED, reason="already stored by another invocation")
    claim = try_claim(suite_dir, run.run_id, executor)
    if not isinstance(claim, Claim):
        return Outcome(run.run_id, RunState.SKIPPED, reason=f"being run by {claim.describe()}")
    try:
        if not needs_run(store.inspect(suite, run), redo, not_before):
            return Outcome(run.run_id, RunState.SKIPPED, reason="already stored by another invocation")
        claim.report_progress(0, run.run.max_steps)
        progress = ClaimProgress(claim, run.run.max_steps)
        metrics = execute(run, suite, store, extra_callbacks=[progress, *extra_callbacks], claim=claim,
                          placement={"executor": executor})
    except LostClaim as exc:  # this process was frozen past its lease and another one took the run over
        return Outcome(run.run_id, RunState.SKIPPED, reason=str(exc))
    finally:
        claim.release()
    return Outcome(run.run_id, RunState(metrics["status"]), metrics=metrics)

