"""Stopping-rule leaderboard (issue 10): for every method × task in the stored runs and every
stopping rule they ran, the dB the rule's pick loses against the oracle peak (mean and worst
over runs, i.e. seeds, images and settings) and where it stops relative to the peak.

A run counts for a rule only if it configured the rule (``run.stopping.<rule>.*`` in its
config, or any ``es.<rule>.*`` metric). Per (method, task, rule):

- dB lost = ``peak_psnr − es.<rule>.psnr`` over the runs with a pick (a run without one adds
  nothing to the mean: no NaN averaging);
- before / at / after peak: how many picks have ``es.<rule>.step`` <, = or > ``peak_step``;
- never fired: runs whose stop condition never held within ``run.max_steps``
  (``es.<rule>.stop_step`` empty), including those without a pick; a rule that never fired
  still reports its best candidate at the end of the budget, which is what the dB columns use.

Rules: scoring/stopping.py and docs/conventions.md §8.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core import keys
from core.results import MethodKind, RunState
from scoring.stopping import STOPPING_RULES

GROUP = ["method", "task", "rule"]
TITLES = {"method": "Method", "task": "Task", "rule": "Rule", "runs": "Runs", "db_lost_mean": "dB lost (mean)",
          "db_lost_worst": "dB lost (worst)", "before": "Before peak", "at": "At peak", "after": "After peak",
          "never_fired": "Never fired"}


def _configured(runs: pd.DataFrame, rule: str) -> pd.Series:
    """Runs that ran ``rule``: a field of ``run.stopping.<rule>`` or an ``es.<rule>.*`` metric is set."""
    cols = [c for c in runs.columns if c.startswith(f"run.stopping.{rule}.") or c.startswith(f"es.{rule}.")]
    return runs[cols].notna().any(axis=1) if cols else pd.Series(False, index=runs.index)


def rule_outcomes(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (finished DIP run, rule it ran): method, task, suite, rule, pick step, stop
    step, peak step, dB lost and the pick's position relative to the peak."""
    done = runs
    if "status" in done:
        done = done[done["status"] == RunState.FINISHED]
    if "kind" in done:
        done = done[done["kind"] == MethodKind.DIP]
    if keys.PEAK_STEP not in done or keys.PEAK_PSNR not in done:
        return pd.DataFrame(columns=[*GROUP, "suite", "step", "stop_step", "peak_step", "db_lost", "position"])
    peak = pd.to_numeric(done[keys.PEAK_PSNR], errors="coerce")
    done = done[pd.to_numeric(done[keys.PEAK_STEP], errors="coerce").notna() & np.isfinite(peak)]  # no GT: no peak
    frames = []
    for rule in keys.es_rules(done.columns):
        sub = done[_configured(done, rule)]
        def number(what, sub=sub, rule=rule):
            col = keys.es(rule, what)
            return pd.to_numeric(sub[col], errors="coerce") if col in sub else pd.Series(np.nan, index=sub.index)

        frames.append(pd.DataFrame({
            "method": sub["method.name"], "task": sub["dataset.name"], "rule": rule, "suite": sub.get("suite"),
            "step": number("step"), "stop_step": number("stop_step"),
            "peak_step": pd.to_numeric(sub[keys.PEAK_STEP], errors="coerce"),
            "db_lost": pd.to_numeric(sub[keys.PEAK_PSNR], errors="coerce") - number("psnr")}))
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=[*GROUP, "suite", "step", "stop_step", "peak_step", "db_lost"])
    picked = long["step"].notna() & np.isfinite(long["db_lost"].astype(float))
    long.loc[~picked, "db_lost"] = np.nan
    long["position"] = np.select([~picked, long["step"] < long["peak_step"], long["step"] == long["peak_step"]],
                                 ["no pick", "before", "at"], default="after")
    return long


def _aggregate(long: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    positions = pd.crosstab([long[c] for c in by], long["position"]).reindex(columns=["before", "at", "after"],
                                                                              fill_value=0)
    stats = long.groupby(by).agg(runs=("rule", "size"), db_lost_mean=("db_lost", "mean"),
                                 db_lost_worst=("db_lost", "max"),
                                 never_fired=("stop_step", lambda s: int(s.isna().sum())))
    table = stats.join(positions).reset_index()
    table[["before", "at", "after"]] = table[["before", "at", "after"]].fillna(0).astype(int)
    cols = [*by, "runs", "db_lost_mean", "db_lost_worst", "before", "at", "after", "never_fired"]
    return table[cols].sort_values([*by[:-1], "db_lost_mean"], na_position="last").reset_index(drop=True)


def leaderboard(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, task, rule): runs, dB lost mean/worst, picks before/at/after the peak, never fired."""
    long = rule_outcomes(runs)
    if long.empty:
        return pd.DataFrame(columns=[*GROUP, *list(TITLES)[3:]])
    return _aggregate(long, GROUP)


def leaderboard_by_rule(runs: pd.DataFrame) -> pd.DataFrame:
    """The same over every method and task at once, one row per rule."""
    long = rule_outcomes(runs)
    return _aggregate(long, ["rule"]) if len(long) else pd.DataFrame(columns=["rule", *list(TITLES)[3:]])


def write_leaderboard(runs: pd.DataFrame, out: Path) -> list[Path]:
    """``leaderboard.md`` (both tables) and ``leaderboard.csv`` (per method × task × rule) in
    ``out``; nothing when no stored DIP run has a stopping rule."""
    table = leaderboard(runs)
    if table.empty:
        return []
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "leaderboard.csv", index=False)
    suites = ", ".join(f"`{s}`" for s in sorted(rule_outcomes(runs)["suite"].dropna().unique()))
    legend = [f"- `{r}`: {STOPPING_RULES[r].description} ({STOPPING_RULES[r].paper})" if r in STOPPING_RULES
              else f"- `{r}`" for r in dict.fromkeys(table["rule"])]
    md = ["# Stopping-rule leaderboard", "",
          f"Finished DIP runs of the suites {suites}. dB lost = oracle peak PSNR − the rule's pick (mean and "
          "worst over seeds, images and settings; runs without a pick are left out). Before / at / after: where "
          "the pick lies relative to the peak iteration (they add up to the runs with a pick). "
          "Never fired: runs in which the rule's stop condition never "
          "held within the iteration budget (its pick is then its best candidate at the end, if any). "
          "A negative dB lost means the pick beats the peak of the raw iterates (an averaged image).", "",
          *legend, "", "## Per method and task", "",
          table.rename(columns=TITLES).round(2).to_markdown(index=False), "",
          "## All methods and tasks", "",
          leaderboard_by_rule(runs).rename(columns=TITLES).round(2).to_markdown(index=False)]
    (out / "leaderboard.md").write_text("\n".join(md) + "\n")
    return [out / "leaderboard.md", out / "leaderboard.csv"]
