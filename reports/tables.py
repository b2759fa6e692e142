"""Comparison tables in Survey B Table 2's layout: peak PSNR and its iteration,
early-stopped PSNR and its iteration, final PSNR (mean ± std over images and seeds).

Runs without a ground truth (docs/conventions.md §11) have no PSNR: the PSNR tables leave
them out, and :func:`no_ground_truth_table` shows what they have (each stopping rule's pick
and stop iteration, the final data residual ‖Ax − y‖ and loss)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core import keys
from core.results import RunState


def has_ground_truth(runs: pd.DataFrame) -> pd.Series:
    """Per run: scored against a ground truth? (Runs stored before the key existed had one.)"""
    if keys.HAS_GT not in runs:
        return pd.Series(True, index=runs.index)
    return runs[keys.HAS_GT].map(lambda v: v is not False and v != 0).astype(bool)


def scored(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that have PSNRs (with a ground truth)."""
    return runs[has_ground_truth(runs)]


def primary_rule(runs: pd.DataFrame) -> str | None:
    """The stopping rule shown as "ES": Survey B's Algorithm 2 when present, else the first."""
    rules = keys.es_rules(runs.columns)
    return "running_variance" if "running_variance" in rules else (rules[0] if rules else None)


def metric_columns(runs: pd.DataFrame) -> dict[str, str]:
    """Metric key → table title: peak, each stopping rule's pick (one rule: "ES"), final."""
    columns = {keys.PEAK_PSNR: "Peak PSNR", keys.PEAK_STEP: "Peak iter"}
    rules = keys.es_rules(runs.columns)
    for rule in rules:
        tag = "ES" if len(rules) == 1 else f"ES[{rule}]"
        columns.update({keys.es(rule, "psnr"): f"{tag} PSNR", keys.es(rule, "step"): f"{tag} iter"})
    columns.update({keys.FINAL_PSNR: "Final PSNR", keys.FINAL_SSIM: "Final SSIM"})
    return columns


def _mean_std(values: pd.Series, digits: int = 2, spec: str = "f", std_spec: str | None = None) -> str:
    """Mean ± std of the numeric values ("–" if none; the mean alone if they agree)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–"
    mean, std = format(v.mean(), f".{digits}{spec}"), None
    if len(v) > 1 and not np.isclose(v.std(), 0):
        std = format(v.std(), std_spec or f".{digits}{spec}")
    return mean if std is None else f"{mean} ± {std}"


def _median_int(values: pd.Series) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return "–" if v.empty else f"{int(round(v.median()))}"


def summary_table(runs: pd.DataFrame, by_image: bool = False) -> pd.DataFrame:
    """One row per (setting, method) — or per (setting, image, method) with
    ``by_image`` — PSNRs as mean ± std over the rest (seeds, images), iterations as medians.
    Runs without a ground truth are left out (see :func:`no_ground_truth_table`)."""
    done = scored(runs[runs["status"] == RunState.FINISHED])
    keys = ["setting", "image", "method_label"] if by_image else ["setting", "method_label"]
    rows = []
    for group_key, group in done.groupby(keys, sort=False):
        row = {"Setting": group_key[0], **({"Image": group_key[1]} if by_image else {}), "Method": group_key[-1]}
        for key, title in metric_columns(done).items():
            if key not in group:
                continue
            is_step = key.endswith("_step") or key.endswith(".step")
            row[title] = _median_int(group[key]) if is_step else _mean_std(group[key], 3 if "ssim" in key else 2)
        row["Runs"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def per_run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with a ground truth (PSNRs); see :func:`no_ground_truth_per_run` for the others."""
    runs = scored(runs)
    es_cols = [k for rule in keys.es_rules(runs.columns) for k in (keys.es(rule, "psnr"), keys.es(rule, "step"))]
    cols = ["setting", "method_label", "image", "run.seed", keys.PEAK_PSNR, keys.PEAK_STEP, *es_cols, keys.FINAL_PSNR,
            keys.DEGRADED_PSNR, "wall_time_s", "status"]
    present = [c for c in cols if c in runs]
    return runs[present].sort_values(present[:4]).round(2)


