"""Render every suite's report from the run store (``python -m benchmark report``)."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from benchmark.store import RunStore
from reports import compute, theory  # noqa: F401  (they register their report sections)
from reports.claims import judge, paper_summary, write_claims
from reports.collect import add_labels, load_runs
from reports.experiments import write_experiment_pages
from reports.html import write_html
from reports.leaderboard import write_leaderboard
from reports.sections import PAPER_TABLES, SuitePage, render_sections
from reports.sensitivity import write_sensitivity
from reports.tables import oracle_comparison, oracle_runs


def current_runs(runs: pd.DataFrame, store: RunStore) -> pd.DataFrame:
    """The runs of each suite's current definition (its suite.json, written by every `benchmark run`):
    runs stored under a suite but no longer in it (a setting of the suite file changed since) are left
    out of the report, each suite's count named on stderr; suites without a record keep every run."""
    keep = pd.Series(True, index=runs.index)
    for suite, rows in runs.groupby("suite"):
        listed = store.suite_info(suite).get("runs")
        if not listed:
            continue
        stale = ~rows["run_id"].isin(set(listed))
        if stale.any():
            keep[rows.index[stale]] = False
            print(f"note: left out {int(stale.sum())} run(s) stored under suite {suite} that its current definition no "
                  "longer has (a setting changed since they ran); they stay in the store", file=sys.stderr)
    return runs[keep]


def build_reports(results: Path, out: Path, suites: list[str] | None = None) -> list[Path]:
    runs, store = load_runs(results), RunStore(results)
    if not runs.empty:
        runs = current_runs(runs, store)
    damaged = runs.attrs.get("damaged", [])  # (suite, path, problem): left out, named here and on stderr
    if runs.empty and damaged:
        raise SystemExit(f"no readable runs under {results}/: {len(damaged)} damaged run folder(s) (listed above); "
                         "`python -m benchmark run SUITE` reruns them")
    if runs.empty:
        raise SystemExit(f"no stored runs under {results}/ — run `make benchmark` (or `python -m benchmark run default`) first")
    oracle_of = {suite: set(store.suite_info(suite).get("oracle_runs") or []) for suite in runs["suite"].unique()}
    all_oracle = set().union(*oracle_of.values())
    reported = runs[runs["suite"].isin(suites)] if suites else runs
    # stopping-rule leaderboard over every reported suite (reports/leaderboard.py); its rows pool settings, so
    # calibration and oracle-tuning trials count there as every other run
    board = write_leaderboard(reported, out)
    written = [*board, *write_sensitivity(out)]  # from the calibration tables beside the presets
    claims = judge(reported, paper_summary(pd.read_csv(PAPER_TABLES["B-T2"])), all_oracle)
    written.append(write_claims(reported, out, PAPER_TABLES["B-T2"], all_oracle))
    pages, suite_pages = [], []  # for index.html; for the experiment pages
    for suite, suite_runs in runs.groupby("suite"):
        if suites and suite not in suites:
            continue
        oracle_ids = oracle_of[suite]
        page = SuitePage(
            suite=suite, runs=add_labels(suite_runs[~suite_runs["run_id"].isin(oracle_ids)]),  # trials: own section
            folder=out / suite, info=store.suite_info(suite), oracle=oracle_comparison(suite_runs, oracle_ids),
            oracle_ids=oracle_ids, oracle_runs=add_labels(oracle_runs(suite_runs, oracle_ids)),
            damaged=[(path, problem) for s, path, problem in damaged if s == suite],
            leaderboard=bool(board))
        page.folder.mkdir(parents=True, exist_ok=True)
        render_sections(page)  # reports/sections.py: every registered section, in order
        (page.folder / "table.md").write_text("\n".join(page.md) + "\n")
        table, no_gt = page.summary, page.no_ground_truth
        latex = table if len(table) or not len(no_gt) else no_gt
        (page.folder / "table.tex").write_text(latex.to_latex(index=False, escape=True,
                                                              caption=f"Suite {suite}: {page.provenance}."))
        written += [page.folder / "table.md", page.folder / "table.tex", *page.figures]
        suite_pages.append(page)
        pages.append({"name": suite, "runs": page.runs, "summary": table, "figures": page.figures,
                      "provenance": page.provenance, "experiments": ", ".join(sorted(page.experiments)),
                      "description": page.info.get("description") or "", "tables": page.tables})
    experiments = write_experiment_pages(suite_pages, out)  # reports/experiments.py: one page per experiment id
    written += [*experiments, write_html(out, results, pages, claims, experiments)]
    return written

