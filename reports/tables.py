"""Comparison tables in Survey B Table 2's layout: peak PSNR and its iteration,
early-stopped PSNR and its iteration, final PSNR (mean ± std over images and seeds)."""
from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = {
    "peak_psnr": "Peak PSNR",
    "peak_step": "Peak iter",
    "es_psnr": "ES PSNR",
    "es_step": "ES iter",
    "final_psnr": "Final PSNR",
    "final_ssim": "Final SSIM",
}


def _mean_std(values: pd.Series, digits: int = 2) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–"
    if len(v) == 1 or np.isclose(v.std(), 0):
        return f"{v.mean():.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def _median_int(values: pd.Series) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return "–" if v.empty else f"{int(round(v.median()))}"


def summary_table(runs: pd.DataFrame, by_image: bool = False) -> pd.DataFrame:
    """One row per (setting, method) — or per (setting, image, method) with
    ``by_image`` — PSNRs as mean ± std over the rest (seeds, images), iterations as medians."""
    done = runs[runs["status"] == "finished"]
    keys = ["setting", "image", "method_label"] if by_image else ["setting", "method_label"]
    rows = []
    for group_key, group in done.groupby(keys, sort=False):
        row = {"Setting": group_key[0], **({"Image": group_key[1]} if by_image else {}), "Method": group_key[-1]}
        for key, title in COLUMNS.items():
            if key not in group:
                continue
            row[title] = _median_int(group[key]) if key.endswith("_step") else _mean_std(group[key], 3 if "ssim" in key else 2)
        row["Runs"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def per_run_table(runs: pd.DataFrame) -> pd.DataFrame:
    cols = ["setting", "method_label", "image", "run.seed", "peak_psnr", "peak_step", "es_psnr", "es_step",
            "final_psnr", "degraded_psnr", "wall_time_s", "status"]
    present = [c for c in cols if c in runs]
    return runs[present].sort_values(present[:4]).round(2)


def paper_comparison(summary_runs: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Ours (mean over runs) next to the paper's numbers for the methods both have:
    per metric the paper value, ours, and ours − paper."""
    done = summary_runs[summary_runs["status"] == "finished"]
    ours = done.groupby("paper_method")[["peak_psnr", "peak_step", "es_psnr", "es_step", "final_psnr"]].agg(
        lambda v: pd.to_numeric(v, errors="coerce").mean())
    ours = ours.rename(columns={"peak_step": "peak_iter", "es_step": "es_iter"})
    merged = paper.set_index("method").join(ours, rsuffix="_ours", how="inner")
    columns = []
    for key in ("peak_psnr", "peak_iter", "es_psnr", "es_iter", "final_psnr"):
        if key.endswith("psnr"):
            merged[f"{key}_diff"] = merged[f"{key}_ours"] - merged[key]
            columns += [key, f"{key}_ours", f"{key}_diff"]
        else:
            columns += [key, f"{key}_ours"]
    return merged[columns].reset_index().round(2)
