"""The surveys' claims as code (../shared/reference/experiments.md, claims 1–13): each claim
is a function of one suite's per-method summary (mean over images and seeds) that returns
the quantity it measured and whether the claim holds there, against a threshold stated
next to it. A claim's verdict over all reported suites is **holds** (it holds in every suite
that can judge it), **fails** (in none), **mixed**, or **not measured** (no suite has what it
needs; the verdict says which experiment to run). The same functions judge Survey B's own
Table 2, so each verdict stands next to the paper's. `make report` writes `claims.md`;
nothing here is typed by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core import keys
from core.registry import Entry, Registry
from core.results import MethodKind, RunState
from reports import theory
from reports.tables import oracle_runs

HOLDS, FAILS, MIXED, NOT_MEASURED = "holds", "fails", "mixed", "not measured"
NTK_CURVE_DB = 1.0  # claim 9: largest PSNR gap between DIP and its NTK filter that still counts as "predicts"
EIGEN_SHARE = 0.75  # claim 10: share of k = 1…64 at which the FBP input must hold more GT energy
# experiments that are analyses, and the claim each one judges; a suite of only these (theory_quick) judges no other
# claim (its 1-D gradient-descent DIP run is the NTK comparison's, not evidence on Survey B's overfitting claims)
ANALYSIS_CLAIMS = {"A-F4": 9, "B-F3": 10}
# suites that are not evidence on any claim: calibration (its images are not the evaluated ones), the CI regression
# (ci_small: tiny crops, 100 iterations, smoke-sized methods; it guards the code, it measures no claim) and the demo
# (the default suite: laptop settings, 500 iterations at one lr for every U-Net method; a first look, no paper's setting)
NOT_EVIDENCE = {"calibration", "regression", "demo"}
ES = keys.es("running_variance", "psnr")
ES_STEP = keys.es("running_variance", "step")


@dataclass(frozen=True)
class ClaimSpec(Entry):
    """A registered claim: ``target(summary) -> (holds: bool | None, quantity: str) | None``
    (None: this suite cannot judge it)."""

    number: int = 0
    threshold: str = ""
    missing: str = ""  # what to run when no suite can judge it


CLAIMS = Registry("claim", entry_type=ClaimSpec)


def register_claim(number: int, sentence: str, source: str, threshold: str, missing: str = ""):
    return CLAIMS.register(f"claim_{number}", None, sentence, source, number=number, threshold=threshold,
                           missing=missing)


@dataclass
class Verdict:
    number: int
    sentence: str
    source: str
    threshold: str
    verdict: str
    evidence: list[tuple[str, str, str]] = field(default_factory=list)  # (suite, quantity, holds/fails)
    paper: str = ""  # the same function on Survey B's Table 2
    missing: str = ""
    # the same test on the suites' oracle setting (each method at its best swept setting on the reported case; suite
    # key oracle:), shown beside the verdict, which stays the transferred (preset) setting's
    oracle: list[tuple[str, str, str]] = field(default_factory=list)


# -- the summary a claim reads ------------------------------------------------------------------
def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method (Survey B's row names: ``paper_method``): mean peak / early-stopped / final
    PSNR, median peak and pick iterations, mean wall time, the run length, the number of images."""
    done = runs[(runs["status"] == RunState.FINISHED)]
    if keys.HAS_GT in done:
        done = done[done[keys.HAS_GT].map(lambda v: v is not False and v != 0)]
    if done.empty:
        return pd.DataFrame()
    col = lambda name: pd.to_numeric(done[name], errors="coerce") if name in done else pd.Series(float("nan"), done.index)  # noqa: E731
    frame = pd.DataFrame({"method": done["paper_method"], "kind": done.get("kind", MethodKind.DIP),
                          "first": col(keys.FIRST_PSNR),
                          "peak": col(keys.PEAK_PSNR), "peak_step": col(keys.PEAK_STEP), "es": col(ES),
                          "es_step": col(ES_STEP), "final": col(keys.FINAL_PSNR), "wall": col("wall_time_s"),
                          "max_steps": col("run.max_steps"),
                          "image": done["dataset.image"].astype(str) if "dataset.image" in done else "–",
                          "seed": col("run.seed")})
    grouped = frame.groupby("method")
    summary = grouped.agg(kind=("kind", "first"), first=("first", "mean"), peak=("peak", "mean"),
                          peak_step=("peak_step", "median"),
                          es=("es", "mean"), es_step=("es_step", "median"), final=("final", "mean"),
                          wall=("wall", "mean"), max_steps=("max_steps", "max"), images=("image", "nunique"))
    summary.attrs["per_run"] = frame
    summary.attrs["runs"] = done  # the runs themselves, for claims that read traces or stored arrays (9, 10)
    return summary


