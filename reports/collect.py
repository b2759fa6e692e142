"""Read stored runs into tables (the run store is the only input of reports)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from benchmark.store import RunStore, inspect_folder
from core import keys
from core.results import MethodKind

AGGREGATED = {"dataset.image", "run.seed"}  # averaged over in summary tables


def _flatten(prefix: str, d: dict, out: dict) -> None:
    for key, value in d.items():
        if isinstance(value, dict):
            _flatten(f"{prefix}{key}.", value, out)
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value


def load_runs(results: Path, suite: str | None = None) -> pd.DataFrame:
    """One row per stored run: suite, run_id, flattened config (``method.lr`` …) and metrics.

    Damaged run folders (benchmark/store.py: unreadable ``metrics.json`` or ``config.json``, a
    file whose checksum differs) are left out, each named on stderr with what is wrong, and
    listed in ``.attrs["damaged"]`` as ``(suite, path, problem)``; the other runs load as usual.
    Non-finite numbers are stored as null and come back as NaN."""
    rows, damaged = [], []
    store = RunStore(results)
    for run_dir in store.runs(suite):
        state = inspect_folder(run_dir)
        if not state.state.stored:
            damaged.append((run_dir.parent.name, str(run_dir), state.problem))
            print(f"warning: skipping damaged run folder {run_dir}: {state.problem} "
                  "(`python -m benchmark run` reruns it)", file=sys.stderr)
            continue
        config, metrics = state.config, state.metrics
        row = {"suite": config.get("suite", run_dir.parent.name), "run_id": config["run_id"], "path": str(run_dir)}
        for section in ("method", "dataset", "run"):
            _flatten(f"{section}.", config.get(section) or {}, row)
        for key, value in metrics.items():
            if key in ("traceback", "files"):
                continue
            if isinstance(value, dict):
                _flatten(f"{key}.", value, row)  # code.git_commit, versions.torch, failure.step, …
            else:
                row[key] = value
        row["suite_experiment"] = ",".join(suite_experiments(store, row["suite"]))
        row["paper_method"] = paper_method_name(row)
        rows.append(row)
    runs = add_gaps(pd.DataFrame(rows))
    runs.attrs["damaged"] = damaged
    return runs


def add_gaps(runs: pd.DataFrame) -> pd.DataFrame:
    """``es.<rule>.gap_db`` = oracle peak PSNR − the rule's pick PSNR, for every stopping rule
    among the columns (NaN where either is missing)."""
    if keys.PEAK_PSNR not in runs:
        return runs
    for rule in keys.es_rules(runs.columns):
        pick = keys.es(rule, "psnr")
        if pick in runs:
            runs[keys.es(rule, "gap_db")] = pd.to_numeric(runs[keys.PEAK_PSNR], errors="coerce") - pd.to_numeric(
                runs[pick], errors="coerce")
    return runs


def paper_method_name(row: dict) -> str:
    """The name a run has in the papers' tables (Survey B Table 2 rows)."""
    name = row["method.name"]
    if name == "tv":
        return "tv_baseline"
    if any(k.startswith("method.warm_start.") and row[k] is not None for k in row) and name != "subspace_dip":
        return f"{name}_warm_start"  # pre-trained start (Survey B Fig. 9), not a Table 2 row
    if name == "vanilla_dip" and row.get("method.input") == "fbp":  # Table 2's FBP-input row (older runs)
        return "vanilla_dip_fbp_input"
    return name


def varying_keys(runs: pd.DataFrame, prefix: str) -> list[str]:
    """Config keys under ``prefix`` that take more than one value among DIP runs."""
    dip = runs[runs["kind"] == MethodKind.DIP] if "kind" in runs else runs
    keys = [c for c in runs.columns if c.startswith(prefix) and c not in AGGREGATED and not c.endswith(".name")
            and not c.startswith("method.preset.")]  # where a value came from, not a setting
    return [k for k in keys if dip[k].astype(str).nunique() > 1]


def add_labels(runs: pd.DataFrame) -> pd.DataFrame:
    """``method_label`` (method + the method settings that vary between that method's own runs) and ``setting`` (the
    dataset + the dataset settings that vary between its runs, images and seeds excluded)."""
    runs = runs.copy()
    runs["method_label"] = runs["method.name"]
    for _, group in runs[runs["kind"] == MethodKind.DIP].groupby("method.name"):  # settings that vary between its own runs
        mkeys = varying_keys(group, "method.")
        runs.loc[group.index, "method_label"] = group.apply(
            lambda r: r["method.name"] + (f" ({', '.join(parts)})" if (parts := [
                f"{k.removeprefix('method.')}={r[k]}" for k in mkeys if pd.notna(r[k])]) else ""), axis=1)
    image = runs["dataset.image"] if "dataset.image" in runs else pd.Series("–", index=runs.index)
    runs["image"] = image.fillna("–").astype(str)  # datasets without an image choice (walnut) show "–"
    runs["setting"] = runs["dataset.name"]
    for name, group in runs.groupby("dataset.name"):
        dkeys = varying_keys(group, "dataset.")
        runs.loc[group.index, "setting"] = group.apply(
            lambda r: ", ".join([name] + [f"{k.removeprefix('dataset.')}={r[k]}" for k in dkeys if pd.notna(r[k])]), axis=1)
    return runs


def load_trace(run_path: str) -> pd.DataFrame:
    """A run's trace; empty (with a warning naming the file) if it is missing or unreadable."""
    path = Path(run_path) / "trace.parquet"
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - a damaged file must not stop the report
        print(f"warning: cannot read {path} ({type(exc).__name__}: {exc}); its curve is left out", file=sys.stderr)
        return pd.DataFrame()


def suite_experiments(store, suite: str) -> list[str]:
    """The experiment ids a suite declares (suite.json ``experiment``: one id or a list)."""
    experiment = store.suite_info(suite).get("experiment") or []
    return [experiment] if isinstance(experiment, str) else list(experiment)
