"""Render every suite's report from the run store (``python -m benchmark report``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.collect import add_labels, load_runs
from reports.figures import psnr_curves, reconstruction_panel
from reports.tables import code_versions, paper_comparison, per_run_table, summary_table

PAPER_TABLES = {"B-T2": Path(__file__).parent / "paper" / "survey_b_table2.csv"}  # numbers of Survey B Table 2


def build_reports(results: Path, out: Path, suites: list[str] | None = None) -> list[Path]:
    runs = load_runs(results)
    if runs.empty:
        raise SystemExit(f"no stored runs under {results}/ — run `make benchmark` (or `python -m benchmark run default`) first")
    written = []
    for suite, suite_runs in runs.groupby("suite"):
        if suites and suite not in suites:
            continue
        suite_runs = add_labels(suite_runs)
        folder = out / suite
        folder.mkdir(parents=True, exist_ok=True)
        provenance = "; ".join(sorted(suite_runs["provenance"].dropna().unique()))
        metric = "; ".join(sorted(suite_runs["metric"].dropna().unique()))
        table = summary_table(suite_runs)
        failed = suite_runs[suite_runs["status"] != "finished"]
        md = [f"# Suite `{suite}`", "", f"Data: {provenance}.", "", f"Metric: {metric}.", "",
              "PSNR in dB, mean ± std over images and seeds; iterations are medians. "
              f"Peak = oracle best iterate; {_es_legend(suite_runs)}final = last iterate.", "",
              table.to_markdown(index=False), "",
              "## Per image (mean ± std over seeds)", "", summary_table(suite_runs, by_image=True).to_markdown(index=False),
              "", "## Per run", "",
              per_run_table(suite_runs).to_markdown(index=False)]
        experiments = {e for ids in suite_runs["suite_experiment"].dropna() for e in ids.split(",") if e}
        for exp in experiments:
            if exp in PAPER_TABLES:
                paper = pd.read_csv(PAPER_TABLES[exp])
                comparison = paper_comparison(suite_runs, paper)
                md += ["", f"## Ours vs the paper ({exp})", "",
                       "Paper numbers are Survey B's (real walnut data, 501², GPU, 10 000 iterations); ours are "
                       f"this suite's setting ({provenance}), so differences measure the setting as much as the code.", "",
                       comparison.to_markdown(index=False) if len(comparison) else "(no method in common)"]
        versions = code_versions(suite_runs)
        if len(versions):
            md += ["", "## Warning: results from different code versions", "",
                   "These runs were computed by different code (git commit, uncommitted changes or method source); "
                   "rerun with `--force` or into a fresh results folder to compare like with like.", "",
                   versions.to_markdown(index=False)]
        if len(failed):
            md += ["", f"## Failed runs ({len(failed)})", "", failed[["run_id", "error"]].to_markdown(index=False)]
        (folder / "table.md").write_text("\n".join(md) + "\n")
        (folder / "table.tex").write_text(table.to_latex(index=False, escape=True, caption=f"Suite {suite}: {provenance}."))
        written += [folder / "table.md", folder / "table.tex"]
        title = f"{suite}: {provenance}"
        for fig in (psnr_curves(suite_runs, title, folder / "psnr_vs_iteration.png"),
                    reconstruction_panel(suite_runs, title, folder / "reconstructions.png")):
            if fig:
                written.append(fig)
    return written


def _es_legend(runs: pd.DataFrame) -> str:
    from methods import keys
    from methods.stopping import STOPPING_RULES

    rules = keys.es_rules(runs.columns)
    if not rules:
        return ""
    names = [f"{'ES' if len(rules) == 1 else f'ES[{r}]'} = {STOPPING_RULES[r].description if r in STOPPING_RULES else r}"
             f" ({STOPPING_RULES[r].paper if r in STOPPING_RULES else ''})" for r in rules]
    return "; ".join(names) + "; "