def paper_summary(table: pd.DataFrame, max_steps: int = 10000) -> pd.DataFrame:
    """Survey B's Table 2 in the same shape (its TV baseline as a reconstruction's PSNR)."""
    t = table.rename(columns={"peak_psnr": "peak", "peak_iter": "peak_step", "es_psnr": "es", "es_iter": "es_step",
                              "final_psnr": "final"}).set_index("method")
    t["kind"] = [MethodKind.BASELINE if m == "tv_baseline" else MethodKind.DIP for m in t.index]
    t.loc["tv_baseline", "final"] = t.loc["tv_baseline", "peak"] if "tv_baseline" in t.index else None
    t["max_steps"], t["wall"], t["images"] = max_steps, float("nan"), 1
    return t


def _row(summary: pd.DataFrame, method: str):
    return summary.loc[method] if method in summary.index and pd.notna(summary.loc[method, "peak"]) else None


# -- the claims ---------------------------------------------------------------------------------
@register_claim(1, "Vanilla DIP overfits: final PSNR far below peak (B-T2: 28.58 → 17.55 dB).", "Survey B Table 2",
                "peak − final ≥ 3 dB")
def _vanilla_overfits(s):
    v = _row(s, "vanilla_dip")
    if v is None:
        return None
    gap = v.peak - v.final
    return gap >= 3, f"vanilla peak {v.peak:.2f} → final {v.final:.2f} dB (−{gap:.2f})"


@register_claim(2, "DIP+TV has about the same peak as vanilla but a much higher final PSNR.", "Survey B §6",
                "|peak_TV − peak_vanilla| ≤ 1 dB and final_TV − final_vanilla ≥ 2 dB (joint TV)")
def _tv_keeps_final(s):
    v, t = _row(s, "vanilla_dip"), _row(s, "dip_tv_joint")
    if v is None or t is None:
        return None
    holds = abs(t.peak - v.peak) <= 1 and t.final - v.final >= 2
    return holds, f"peak {t.peak:.2f} vs {v.peak:.2f}, final {t.final:.2f} vs {v.final:.2f} dB (TV vs vanilla)"


@register_claim(3, "HQS TV has a slightly higher peak than joint TV at a higher cost.", "Survey B §6",
                "0 < peak_HQS − peak_joint ≤ 1.5 dB (and HQS slower, where wall times exist)")
def _hqs_vs_joint(s):
    h, j = _row(s, "dip_tv_hqs"), _row(s, "dip_tv_joint")
    if h is None or j is None:
        return None
    diff = h.peak - j.peak
    slower = None if pd.isna(h.wall) or pd.isna(j.wall) else h.wall > j.wall
    holds = 0 < diff <= 1.5 and slower is not False
    cost = "" if slower is None else f", time {h.wall:.0f} vs {j.wall:.0f} s"
    return holds, f"peak HQS {h.peak:.2f} vs joint {j.peak:.2f} dB ({diff:+.2f}){cost}"


@register_claim(4, "Self-guided DIP peaks late and its final PSNR ≈ its peak.", "Survey B §6",
                "peak iteration ≥ half the run and peak − final ≤ 1 dB")
def _self_guided(s):
    g = _row(s, "self_guided_dip")
    if g is None:
        return None
    late, gap = g.peak_step >= 0.5 * g.max_steps, g.peak - g.final
    return bool(late and gap <= 1), f"peak {g.peak:.2f} @ {g.peak_step:.0f}/{g.max_steps:.0f}, final {g.final:.2f} dB"


