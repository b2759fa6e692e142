"""Render every suite's report from the run store (``python -m benchmark report``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.store import RunStore
from core import keys
from core.results import RunState
from reports.claims import judge, paper_summary, write_claims
from reports.collect import add_labels, load_runs
from reports.compute import applies as compute_applies
from reports.compute import compute_section
from reports.figures import mean_psnr_curves, psnr_curves, reconstruction_panel, residual_curves
from reports.html import write_html
from reports.leaderboard import write_leaderboard
from reports.sensitivity import write_sensitivity
from reports.tables import (
    code_versions,
    no_ground_truth_per_run,
    no_ground_truth_table,
    oracle_comparison,
    paper_comparison,
    per_run_table,
    summary_table,
)
from scoring.stopping import STOPPING_RULES

PAPER_TABLES = {"B-T2": Path(__file__).parent / "paper" / "survey_b_table2.csv"}  # numbers of Survey B Table 2


def build_reports(results: Path, out: Path, suites: list[str] | None = None) -> list[Path]:
    runs = load_runs(results)
    damaged = runs.attrs.get("damaged", [])  # (suite, path, problem): left out, named here and on stderr
    if runs.empty and damaged:
        raise SystemExit(f"no readable runs under {results}/: {len(damaged)} damaged run folder(s) (listed above); "
                         "`python -m benchmark run SUITE` reruns them")
    if runs.empty:
        raise SystemExit(f"no stored runs under {results}/ — run `make benchmark` (or `python -m benchmark run default`) first")
    # stopping-rule leaderboard over every reported suite (reports/leaderboard.py)
    board = write_leaderboard(runs[runs["suite"].isin(suites)] if suites else runs, out)
    written = [*board, *write_sensitivity(out)]  # from the calibration tables beside the presets
    reported = runs[runs["suite"].isin(suites)] if suites else runs
    claims = judge(reported, paper_summary(pd.read_csv(PAPER_TABLES["B-T2"])))
    written.append(write_claims(reported, out, PAPER_TABLES["B-T2"]))
    pages = []  # for index.html
    store = RunStore(results)
    for suite, suite_runs in runs.groupby("suite"):
        if suites and suite not in suites:
            continue
        oracle_ids = set(store.suite_info(suite).get("oracle_runs") or [])
        oracle = oracle_comparison(suite_runs, oracle_ids)
        suite_runs = add_labels(suite_runs[~suite_runs["run_id"].isin(oracle_ids)])  # trials: only in their section
        folder = out / suite
        folder.mkdir(parents=True, exist_ok=True)
        provenance = "; ".join(sorted(suite_runs["provenance"].dropna().unique()))
        metric = "; ".join(sorted(suite_runs["metric"].dropna().unique()))
        table = summary_table(suite_runs)
        no_gt = no_ground_truth_table(suite_runs)  # runs without ground truth: no PSNR rows (docs/conventions.md §11)
        failed = suite_runs[suite_runs["status"] != RunState.FINISHED]
        md = [f"# Suite `{suite}`", "", f"Data: {provenance}.", "", f"Metric: {metric}.", ""]
        if len(table) or not len(no_gt):
            md += ["PSNR in dB, mean ± std over images and seeds; iterations are medians. "
                   f"Peak = oracle best iterate; {_es_legend(suite_runs)}final = last iterate.", "",
                   table.to_markdown(index=False), "",
                   "## Per image (mean ± std over seeds)", "", summary_table(suite_runs, by_image=True).to_markdown(index=False),
                   "", "## Per run", "",
                   per_run_table(suite_runs).to_markdown(index=False)]
        if len(no_gt):
            if len(table):
                md += ["", "## Runs without ground truth", ""]
            md += ["No ground truth: these runs have no PSNR/SSIM (nothing to score against). "
                   f"{_es_legend(suite_runs)}'iter' is a rule's pick and 'stop' where it would have stopped (medians); "
                   "‖Ax−y‖ is the data residual ‖Ax − y‖₂ of the pick and of the final iterate (mean ± std over images "
                   "and seeds).", "", no_gt.to_markdown(index=False), "", "### Per run (no ground truth)", "",
                   no_ground_truth_per_run(suite_runs).to_markdown(index=False)]
        experiments = {e for ids in suite_runs["suite_experiment"].dropna() for e in ids.split(",") if e}
        compute = compute_section(suite_runs, f"{suite}: {provenance}", folder) if compute_applies(experiments) else None
        md += compute.markdown if compute else []  # Survey B §5: wall time to reach PSNR p (reports/compute.py)
        for exp in experiments:
            if exp in PAPER_TABLES:
                paper = pd.read_csv(PAPER_TABLES[exp])
                comparison = paper_comparison(suite_runs, paper)
                md += ["", f"## Ours vs the paper ({exp})", "",
                       "Paper numbers are Survey B's (real walnut data, 501², GPU, 10 000 iterations); ours are "
                       f"this suite's setting ({provenance}), so differences measure the setting as much as the code.", "",
                       comparison.to_markdown(index=False) if len(comparison) else "(no method in common)"]
        if len(oracle):
            md += ["", "## Transferred vs oracle setting", "",
                   "Transferred: the method's preset (tuned on calibration data, or the paper's value) or default. "
                   "Oracle: the best of a sweep of its tunables on these very measurements, as the surveys tune "
                   f"({len(oracle_ids)} extra runs). The gap is how much the tuning on the reported case is worth.", "",
                   oracle.to_markdown(index=False)]
        versions = code_versions(suite_runs)
        if len(versions):
            md += ["", "## Warning: results from different code versions", "",
                   "These runs were computed by different code (git commit, uncommitted changes or method source); "
                   "rerun with `--force` or into a fresh results folder to compare like with like.", "",
                   versions.to_markdown(index=False)]
        if len(failed):
            columns = ["run_id", *[c for c in ("failure.kind", "failure.step") if c in failed], "error"]
            md += ["", f"## Failed runs ({len(failed)})", "", "Not in the tables above (`--retry-failed` reruns them).", "",
                   failed[columns].rename(columns=lambda c: c.replace("failure.", "")).to_markdown(index=False)]
        broken = [(path, problem) for s, path, problem in damaged if s == suite]
        if broken:
            md += ["", f"## Damaged run folders ({len(broken)})", "",
                   "Left out of this report; `python -m benchmark run` reruns them.", "",
                   *[f"- `{path}`: {problem}" for path, problem in broken]]
        if board:
            md += ["", "Stopping-rule leaderboard (every reported suite): [../leaderboard.md](../leaderboard.md)."]
        (folder / "table.md").write_text("\n".join(md) + "\n")
        latex = table if len(table) or not len(no_gt) else no_gt
        (folder / "table.tex").write_text(latex.to_latex(index=False, escape=True, caption=f"Suite {suite}: {provenance}."))
        written += [folder / "table.md", folder / "table.tex"]
        title = f"{suite}: {provenance}"
        figures = [fig for fig in (psnr_curves(suite_runs, title, folder / "psnr_vs_iteration.png"),
                                   mean_psnr_curves(suite_runs, title, folder / "mean_psnr_vs_iteration.png"),
                                   residual_curves(suite_runs, title, folder / "residual_vs_iteration.png"),
                                   reconstruction_panel(suite_runs, title, folder / "reconstructions.png")) if fig]
        figures += compute.figures if compute else []
        written += figures
        info = store.suite_info(suite)
        pages.append({"name": suite, "runs": suite_runs, "summary": table, "figures": figures, "provenance": provenance,
                      "experiments": ", ".join(sorted(experiments)), "description": info.get("description") or "",
                      "tables": compute.tables if compute else []})
    written.append(write_html(out, results, pages, claims))
    return written


def _es_legend(runs: pd.DataFrame) -> str:
    rules = keys.es_rules(runs.columns)
    if not rules:
        return ""
    names = [f"{'ES' if len(rules) == 1 else f'ES[{r}]'} = {STOPPING_RULES[r].description if r in STOPPING_RULES else r}"
             f" ({STOPPING_RULES[r].paper if r in STOPPING_RULES else ''})" for r in rules]
    return "; ".join(names) + "; "
