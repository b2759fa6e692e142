"""One page per experiment id (issue 19): ``reports/out/experiments/<ID>.md`` gathers every reported
suite that declares the id (its summary table, links to its figures), the stopping-rule leaderboard
of those suites' runs, and the papers' numbers next to ours.

The papers' numbers are ``reports/paper/stated_numbers.csv`` (one row per number a survey states
about an experiment, with where it says so: paper, section, figure or table; the text copies of the
papers carry no page numbers) and Survey B's Table 2 (``PAPER_TABLES``, read as one stated number
per cell). Each row names a registered *quantity*, a function of the runs of one
method on one task that computes "ours" from the stored metrics (a trace only where a metric is
missing); a suite whose setting differs from the paper's gets a setting label derived from its
runs' config and data provenance. Nothing is recomputed by training and nothing is typed by hand.

A page is built by registered parts, in registration order, like a suite page's sections
(reports/sections.py): a new comparison is one ``@register_quantity`` function plus its CSV rows,
a new block of the page one ``@register_experiment_part`` function.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from core import keys
from core.registry import Registry
from core.results import MethodKind, RunState
from reports.claims import NOT_EVIDENCE
from reports.collect import load_trace
from reports.leaderboard import TITLES, leaderboard
from reports.sections import PAPER_TABLES, SuitePage
from reports.tables import scored

STATED_NUMBERS = Path(__file__).parent / "paper" / "stated_numbers.csv"
TABLE_QUANTITIES = {"peak_psnr": ("peak_psnr", "dB"), "peak_iter": ("peak_iteration", "iteration"),
                    "es_psnr": ("es_psnr", "dB"), "es_iter": ("es_iteration", "iteration"),
                    "final_psnr": ("final_psnr", "dB")}  # Table 2 column -> (quantity, unit)
TEXT_COLUMNS = ("experiment", "quantity", "method", "task", "rule", "unit", "paper_data", "paper_device", "where", "note")
NOT_MEASURED = "not measured"

PARTS = Registry("experiment page part")
QUANTITIES = Registry("stated quantity")


@dataclass
class ExperimentPage:
    """What the parts of one experiment's page share, and what they produce."""

    experiment: str
    suites: list[SuitePage]  # the reported suites that declare this experiment id
    folder: Path  # reports/out/experiments/
    stated: pd.DataFrame  # the papers' numbers about this experiment (stated_numbers() rows)
    md: list[str] = field(default_factory=list)

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([s.runs for s in self.suites], ignore_index=True)

    @property
    def path(self) -> Path:
        return self.folder / f"{self.experiment}.md"


def register_experiment_part(name: str, description: str = "") -> Callable:
    return PARTS.register(name, None, description)


def register_quantity(name: str, description: str, paper: str = "") -> Callable:
    """``target(runs, row) -> float | None``: ours from the finished, scored runs of one suite on the
    row's task (None: not computable from them)."""
    return QUANTITIES.register(name, None, description, paper)


# -- the papers' numbers ----------------------------------------------------------------------------
def stated_numbers(path: Path = STATED_NUMBERS) -> pd.DataFrame:
    """Every number the papers state about an experiment: ``stated_numbers.csv`` and the cells of
    Survey B's Table 2 (its TV baseline is in the CSV, with the caption-vs-text discrepancy)."""
    rows = pd.read_csv(path)
    for column in TEXT_COLUMNS:
        rows[column] = rows[column].fillna("").astype(str)
    unknown = sorted(set(rows["quantity"]) - set(QUANTITIES))
    if unknown:
        raise ValueError(f"{path}: quantities {unknown} have no registered function (reports/experiments.py)")
    return pd.concat([rows, _survey_b_table2_rows()], ignore_index=True)


def _survey_b_table2_rows() -> pd.DataFrame:
    """Survey B Table 2 as stated numbers, in its setting (real walnut data, 501², 10 000 iterations, GPU; §6.1–6.3)."""
    table = pd.read_csv(PAPER_TABLES["B-T2"])
    rows = [{"experiment": "B-T2", "quantity": quantity, "method": r["method"], "task": "walnut", "rule": "",
             "paper_value": r[column], "unit": unit, "paper_size": 501, "paper_steps": 10000, "paper_data": "real",
             "paper_device": "gpu", "where": "Survey B, Table 2", "note": ""}
            for _, r in table.iterrows() if r["method"] != "tv_baseline"
            for column, (quantity, unit) in TABLE_QUANTITIES.items() if pd.notna(r[column])]
    return pd.DataFrame(rows)