@register_claim(5, "aSeqDIP overfits little; the running-variance rule suits it poorly.", "Survey B §6",
                "peak − final ≤ 1 dB and peak − ES ≥ 2 dB")
def _aseqdip(s):
    a = _row(s, "aseqdip")
    if a is None or pd.isna(a.es):
        return None
    return bool(a.peak - a.final <= 1 and a.peak - a.es >= 2), (
        f"peak {a.peak:.2f}, final {a.final:.2f}, ES {a.es:.2f} dB")


@register_claim(6, "Denoiser-based splitting (HQS, ADMM) gives the highest peak.", "Survey B §6",
                "best of denoiser HQS/ADMM ≥ every other DIP method's peak − 0.1 dB")
def _denoisers_best(s):
    dip = s[s["kind"] == MethodKind.DIP].dropna(subset=["peak"])
    ours = dip[dip.index.isin(["dip_denoiser_hqs", "dip_denoiser_admm"])]
    others = dip[~dip.index.isin(ours.index)]
    if ours.empty or others.empty:
        return None
    best, rival = ours["peak"].max(), others["peak"].idxmax()
    return bool(best >= others["peak"].max() - 0.1), (
        f"denoiser best {best:.2f} dB vs best other {others['peak'].max():.2f} ({rival})")


@register_claim(7, "The running-variance stopping rule lands near the peak for vanilla DIP but can be far off for CT.",
                "Survey B §6", "vanilla: peak − ES ≤ 1 dB, and some other method: peak − ES ≥ 3 dB")
def _running_variance(s):
    v = _row(s, "vanilla_dip")
    if v is None or pd.isna(v.es):
        return None
    gaps = (s["peak"] - s["es"]).dropna().drop("vanilla_dip", errors="ignore")
    worst = gaps.idxmax() if len(gaps) else None
    far = worst is not None and gaps[worst] >= 3
    text = f"vanilla peak − ES {v.peak - v.es:.2f} dB" + (f"; worst {worst} {gaps[worst]:.2f} dB" if worst else "")
    return bool(v.peak - v.es <= 1 and far), text


@register_claim(8, "The peak iteration varies from image to image even with the same initialisation (A-F3).",
                "Survey A Fig. 3", "max/min peak iteration of vanilla DIP over images (same seed) ≥ 1.5",
                missing="the A-F3 suite (a_f3_quick: several images, one seed)")
def _peak_varies(s):
    frame = s.attrs.get("per_run")
    if frame is None:
        return None
    v = frame[frame["method"] == "vanilla_dip"]
    ratios = [g["peak_step"].max() / max(g["peak_step"].min(), 1) for _, g in v.groupby("seed") if g["image"].nunique() > 1]
    if not ratios:
        return None
    ratio = min(ratios)
    return ratio >= 1.5, f"peak iterations differ by ×{ratio:.2f} across {v['image'].nunique()} images"


@register_claim(9, "On a 1D signal the NTK filter predicts the PSNR curve of the real network (A-F4).",
                "Survey A Fig. 4", f"max over iterations of |PSNR_DIP − PSNR_NTK| ≤ {NTK_CURVE_DB} dB for every DIP/NTK "
                "pair (same seed, network, η; plain gradient descent)",
                missing="the A-F4 experiment: `python -m benchmark run theory_quick`")
def _ntk_1d(s):
    runs = s.attrs.get("runs")
    pairs = theory.filter_pairs(runs) if runs is not None else []
    if not pairs:
        return None
    found = [theory.curve_agreement(d, n) for d, n in pairs]
    worst = max(f["max_abs_db"] for f in found)
    text = "; ".join(f"{f['setting']}, {f['depth']} hidden layers: max {f['max_abs_db']:.2f} dB, "
                     f"mean {f['mean_abs_db']:.2f} dB, peaks "
                     f"{f['dip_peak']:.2f} dB @ {f['dip_peak_step']:.0f} (DIP) vs {f['ntk_peak']:.2f} dB @ "
                     f"{f['ntk_peak_step']:.0f} (NTK)" for f in found)
    return worst <= NTK_CURVE_DB, text


