"""Survey B §5 (B-F9, B-S5) on a suite's report page: the wall time each DIP variant needs to
reach given PSNR levels, and PSNR against wall time. Read from the traces' ``wall_time_s``
column (seconds since the run's training started, docs/conventions.md §18); a warm start's
pre-training is a one-off cost, cached and shared by every run on the same operator and
network, so it is listed beside the time and not added to it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from core import keys  # noqa: E402
from core.results import MethodKind, RunState  # noqa: E402
from reports.collect import load_trace  # noqa: E402
from reports.figures import save_figure  # noqa: E402
from reports.sections import SuitePage, register_section  # noqa: E402

EXPERIMENTS = {"B-F9", "B-S5"}  # suites of these experiments get the section
REFERENCE = "vanilla_dip"  # the levels are set by this method's peak
BELOW_PEAK_DB = (3.0, 2.0, 1.0, 0.5)  # PSNR levels: the reference's peak minus these


@dataclass
class Section:
    markdown: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (title, table) for the HTML page


def applies(experiments: set[str]) -> bool:
    return bool(experiments & EXPERIMENTS)


def _traces(runs: pd.DataFrame) -> list[tuple[pd.Series, pd.DataFrame]]:
    done = runs[(runs["status"] == RunState.FINISHED) & (runs["kind"] == MethodKind.DIP)]
    out = []
    for _, r in done.iterrows():
        t = load_trace(r["path"])
        if t.empty or keys.WALL_TIME not in t or "psnr" not in t:
            continue  # runs stored before the trace had wall times, or without a ground truth
        t = t[t["step"] >= 1][["step", "psnr", keys.WALL_TIME]].dropna()
        if len(t):
            out.append((r, t))
    return out


def levels(runs: pd.DataFrame) -> list[float]:
    """The PSNR levels p: the reference method's mean peak minus :data:`BELOW_PEAK_DB` (or the
    best method's peak if the reference did not run), rounded to 0.1 dB."""
    done = runs[(runs["status"] == RunState.FINISHED) & (runs["kind"] == MethodKind.DIP)]
    peaks = pd.to_numeric(done.get(keys.PEAK_PSNR), errors="coerce")
    ref = peaks[done["paper_method"] == REFERENCE]
    top = ref.mean() if len(ref.dropna()) else peaks.max()
    return [] if pd.isna(top) else [round(top - d, 1) for d in BELOW_PEAK_DB]


def time_to_reach(trace: pd.DataFrame, p: float) -> tuple[float, float]:
    """(wall time [s], iteration) of the first traced iterate with PSNR ≥ p; NaN if none."""
    hit = trace[trace["psnr"] >= p]
    if hit.empty:
        return float("nan"), float("nan")
    first = hit.iloc[0]
    return float(first[keys.WALL_TIME]), float(first["step"])


def wall_time_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per method variant (mean over its runs): trainable parameters, the one-off
    pre-training time, seconds per iteration, first / peak / final PSNR, and the wall time
    (iteration) to reach each PSNR level; '—' where no run reached it."""
    ps = levels(runs)
    rows = []
    for r, t in _traces(runs):
        row = {"method": r["paper_method"], "trainable": r.get("n_trainable"), "pre-training [s]": r.get("pretrain.time_s"),
               "s / iteration": t[keys.WALL_TIME].iloc[-1] / t["step"].iloc[-1],
               "first": t["psnr"].iloc[0], "peak": r.get(keys.PEAK_PSNR), "peak iter": r.get(keys.PEAK_STEP),
               "final": r.get(keys.FINAL_PSNR)}
        for p in ps:
            row[f"t({p:g} dB)"], row[f"it({p:g} dB)"] = time_to_reach(t, p)
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    numeric = frame.drop(columns="method").apply(pd.to_numeric, errors="coerce")
    mean = numeric.groupby(frame["method"]).mean()
    out = pd.DataFrame(index=mean.index)
    out["trainable"] = mean["trainable"].map(lambda v: f"{v:,.0f}" if pd.notna(v) else "—")
    out["pre-training [s]"] = mean["pre-training [s]"].map(lambda v: f"{v:.0f}" if pd.notna(v) else "—")
    out["ms / iteration"] = (1000 * mean["s / iteration"]).map(lambda v: f"{v:.1f}")
    for col in ("first", "peak", "final"):
        out[f"{col} PSNR"] = mean[col].map(lambda v: f"{v:.2f}" if pd.notna(v) else "—")
    out["peak iter"] = mean["peak iter"].map(lambda v: f"{v:.0f}" if pd.notna(v) else "—")
    for p in ps:
        t, it = mean[f"t({p:g} dB)"], mean[f"it({p:g} dB)"]
        out[f"≥ {p:g} dB: s (iter)"] = [f"{a:.1f} ({b:.0f})" if pd.notna(a) else "—" for a, b in zip(t, it)]
    return out.reset_index()


def psnr_vs_time(runs: pd.DataFrame, title: str, out: Path) -> Path | None:
    """PSNR against wall time since the start of training, a line per run (colour = method
    variant), the levels of the table dotted."""
    traces = [t.assign(method=r["paper_method"], run=r["run_id"]) for r, t in _traces(runs)]
    if not traces:
        return None
    data = pd.concat(traces, ignore_index=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    sns.lineplot(data=data, x=keys.WALL_TIME, y="psnr", hue="method", units="run", estimator=None, lw=1, ax=ax)
    for p in levels(runs):
        ax.axhline(p, ls=":", lw=0.7, color="grey")
    ax.set_xlabel("wall time since the start of training [s] (pre-training excluded)")
    ax.set_ylabel("PSNR [dB]")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, f"{title}\nPSNR vs wall time (Survey B §5)", out, y=1.03)  # suite on top, provenance below


def compute_section(runs: pd.DataFrame, title: str, folder: Path) -> Section:
    """The suite page's "wall time to reach PSNR p" table and PSNR-vs-wall-time figure."""
    section = Section()
    table = wall_time_table(runs)
    if table.empty:
        return section
    ps = levels(runs)
    section.markdown = [
        "", "## Wall time to reach PSNR p (Survey B §5)", "",
        f"Levels p: {REFERENCE}'s peak minus {', '.join(f'{d:g}' for d in BELOW_PEAK_DB)} dB "
        f"({', '.join(f'{p:g}' for p in ps)} dB). Seconds since the start of training to the first traced iterate at or "
        "above p (iteration in brackets; resolution: run.trace_every), mean over seeds; '—': never reached. "
        "Pre-training (warm start, subspace DIP) is a one-off cost, cached and shared by every run on the same "
        "operator and network: listed, not added. 'trainable' counts the optimised numbers (subspace DIP: its k "
        "coefficients). Wall times depend on the machine and on what else ran at the time (see the per-run "
        "placement).", "", table.to_markdown(index=False)]
    section.tables = [("Wall time to reach PSNR p (Survey B §5)", table)]
    figure = psnr_vs_time(runs, title, folder / "psnr_vs_wall_time.png")
    section.figures = [figure] if figure else []
    return section


@register_section("compute", "Survey B §5: wall time to reach PSNR p and PSNR vs wall time (B-F9, B-S5 suites)")
def _compute_section(page: SuitePage) -> None:
    if applies(page.experiments):
        section = compute_section(page.runs, page.title, page.folder)
        page.md += section.markdown
        page.figures += section.figures
        page.tables += section.tables