# -- the quantities: ours from the stored runs ------------------------------------------------------
def _number(runs: pd.DataFrame, key: str) -> pd.Series:
    return pd.to_numeric(runs[key], errors="coerce").dropna() if key in runs else pd.Series(dtype=float)


def _method(runs: pd.DataFrame, row) -> pd.DataFrame:
    return runs[runs["paper_method"] == row["method"]]


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def _median(values: pd.Series) -> float | None:
    return float(values.median()) if len(values) else None


def _rule(row) -> str:
    return row["rule"] or "running_variance"  # Survey B Algorithm 2, the papers' ES unless a row names another


@register_quantity("peak_psnr", "mean oracle peak PSNR", "Survey B Table 2")
def _peak_psnr(runs, row):
    return _mean(_number(_method(runs, row), keys.PEAK_PSNR))


@register_quantity("peak_iteration", "median iteration of the PSNR peak", "Survey A Fig. 1; Survey B Table 2")
def _peak_iteration(runs, row):
    return _median(_number(_method(runs, row), keys.PEAK_STEP))


@register_quantity("es_psnr", "mean PSNR of the stopping rule's pick", "Survey B Table 2")
def _es_psnr(runs, row):
    return _mean(_number(_method(runs, row), keys.es(_rule(row), "psnr")))


@register_quantity("es_iteration", "median iteration of the stopping rule's pick", "Survey B Table 2")
def _es_iteration(runs, row):
    return _median(_number(_method(runs, row), keys.es(_rule(row), "step")))


@register_quantity("stop_iteration", "median iteration at which the stopping rule stops", "Survey A Fig. 6")
def _stop_iteration(runs, row):
    return _median(_number(_method(runs, row), keys.es(_rule(row), "stop_step")))


@register_quantity("psnr", "mean PSNR of a baseline's reconstruction (its one image is its final)",
                   "Survey B Table 2 caption")
@register_quantity("final_psnr", "mean PSNR of the last iterate", "Survey B Table 2")
def _final_psnr(runs, row):
    return _mean(_number(_method(runs, row), keys.FINAL_PSNR))


@register_quantity("first_psnr", "mean PSNR of the first iterate (the first trace row where the metric is missing)",
                   "Survey B Fig. 9")
def _first_psnr(runs, row):
    method = _method(runs, row)
    stored = _number(method, keys.FIRST_PSNR)
    if len(stored) == len(method):
        return _mean(stored)
    firsts = [_first_trace_psnr(path) for path in method["path"]] if "path" in method else []
    return _mean(pd.Series([v for v in firsts if v is not None], dtype=float))


def _first_trace_psnr(run_path: str) -> float | None:
    trace = load_trace(run_path)
    if "psnr" not in trace or "step" not in trace:
        return None
    psnr = trace.loc[trace["step"] > 0, "psnr"].dropna()  # step ≤ 0: preparatory stages
    return float(psnr.iloc[0]) if len(psnr) else None


@register_quantity("peak_psnr_below_vanilla", "vanilla DIP's mean peak PSNR − the method's (same suite and task)",
                   "Survey B Fig. 9")
def _peak_below_vanilla(runs, row):
    vanilla = _peak_psnr(runs, {**row, "method": "vanilla_dip"})
    method = _peak_psnr(runs, row)
    return None if vanilla is None or method is None else vanilla - method


# -- our setting vs the paper's ---------------------------------------------------------------------
def _values(runs: pd.DataFrame, key: str) -> list:
    return sorted(pd.to_numeric(runs[key], errors="coerce").dropna().astype(int).unique()) if key in runs else []