def _sig(values: pd.Series) -> str:
    """Mean ± std to 4 significant digits (residuals, losses: any scale)."""
    return _mean_std(values, 4, "g", std_spec=".2g")


def _no_gt_columns(runs: pd.DataFrame) -> dict[str, str]:
    rules = keys.es_rules(runs.columns)
    columns = {}
    for rule in rules:
        tag = "ES" if len(rules) == 1 else f"ES[{rule}]"
        columns.update({keys.es(rule, "step"): f"{tag} iter", keys.es(rule, "stop_step"): f"{tag} stop",
                        keys.es(rule, "data_residual"): f"{tag} ‖Ax−y‖"})
    columns.update({keys.FINAL_STEP: "Final iter", keys.FINAL_RESIDUAL: "Final ‖Ax−y‖", keys.FINAL_LOSS: "Final loss"})
    return {k: v for k, v in columns.items() if k in runs}


def no_ground_truth_table(runs: pd.DataFrame, by_image: bool = False) -> pd.DataFrame:
    """Finished runs without a ground truth, one row per (setting, method) — or per
    (setting, image, method): each stopping rule's pick and stop iterations (medians), the
    data residual ‖Ax − y‖ of its pick and of the final iterate and the final loss (mean ± std)."""
    done = runs[(runs["status"] == RunState.FINISHED) & ~has_ground_truth(runs)]
    group_keys = ["setting", "image", "method_label"] if by_image else ["setting", "method_label"]
    rows = []
    for group_key, group in done.groupby(group_keys, sort=False):
        row = {"Setting": group_key[0], **({"Image": group_key[1]} if by_image else {}), "Method": group_key[-1]}
        for key, title in _no_gt_columns(done).items():
            is_step = key.endswith("_step") or key.endswith(".step")
            row[title] = _median_int(group[key]) if is_step else _sig(group[key])
        row["Runs"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def no_ground_truth_per_run(runs: pd.DataFrame) -> pd.DataFrame:
    done = runs[~has_ground_truth(runs)]
    cols = ["setting", "method_label", "image", "run.seed", *_no_gt_columns(done), "wall_time_s", "status"]
    present = [c for c in cols if c in done]
    table = done[present].sort_values(present[:4]).astype(object)
    for column in present:
        if column not in ("setting", "method_label", "image", "status"):
            table[column] = table[column].map(lambda v, c=column: _cell(c, v))
    return table


def _cell(key: str, value) -> str:
    """A number as shown in a table: "–" when absent (a baseline has no stopping rule),
    iterations as integers, other numbers to 4 significant digits."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if key.endswith("step") or key == "run.seed":
        return str(int(value))
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)


def paper_comparison(summary_runs: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Ours (mean over runs) next to the paper's numbers for the methods both have:
    per metric the paper value, ours, and ours − paper. Our ES is Survey B's Algorithm 2
    (the ``running_variance`` rule), as in the paper."""
    done = scored(summary_runs[summary_runs["status"] == RunState.FINISHED])
    rule = primary_rule(done) or "running_variance"
    wanted = {keys.PEAK_PSNR: "peak_psnr", keys.PEAK_STEP: "peak_iter", keys.es(rule, "psnr"): "es_psnr",
              keys.es(rule, "step"): "es_iter", keys.FINAL_PSNR: "final_psnr"}
    present = [k for k in wanted if k in done]
    ours = done.groupby("paper_method")[present].agg(lambda v: pd.to_numeric(v, errors="coerce").mean())
    ours = ours.rename(columns=wanted).reindex(columns=list(wanted.values()))
    ours.columns = [f"{c}_ours" for c in ours.columns]
    merged = paper.set_index("method").join(ours, how="inner")
    columns = []
    for key in ("peak_psnr", "peak_iter", "es_psnr", "es_iter", "final_psnr"):
        if key.endswith("psnr"):
            merged[f"{key}_diff"] = merged[f"{key}_ours"] - merged[key]
            columns += [key, f"{key}_ours", f"{key}_diff"]
        else:
            columns += [key, f"{key}_ours"]
    return merged[columns].reset_index().round(2)


def code_versions(runs: pd.DataFrame) -> pd.DataFrame:
    """Distinct code versions (git commit, dirty flag, method source hash) among the runs."""
    cols = [c for c in ("code.git_commit", "code.git_dirty", "code.method_source_sha256", "method.name") if c in runs]
    if not cols:
        return pd.DataFrame()
    versions = runs[cols].astype(str).drop_duplicates()
    by_method = versions.groupby("method.name").size() if "method.name" in versions else pd.Series(dtype=int)
    commits = versions["code.git_commit"].nunique() if "code.git_commit" in versions else 1
    return versions if (by_method > 1).any() or commits > 1 else pd.DataFrame()


def _oracle_sweeps(done: pd.DataFrame, oracle_ids: set[str]):
    """Per DIP method with oracle-tuning trials among the finished runs ``done``: its runs at the
    transferred setting, the settings' columns that the trials vary, every candidate run
    (transferred + trials) and their mean peak PSNR per setting."""
    trials = done[done["run_id"].isin(oracle_ids)]
    for method, method_trials in trials.groupby("method.name"):
        mine = done[(done["method.name"] == method) & ~done["run_id"].isin(oracle_ids)]
        candidates = pd.concat([mine, method_trials])
        tunable_cols = [c for c in candidates.columns if c.startswith("method.") and not c.startswith("method.preset.")
                        and candidates[c].astype(str).nunique() > 1]  # what the trials change (one trial is enough)
        if not len(mine) or not tunable_cols:
            continue
        yield method, mine, tunable_cols, candidates, candidates.groupby(tunable_cols, dropna=False)[keys.PEAK_PSNR].mean()


def oracle_comparison(runs: pd.DataFrame, oracle_ids: set[str]) -> pd.DataFrame:
    """Per DIP method with oracle-tuning trials (suite key ``oracle:``): the peak PSNR of its
    transferred setting (preset or default) beside the best setting found by sweeping its
    tunables on the evaluated measurements themselves (the surveys' protocol), mean over
    images and seeds, and how much of it the transferred setting keeps."""
    rows = []
    for method, mine, tunable_cols, _, by_value in _oracle_sweeps(scored(runs[runs["status"] == RunState.FINISHED]),
                                                                  oracle_ids):
        best_value, best = by_value.idxmax(), by_value.max()
        best_value = best_value if isinstance(best_value, tuple) else (best_value,)
        ours = mine[keys.PEAK_PSNR].mean()
        setting = lambda frame_values: ", ".join(f"{c.removeprefix('method.')}={v:g}" if isinstance(v, (int, float))  # noqa: E731
                                                 else f"{c.removeprefix('method.')}={v}" for c, v in frame_values)
        rows.append({"method": method,
                     "transferred setting": setting((c, mine[c].iloc[0]) for c in tunable_cols),
                     "peak (transferred)": f"{ours:.2f}",
                     "oracle setting": setting(zip(tunable_cols, best_value)),
                     "peak (oracle)": f"{best:.2f}",
                     "oracle − transferred [dB]": f"{best - ours:.2f}",
                     "settings tried": int(by_value.size)})
    return pd.DataFrame(rows)


def oracle_runs(runs: pd.DataFrame, oracle_ids: set[str]) -> pd.DataFrame:
    """The suite as the surveys' tuning would have run it: for every method with oracle trials,
    the runs of its best setting by mean peak PSNR (transferred or a trial); every other run as
    it is. Empty when the suite has no oracle trials."""
    if not oracle_ids or not runs["run_id"].isin(oracle_ids).any():
        return runs.iloc[0:0]
    keep = runs[~runs["run_id"].isin(oracle_ids)]
    for method, _, tunable_cols, candidates, by_value in _oracle_sweeps(scored(runs[runs["status"] == RunState.FINISHED]),
                                                                        oracle_ids):
        best = by_value.idxmax()
        best = best if isinstance(best, tuple) else (best,)
        chosen = candidates[(candidates[tunable_cols].astype(str) == [str(v) for v in best]).all(axis=1)]
        keep = pd.concat([keep[keep["method.name"] != method], chosen])
    return keep
