"""The parts of a suite's report page, each a registered function (issue 19: a new
experiment's table or figure is one registered function, not an edit of the builder).

A section gets the :class:`SuitePage` being built and appends markdown lines to ``page.md``
and the figures it wrote to ``page.figures``; sections run in registration order (the
built-in ones below first, then those of modules that register their own, e.g. a theory
experiment's figures). A section that has nothing to say for a suite adds nothing.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core import keys
from core.registry import Registry
from core.results import RunState
from reports.figures import loss_curves, mean_psnr_curves, psnr_curves, reconstruction_panel, residual_curves
from reports.tables import (
    code_versions,
    no_ground_truth_per_run,
    no_ground_truth_table,
    paper_comparison,
    per_run_table,
    summary_table,
)
from scoring.stopping import STOPPING_RULES

PAPER_TABLES = {"B-T2": Path(__file__).parent / "paper" / "survey_b_table2.csv"}  # numbers of Survey B Table 2

SECTIONS = Registry("report section")


@dataclass
class SuitePage:
    """What the sections of one suite's page share, and what they produce."""

    suite: str
    runs: pd.DataFrame  # the suite's runs, labelled, without oracle trials
    folder: Path  # reports/out/<suite>/
    info: dict  # suite.json
    oracle: pd.DataFrame  # transferred vs oracle comparison (empty without oracle trials)
    oracle_ids: set = field(default_factory=set)
    # the suite at each method's best swept setting (reports.tables.oracle_runs; empty without oracle trials)
    oracle_runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    damaged: list = field(default_factory=list)  # (path, problem) of this suite's damaged folders
    leaderboard: bool = False
    md: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (title, table): extra tables of the HTML page

    @property
    def provenance(self) -> str:
        return "; ".join(sorted(self.runs["provenance"].dropna().unique())) if "provenance" in self.runs else ""

    @property
    def title(self) -> str:
        return f"{self.suite}: {self.provenance}"

    @property
    def experiments(self) -> set[str]:
        return {e for ids in self.runs["suite_experiment"].dropna() for e in ids.split(",") if e}

    @property
    def summary(self) -> pd.DataFrame:
        return summary_table(self.runs)

    @property
    def no_ground_truth(self) -> pd.DataFrame:
        return no_ground_truth_table(self.runs)


def register_section(name: str, description: str = "") -> Callable:
    return SECTIONS.register(name, None, description)


def render_sections(page: SuitePage) -> SuitePage:
    for entry in SECTIONS.values():
        entry.target(page)
    return page


def es_legend(runs: pd.DataFrame) -> str:
    rules = keys.es_rules(runs.columns)
    if not rules:
        return ""
    names = [f"{'ES' if len(rules) == 1 else f'ES[{r}]'} = {STOPPING_RULES[r].description if r in STOPPING_RULES else r}"
             f" ({STOPPING_RULES[r].paper if r in STOPPING_RULES else ''})" for r in rules]
    return "; ".join(names) + "; "


# -- the built-in sections, in page order ------------------------------------------------------------

@register_section("header", "suite name, data provenance and metric")
def _header(page: SuitePage) -> None:
    metric = "; ".join(sorted(page.runs["metric"].dropna().unique())) if "metric" in page.runs else ""
    page.md += [f"# Suite `{page.suite}`", "", f"Data: {page.provenance}.", "", f"Metric: {metric}.", ""]


@register_section("tables", "Survey B Table 2 layout, per image, per run")
def _tables(page: SuitePage) -> None:
    table, no_gt = page.summary, page.no_ground_truth
    if not (len(table) or not len(no_gt)):
        return
    page.md += ["PSNR in dB, mean ± std over images and seeds; iterations are medians. "
                f"Peak = oracle best iterate; {es_legend(page.runs)}final = last iterate.", "",
                table.to_markdown(index=False), "",
                "## Per image (mean ± std over seeds)", "", summary_table(page.runs, by_image=True).to_markdown(index=False),
                "", "## Per run", "", per_run_table(page.runs).to_markdown(index=False)]


@register_section("no_ground_truth", "runs without ground truth: residuals and picks, no PSNR")
def _no_gt(page: SuitePage) -> None:
    no_gt = page.no_ground_truth
    if not len(no_gt):
        return
    if len(page.summary):
        page.md += ["", "## Runs without ground truth", ""]
    page.md += ["No ground truth: these runs have no PSNR/SSIM (nothing to score against). "
                f"{es_legend(page.runs)}'iter' is a rule's pick and 'stop' where it would have stopped (medians); "
                "‖Ax−y‖ is the data residual ‖Ax − y‖₂ of the pick and of the final iterate (mean ± std over images "
                "and seeds).", "", no_gt.to_markdown(index=False), "", "### Per run (no ground truth)", "",
                no_ground_truth_per_run(page.runs).to_markdown(index=False)]