def setting_label(runs: pd.DataFrame, row) -> str:
    """Where the suite's runs differ from the paper's setting (empty: no difference we can tell):
    simulated vs real measurements (the data's provenance), image size, iterations (DIP runs), CPU vs
    GPU (the device the run recorded, ``placement.device``; older runs: only where the config says ``cpu``)."""
    parts = []
    provenance = " ".join(runs["provenance"].dropna().astype(str)).lower() if "provenance" in runs else ""
    if row["paper_data"] == "real" and "simulated" in provenance:
        what = "slice" if "slice" in provenance else "image"
        parts.append(f"simulated measurement on a real {what}" if "real" in provenance else "simulated data")
    crop = _values(runs, "dataset.crop") or _values(runs, "dataset.image_size")
    if crop and pd.notna(row["paper_size"]) and crop != [int(row["paper_size"])]:
        parts.append(f"{'/'.join(f'{c}²' for c in crop)} vs {int(row['paper_size'])}²")
    steps = _values(runs[runs["kind"] == MethodKind.DIP] if "kind" in runs else runs, "run.max_steps")  # baselines: none
    if steps and pd.notna(row["paper_steps"]) and steps != [int(row["paper_steps"])]:
        parts.append(f"{'/'.join(map(str, steps))} iterations vs {int(row['paper_steps']):,}".replace(",", " "))
    devices = {*runs.get("run.accelerator", pd.Series(dtype=str)).dropna(),
               *runs.get("precision.device", pd.Series(dtype=str)).dropna(),
               *runs.get("placement.device", pd.Series(dtype=str)).dropna()}  # benchmark.runner.run_device
    if row["paper_device"] == "gpu" and "cpu" in devices:
        parts.append("CPU twin")
    return "; ".join(parts)


def suites_to_run(experiment: str, task: str) -> list[str]:
    """The suite files (benchmark/suites/) that declare ``experiment`` and run ``task``, CPU twins first."""
    found = [name for name, (experiments, tasks) in _suite_files().items() if experiment in experiments and task in tasks]
    return sorted(found, key=lambda n: (not n.endswith("_quick"), n))


@functools.cache
def _suite_files() -> dict[str, tuple[set, set]]:
    """Per suite file: the experiment ids it declares and the datasets it runs (read once)."""
    from benchmark.suites import available_suites

    found = {}
    for name, path in available_suites().items():
        raw = yaml.safe_load(path.read_text()) or {}
        declared = raw.get("experiment") or []
        found[name] = ({declared} if isinstance(declared, str) else set(declared),
                       {d if isinstance(d, str) else d.get("name") for d in raw.get("datasets") or []})
    return found


def paper_vs_ours(page: ExperimentPage) -> pd.DataFrame:
    """One row per (stated number, reported suite that measures it): quantity, method, task, paper,
    ours, ours − paper, our setting where it differs, where the paper says it; a stated number no
    suite measures gets one row whose 'ours' says which suite to run."""
    def measure(runs: pd.DataFrame, row):
        runs = scored(runs[(runs["status"] == RunState.FINISHED) & (runs["dataset.name"] == row["task"])])
        return (QUANTITIES[row["quantity"]].target(runs, row) if len(runs) else None), runs

    rows = []
    for _, row in page.stated.iterrows():
        found = []
        for suite in page.suites:
            ours, runs = measure(suite.runs, row)
            if ours is not None:
                oracle = measure(suite.oracle_runs, row)[0] if len(suite.oracle_runs) else None
                found.append((suite.suite, ours, oracle, setting_label(runs[runs["paper_method"] == row["method"]], row)))
        if not found:
            where = suites_to_run(page.experiment, row["task"])
            found = [("—", f"{NOT_MEASURED}: run suite {' or '.join(where)}" if where
                      else f"{NOT_MEASURED}: no suite declares {page.experiment} on {row['task']}", None, "—")]
        for suite, ours, oracle, label in found:
            measured = not isinstance(ours, str)
            rows.append({"quantity": row["quantity"] + (f" [{row['rule']}]" if row["rule"] else ""),
                         "method": row["method"], "task": row["task"], "unit": row["unit"],
                         "paper": row["paper_value"], "ours": ours,
                         "difference": ours - row["paper_value"] if measured else None, "ours (oracle)": oracle,
                         "suite": suite, "setting": label or "as in the paper", "where": row["where"], "note": row["note"]})
    table = pd.DataFrame(rows, columns=["quantity", "method", "task", "unit", "paper", "ours", "difference",
                                        "ours (oracle)", "suite", "setting", "where", "note"])
    return table if table["ours (oracle)"].notna().any() else table.drop(columns="ours (oracle)")