@register_claim(10, "FBP input gives NTK eigenvectors closer to the image than random input (B-F3).",
                "Survey B Fig. 3", f"the ground truth's energy in the span of the top-k eigenvectors is higher with FBP "
                f"input than with random input for ≥ {EIGEN_SHARE:.0%} of k = 1…64",
                missing="the B-F3 experiment: `python -m benchmark run theory_quick`")
def _ntk_fbp(s):
    runs = s.attrs.get("runs")
    found = [r for r in (theory.eigen_comparison(a, b) for a, b in theory.eigen_pairs(runs)) if r] if runs is not None else []
    if not found:
        return None
    share = min(r["fbp_higher"] for r in found)
    text = "; ".join(f"E(4) {r['fbp'][min(3, r['k'] - 1)]:.3f} (FBP) vs {r['noise'][min(3, r['k'] - 1)]:.3f} (random), "
                     f"E({r['k']}) {r['fbp'][-1]:.3f} vs {r['noise'][-1]:.3f}; FBP higher at {r['fbp_higher']:.0%} of "
                     f"k = 1…{r['k']}" for r in found)
    return share >= EIGEN_SHARE, text


@register_claim(11, "Warm start begins far higher and overfits less, peaking slightly lower (B-F9).",
                "Survey B Fig. 9", "first-iterate PSNR: warm − vanilla ≥ 10 dB; peak − final: warm < vanilla; "
                "peak: 0 ≤ vanilla − warm ≤ 1.5 dB (paper: ≈ 24 vs 6 dB, ≈ 0.6 dB lower)",
                missing="the B-F9 warm-start experiment (compute_quick)")
def _warm_start(s):
    v, w = _row(s, "vanilla_dip"), _row(s, "vanilla_dip_warm_start")
    if v is None or w is None or pd.isna(v.get("first")) or pd.isna(w.get("first")):
        return None
    higher, lower = w["first"] - v["first"], v.peak - w.peak
    overfit_v, overfit_w = v.peak - v.final, w.peak - w.final
    holds = bool(higher >= 10 and overfit_w < overfit_v and 0 <= lower <= 1.5)
    return holds, (f"first {w['first']:.2f} vs {v['first']:.2f} dB, peak − final {overfit_w:.2f} vs {overfit_v:.2f} dB, "
                   f"peak {w.peak:.2f} vs {v.peak:.2f} dB (warm vs vanilla)")


@register_claim(12, "Every DIP variant's peak beats the tuned TV baseline.", "Survey B Table 2",
                "every DIP method's peak > the TV baseline's PSNR")
def _beats_tv(s):
    tv = _row(s, "tv_baseline")
    dip = s[s["kind"] == MethodKind.DIP].dropna(subset=["peak"])
    if tv is None or dip.empty:
        return None
    below = dip[dip["peak"] <= tv.peak]
    return below.empty, (f"TV {tv.peak:.2f} dB; {len(dip) - len(below)} of {len(dip)} DIP peaks above"
                         + (f" (below: {', '.join(below.index)})" if len(below) else ""))


@register_claim(13, "An under-parameterised deep decoder cannot fit pure Gaussian noise, while the "
                    "over-parameterised U-Net drives the residual to ~0.", "Survey B §3.2, Proposition 1", "—",
                missing="a pure-noise fitting experiment (deep decoder vs U-Net on noise-only data)")
def _deep_decoder_noise(s):
    return None