@register_section("paper_table", "ours vs a paper table of the suite's experiment (Survey B Table 2)")
def _paper_table(page: SuitePage) -> None:
    for exp in sorted(page.experiments):
        if exp in PAPER_TABLES:
            comparison = paper_comparison(page.runs, pd.read_csv(PAPER_TABLES[exp]))
            page.md += ["", f"## Ours vs the paper ({exp})", "",
                        "Paper numbers are Survey B's (real walnut data, 501², GPU, 10 000 iterations); ours are "
                        f"this suite's setting ({page.provenance}), so differences measure the setting as much as the "
                        "code.", "", comparison.to_markdown(index=False) if len(comparison) else "(no method in common)"]


@register_section("oracle", "transferred (preset) vs oracle setting")
def _oracle(page: SuitePage) -> None:
    if len(page.oracle):
        page.md += ["", "## Transferred vs oracle setting", "",
                    "Transferred: the method's preset (tuned on calibration data, or the paper's value) or default. "
                    "Oracle: the best of a sweep of its tunables on these very measurements, as the surveys tune "
                    f"({len(page.oracle_ids)} extra runs). The gap is how much the tuning on the reported case is worth.",
                    "", page.oracle.to_markdown(index=False)]


@register_section("code_versions", "a warning when runs come from different code")
def _versions(page: SuitePage) -> None:
    versions = code_versions(page.runs)
    if len(versions):
        page.md += ["", "## Warning: results from different code versions", "",
                    "These runs were computed by different code (git commit, uncommitted changes or method source); "
                    "rerun with `--force` or into a fresh results folder to compare like with like.", "",
                    versions.to_markdown(index=False)]


@register_section("failed", "failed and damaged runs")
def _failed(page: SuitePage) -> None:
    failed = page.runs[page.runs["status"] != RunState.FINISHED]
    if len(failed):
        columns = ["run_id", *[c for c in ("failure.kind", "failure.step") if c in failed], "error"]
        page.md += ["", f"## Failed runs ({len(failed)})", "", "Not in the tables above (`--retry-failed` reruns them).",
                    "", failed[columns].rename(columns=lambda c: c.replace("failure.", "")).to_markdown(index=False)]
    if page.damaged:
        page.md += ["", f"## Damaged run folders ({len(page.damaged)})", "",
                    "Left out of this report; `python -m benchmark run` reruns them.", "",
                    *[f"- `{path}`: {problem}" for path, problem in page.damaged]]
    if page.leaderboard:
        page.md += ["", "Stopping-rule leaderboard (every reported suite): [../leaderboard.md](../leaderboard.md)."]


# suites whose per-run figures nobody reads: a calibration grid (its trials are drawn as sensitivity curves,
# reports/sensitivity.py) and the CI regression (every method × tiny task; the golden file is its record). Drawing
# them was 2/3 of `make report`'s time with ci_small and the CT calibration in the store.
NO_FIGURES = {"calibration", "regression"}


@register_section("figures", "PSNR (linear and log x), mean ± sd, residual and loss curves, reconstructions")
def _figures(page: SuitePage) -> None:
    runs, title, folder = page.runs, page.title, page.folder
    if page.experiments & NO_FIGURES:
        page.md += ["", f"No per-run figures for a {'/'.join(sorted(page.experiments & NO_FIGURES))} suite "
                        "(calibration trials: ../sensitivity.md)."]
        return
    jobs = [(psnr_curves, folder / "psnr_vs_iteration.png", {}),
            (psnr_curves, folder / "psnr_vs_iteration_logx.png", {"log_x": True}),
            (mean_psnr_curves, folder / "mean_psnr_vs_iteration.png", {}),
            (residual_curves, folder / "residual_vs_iteration.png", {}),
            (loss_curves, folder / "loss_vs_iteration.png", {}),
            (reconstruction_panel, folder / "reconstructions.png", {})]
    page.figures += [fig for fig in draw_all([(fn, (runs, title, out), kw) for fn, out, kw in jobs]) if fig]


def draw_all(jobs: list) -> list:
    """``fn(*args, **kwargs)`` of every job, in order: the figures are independent pure functions of the stored
    runs, drawn by two forked processes where the machine has two cores (matplotlib is single-threaded; drawing
    was most of `make report`'s time), else one after another."""
    if len(jobs) < 2 or (os.cpu_count() or 1) < 2 or "fork" not in mp.get_all_start_methods():
        return [fn(*args, **kwargs) for fn, args, kwargs in jobs]
    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("fork")) as pool:
        return [f.result() for f in [pool.submit(fn, *args, **kwargs) for fn, args, kwargs in jobs]]