# -- the parts of a page, in page order -------------------------------------------------------------
def _link(target: Path, page: ExperimentPage) -> str:
    return os.path.relpath(target, page.folder)


@register_experiment_part("header", "experiment id and the suites that declare it")
def _header(page: ExperimentPage) -> None:
    names = ", ".join(f"[`{s.suite}`]({_link(s.folder / 'table.md', page)})" for s in page.suites)
    page.md += [f"# Experiment {page.experiment}", "",
                f"Suites that declare it: {names}. Every number below comes from their stored runs; the "
                "papers' numbers are reports/paper/stated_numbers.csv and Survey B's Table 2.", ""]


@register_experiment_part("suites", "each suite's summary table and figure links")
def _suites(page: ExperimentPage) -> None:
    for suite in page.suites:
        table = suite.summary
        page.md += [f"## Suite `{suite.suite}`", "", f"Data: {suite.provenance}.", "",
                    table.to_markdown(index=False) if len(table) else "(no scored runs)", ""]
        if suite.figures:
            page.md += ["Figures: " + ", ".join(f"[{f.stem}]({_link(f, page)})" for f in suite.figures), ""]


@register_experiment_part("leaderboard", "the stopping-rule leaderboard of this experiment's runs")
def _leaderboard(page: ExperimentPage) -> None:
    table = leaderboard(page.runs)
    if len(table):
        page.md += ["## Stopping rules on these runs", "",
                    "The leaderboard (reports/leaderboard.py) restricted to this experiment's suites: dB lost = oracle "
                    "peak − the rule's pick.", "", table.rename(columns=TITLES).round(2).to_markdown(index=False), ""]


@register_experiment_part("paper_vs_ours", "every number the papers state about the experiment, next to ours")
def _paper_vs_ours(page: ExperimentPage) -> None:
    table = paper_vs_ours(page)
    if not len(table):
        return
    page.md += ["## Paper vs ours", "",
                "Ours per suite (PSNR: mean over runs; iterations: median); difference = ours − paper. 'Setting' "
                "says where our runs differ from the paper's (from their config and data provenance), so a "
                "difference measures the setting as much as the code. Ours = each method at its transferred setting "
                "(its family preset); 'ours (oracle)', where a suite also swept the tunables on this case (suite key "
                "`oracle:`), = each method at its best swept setting, as the surveys tuned.", "",
                _formatted(table).to_markdown(index=False, disable_numparse=True), ""]


def _formatted(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers as text in their unit's precision (iterations whole, dB to 0.01, differences signed);
    "—" where there is none (a stated number nobody measured)."""
    table = table.copy()
    for column, sign in (("paper", ""), ("ours", ""), ("difference", "+"), ("ours (oracle)", "")):
        if column not in table:
            continue
        table[column] = [v if isinstance(v, str) else "—" if pd.isna(v) else
                         format(v, f"{sign}.{0 if unit == 'iteration' else 2}f")
                         for v, unit in zip(table[column], table["unit"])]
    return table


def render_experiment(page: ExperimentPage) -> ExperimentPage:
    for entry in PARTS.values():
        entry.target(page)
    return page


def write_experiment_pages(suite_pages: list[SuitePage], out: Path) -> list[Path]:
    """``out/experiments/<ID>.md`` for every experiment id of the reported suites (not calibration,
    regression or demo suites: NOT_EVIDENCE), from the suite pages already rendered."""
    stated = stated_numbers()
    ids = sorted({e for s in suite_pages for e in s.experiments} - NOT_EVIDENCE)
    written = []
    for experiment in ids:
        suites = [s for s in suite_pages if experiment in s.experiments and not s.experiments & NOT_EVIDENCE]
        if not suites:
            continue
        page = render_experiment(ExperimentPage(experiment, suites, out / "experiments",
                                                stated[stated["experiment"] == experiment]))
        page.folder.mkdir(parents=True, exist_ok=True)
        page.path.write_text("\n".join(page.md) + "\n")
        written.append(page.path)
    return written