# -- judging ------------------------------------------------------------------------------------
def judge(runs: pd.DataFrame, paper: pd.DataFrame | None = None, oracle_ids: set[str] | None = None) -> list[Verdict]:
    """Every claim over every reported suite (calibration and regression suites excluded, NOT_EVIDENCE: their images are
    not the evaluated ones) and, where it applies, over Survey B's Table 2. The verdict reads each suite's runs at
    their transferred setting; ``oracle_ids`` (the suites' oracle-tuning trials) are left out of it and judged apart,
    as the suite at each method's best swept setting (:func:`reports.tables.oracle_runs`)."""
    oracle_ids = oracle_ids or set()
    summaries, oracle_summaries, analyses = {}, {}, {}
    for suite, suite_runs in runs.groupby("suite"):
        experiments = set(str(suite_runs["suite_experiment"].iloc[0]).split(","))
        if experiments & NOT_EVIDENCE:
            continue
        summary = summarize(suite_runs[~suite_runs["run_id"].isin(oracle_ids)] if oracle_ids else suite_runs)
        if not summary.empty:
            summaries[suite] = summary
            if experiments <= set(ANALYSIS_CLAIMS):  # an NTK analysis suite speaks only to its own claims
                analyses[suite] = {ANALYSIS_CLAIMS[e] for e in experiments}
            tuned = oracle_runs(suite_runs, oracle_ids)
            if len(tuned):
                oracle_summaries[suite] = summarize(tuned)
    verdicts = []
    for spec in sorted(CLAIMS.values(), key=lambda c: c.number):
        evidence = _measured(spec, summaries, analyses)
        outcomes = {e[2] for e in evidence}
        verdict = NOT_MEASURED if not evidence else outcomes.pop() if len(outcomes) == 1 else MIXED
        paper_text = ""
        if paper is not None:
            result = spec.target(paper)
            if result is not None:
                paper_text = f"{result[1]} → {HOLDS if result[0] else FAILS}"
        missing = spec.missing or ("a suite with the methods it compares (e.g. survey_b_table2_quick)"
                                   if not evidence else "")
        verdicts.append(Verdict(spec.number, spec.description, spec.paper, spec.threshold, verdict, evidence,
                                paper_text, missing, oracle=_measured(spec, oracle_summaries, analyses)))
    return verdicts


def _measured(spec: ClaimSpec, summaries: dict, analyses: dict) -> list[tuple[str, str, str]]:
    """(suite, quantity, holds/fails) of one claim over the suites' summaries that can judge it."""
    found = []
    for suite, summary in summaries.items():
        if suite in analyses and spec.number not in analyses[suite]:
            continue
        result = spec.target(summary)
        if result is not None:
            found.append((suite, result[1], HOLDS if result[0] else FAILS))
    return found


def write_claims(runs: pd.DataFrame, out: Path, paper_table: Path | None = None,
                 oracle_ids: set[str] | None = None) -> Path:
    """``claims.md``: per claim, the threshold, what each suite measured, the verdict, the
    same test at the suites' oracle setting where a suite has one, and on Survey B's Table 2."""
    paper = paper_summary(pd.read_csv(paper_table)) if paper_table and paper_table.is_file() else None
    lines = ["# The surveys' claims, judged by code", "",
             "Each claim is a function of a suite's per-method means (reports/claims.py), with the threshold that "
             "decides it; **holds** / **fails** over every suite that can judge it, **mixed** when suites disagree, "
             "**not measured** when none can (with what to run). 'Paper' applies the same test to Survey B's Table 2 "
             "(real walnut, 501², 10 000 iterations). Our suites differ from the papers' settings (simulated "
             "measurements on real images, CPU sizes and iteration counts): see each suite's page. The verdict reads "
             "every method at its transferred setting (its family preset, tuned on calibration data); 'oracle "
             "setting' applies the same test where a suite also swept each method's tunables on the reported case "
             "itself, as the surveys tuned (suite key `oracle:`), each method at its best peak.", "",
             "| # | claim | threshold | verdict | ours (suite: measured) | oracle setting (suite: measured) | paper (B-T2) |",
             "|---|---|---|---|---|---|---|"]
    for v in judge(runs, paper, oracle_ids):
        ours = "<br>".join(f"`{s}`: {q} → {h}" for s, q, h in v.evidence) or f"— run {v.missing}"
        oracle = "<br>".join(f"`{s}`: {q} → {h}" for s, q, h in v.oracle) or "—"
        lines.append(f"| {v.number} | {v.sentence} ({v.source}) | {v.threshold} | **{v.verdict}** | {ours} | {oracle} | "
                     f"{v.paper or '—'} |")
    path = out / "claims.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
