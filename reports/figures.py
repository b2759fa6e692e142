"""PSNR-vs-iteration figures (seaborn) with peak, early-stop and final marked, data-residual
curves (‖Ax − y‖ vs iteration, with or without a ground truth), and reconstruction panels
(GT / degraded / peak / early-stopped / final; runs without a ground truth have no GT and
no peak, docs/conventions.md §11)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from core import keys  # noqa: E402
from core.results import MethodKind, RunState  # noqa: E402
from reports.collect import load_trace  # noqa: E402
from reports.tables import has_ground_truth, primary_rule  # noqa: E402


def panel_name(setting: str, image) -> str:
    """A figure panel's title: the setting and the image (a task with one unnamed image: the setting)."""
    return setting if image in (None, "", "–") or pd.isna(image) else f"{setting} | {image}"


def save_figure(fig, title: str, out: Path, y: float | None = None) -> Path:
    """Title, write (PNG, 130 dpi) and close a figure; returns its path. A long title ``"suite:
    provenance"`` is split: the suite name on top, the provenance wrapped as a caption below the
    figure (printed over the column headings it was unreadable)."""
    head, _, caption = title.partition(": ")
    extra = ""
    if "\n" in caption:
        caption, extra = caption.split("\n", 1)
    fig.suptitle(head + (f" — {extra}" if extra else ""), fontsize=10, **({"y": y} if y is not None else {}))
    if caption:
        fig.text(0.5, -0.01, textwrap.fill(caption, 140), ha="center", va="top", fontsize=7, color="#444")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out


def _grid_size(panels: int) -> dict:
    """Panel size: one or two panels are drawn larger (they were a small plot on a wide canvas)."""
    return {"height": 4.2, "aspect": 1.5} if panels <= 2 else {"height": 3.2, "aspect": 1.3}


def _legend_outside(grid, handles) -> None:
    """The method legend to the right of the panels, top-aligned; the marker legend below it."""
    if grid.legend is not None:
        sns.move_legend(grid, "upper left", bbox_to_anchor=(1.0, 0.95), fontsize=7, title_fontsize=8, frameon=False)
    if handles:
        grid.figure.legend(handles=handles, loc="lower left", bbox_to_anchor=(1.0, 0.02), fontsize=7, frameon=False,
                           title="marks", title_fontsize=8)


def marks(runs: pd.DataFrame) -> dict:
    """Marker per point of interest: (step key, PSNR key, marker); ES is the primary rule."""
    out = {"peak": (keys.PEAK_STEP, keys.PEAK_PSNR, "^")}
    rule = primary_rule(runs)
    if rule:
        out[f"early stop ({rule})"] = (keys.es(rule, "step"), keys.es(rule, "psnr"), "o")
    out["final"] = (keys.FINAL_STEP, keys.FINAL_PSNR, "s")
    return out


def _dip_psnr_traces(dip: pd.DataFrame):
    """(run row, trace of its reconstruction stage) for each run whose trace has a PSNR column."""
    for _, r in dip.iterrows():
        t = load_trace(r["path"])
        if t.empty or "psnr" not in t:
            continue
        yield r, (t[t["step"] >= 1] if "step" in t else t)


def psnr_curves(runs: pd.DataFrame, title: str, out: Path, log_x: bool = False) -> Path | None:
    """One panel per (setting, image); a line per DIP run (colour = method); markers
    at each run's peak, early-stop pick and final iterate; baselines as dashed lines. Only
    runs with a ground truth (the others have no PSNR: see :func:`residual_curves`).
    ``log_x``: iterations on a log axis (the early climb, Survey A Fig. 1)."""
    done = runs[runs["status"] == RunState.FINISHED]
    done = done[has_ground_truth(done)]  # DIP runs and baselines (drawn as dashed lines)
    traces = []
    for r, t in _dip_psnr_traces(done[done["kind"] == MethodKind.DIP]):
        named = [c for c in t.columns if c.startswith("psnr_") and c != "psnr_ema"]  # named iterates (u, …)
        for column in ["psnr", *named]:
            part = t[["step", column]].dropna().rename(columns={column: "psnr"})
            traces.append(part.assign(method=r["method_label"], run=f"{r['run_id']}/{column}", seed=r["run.seed"],
                                      iterate="x" if column == "psnr" else column.removeprefix("psnr_"),
                                      panel=panel_name(r["setting"], r["image"])))
    if not traces:
        return None
    data = pd.concat(traces, ignore_index=True)
    panels = list(dict.fromkeys(data["panel"]))
    methods = sorted(data["method"].unique())
    palette = dict(zip(methods, sns.color_palette("tab10" if len(methods) <= 10 else "tab20", len(methods))))
    style = {"style": "iterate"} if data["iterate"].nunique() > 1 else {}
    grid = sns.relplot(data=data, x="step", y="psnr", hue="method", units="run", estimator=None, kind="line", **style,
                       col="panel", col_order=panels, col_wrap=min(3, len(panels)), **_grid_size(len(panels)),
                       palette=palette, linewidth=1, alpha=0.85, facet_kws={"sharey": False})
    for panel, ax in zip(panels, grid.axes.flat):
        if log_x:
            ax.set_xscale("log")
        in_panel = done.assign(panel=[panel_name(s, i) for s, i in zip(done["setting"], done["image"])])
        in_panel = in_panel[in_panel["panel"] == panel]
        for _, r in in_panel.iterrows():
            if r["kind"] == MethodKind.BASELINE:
                ax.axhline(r["final_psnr"], ls="--", lw=0.8, color="grey")
                ax.annotate(r["method_label"], (ax.get_xlim()[0], r["final_psnr"]), fontsize=6, color="grey", va="bottom")
                continue
            if r["method_label"] not in palette:  # no readable trace: no curve to mark
                continue
            for mark, (step_key, psnr_key, marker) in marks(done).items():
                if pd.notna(r.get(step_key)) and pd.notna(r.get(psnr_key)):
                    ax.scatter(r[step_key], r[psnr_key], marker=marker, s=28, color=palette[r["method_label"]],
                               edgecolor="black", linewidths=0.5, zorder=5, label=None)
        ax.set_title(panel, fontsize=8)
        ax.set_xlabel("iteration (log scale)" if log_x else "iteration")
        ax.set_ylabel("PSNR [dB]")
    handles = [plt.Line2D([], [], marker=m, ls="", color="black", label=k) for k, (_, _, m) in marks(done).items()]
    _legend_outside(grid, handles)
    return save_figure(grid.figure, title, out, y=1.02)


def mean_psnr_curves(runs: pd.DataFrame, title: str, out: Path) -> Path | None:
    """Mean ± sd PSNR over images and seeds vs iteration, one line per method, one panel per
    setting (Survey A Fig. 6); only drawn when some method has runs on two or more images."""
    done = runs[(runs["status"] == RunState.FINISHED) & (runs["kind"] == MethodKind.DIP)]
    done = done[has_ground_truth(done)]
    if done.empty or done.groupby(["setting", "method_label"])["run_id"].nunique().max() < 2:
        return None  # a band needs two runs (images or seeds) of one method
    traces = []
    for r, t in _dip_psnr_traces(done):
        t = t[["step", "psnr"]].dropna()
        traces.append(t.assign(method=r["method_label"], setting=r["setting"]))
    if not traces:
        return None
    data = pd.concat(traces, ignore_index=True)
    methods = sorted(data["method"].unique())
    palette = dict(zip(methods, sns.color_palette("tab10" if len(methods) <= 10 else "tab20", len(methods))))
    settings = list(dict.fromkeys(data["setting"]))
    grid = sns.relplot(data=data, x="step", y="psnr", hue="method", kind="line", errorbar="sd", col="setting",
                       col_order=settings, col_wrap=min(2, len(settings)), **_grid_size(len(settings)), palette=palette,
                       linewidth=1, facet_kws={"sharey": False})
    for ax in grid.axes.flat:
        ax.set_xlabel("iteration")
        ax.set_ylabel("PSNR [dB], mean ± sd over images and seeds")
        ax.set_title(ax.get_title(), fontsize=8)
    _legend_outside(grid, [])
    return save_figure(grid.figure, title, out, y=1.02)


def loss_curves(runs: pd.DataFrame, title: str, out: Path) -> Path | None:
    """Each DIP run's training loss vs iteration (log scale), one panel per (setting, image)."""
    return residual_curves(runs, title, out, column="loss", label="training loss")


def residual_curves(runs: pd.DataFrame, title: str, out: Path, column: str = keys.RESIDUAL,
                    label: str = "‖Ax − y‖₂") -> Path | None:
    """Data residual ‖Ax − y‖₂ vs iteration (log scale), one panel per (setting, image), a
    line per DIP run, with its early-stop pick (●, the primary rule) and final iterate (■)
    marked and baselines' residuals dashed. Needs no ground truth."""
    done = runs[runs["status"] == RunState.FINISHED]
    dip = done[done["kind"] == MethodKind.DIP]
    traces = []
    for _, r in dip.iterrows():
        t = load_trace(r["path"])
        if t.empty or column not in t:
            continue  # runs stored before the residual was traced
        t = t[t["step"] >= 1] if "step" in t else t
        traces.append(t[["step", column]].dropna().assign(
            method=r["method_label"], run=r["run_id"], panel=panel_name(r["setting"], r["image"])))
    if not traces:
        return None
    data = pd.concat(traces, ignore_index=True)
    panels = list(dict.fromkeys(data["panel"]))
    methods = sorted(data["method"].unique())
    palette = dict(zip(methods, sns.color_palette("tab10" if len(methods) <= 10 else "tab20", len(methods))))
    grid = sns.relplot(data=data, x="step", y=column, hue="method", units="run", estimator=None, kind="line",
                       col="panel", col_order=panels, col_wrap=min(3, len(panels)), **_grid_size(len(panels)),
                       palette=palette, linewidth=1, alpha=0.85, facet_kws={"sharey": False})
    rule = primary_rule(done)
    points = {**({f"early stop ({rule})": (keys.es(rule, "step"), keys.es(rule, "data_residual"), "o")} if rule else {}),
              "final": (keys.FINAL_STEP, keys.FINAL_RESIDUAL, "s")} if column == keys.RESIDUAL else {}
    in_panel = done.assign(panel=[panel_name(s, i) for s, i in zip(done["setting"], done["image"])])
    for panel, ax in zip(panels, grid.axes.flat):
        for _, r in in_panel[in_panel["panel"] == panel].iterrows():
            if r["kind"] == MethodKind.BASELINE:
                if column == keys.RESIDUAL and pd.notna(r.get(keys.FINAL_RESIDUAL)):
                    ax.axhline(r[keys.FINAL_RESIDUAL], ls="--", lw=0.8, color="grey")
                    ax.annotate(r["method_label"], (ax.get_xlim()[0], r[keys.FINAL_RESIDUAL]), fontsize=6, color="grey",
                                va="bottom")
                continue
            if r["method_label"] not in palette:
                continue
            for step_key, value_key, marker in points.values():
                if pd.notna(r.get(step_key)) and pd.notna(r.get(value_key)):
                    ax.scatter(r[step_key], r[value_key], marker=marker, s=28, color=palette[r["method_label"]],
                               edgecolor="black", linewidths=0.5, zorder=5, label=None)
        if (data.loc[data["panel"] == panel, column] > 0).all():
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=8)
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
    handles = [plt.Line2D([], [], marker=m, ls="", color="black", label=k) for k, (_, _, m) in points.items()]
    _legend_outside(grid, handles)
    return save_figure(grid.figure, f"{title}\n{'data residual' if column == keys.RESIDUAL else label} vs iteration", out,
                 y=1.04)


def _display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    if img.shape[0] == 2:  # complex as 2 channels → magnitude
        return np.hypot(img[0], img[1]), "gray"
    if img.shape[0] == 1:
        return img[0], "gray"
    return np.clip(np.moveaxis(img[:3], 0, -1), 0, 1), None


def reconstruction_panel(runs: pd.DataFrame, title: str, out: Path) -> Path | None:
    """GT, degraded and each DIP method's peak / early-stopped / final image (first seed).
    Runs without a ground truth have no GT and no peak image (their cells say so; the
    columns are left out if no run has them)."""
    done = runs[runs["status"] == RunState.FINISHED]
    if done.empty or not (done["kind"] == MethodKind.DIP).any():
        return None
    # DIP methods, then the baselines (their one image in the "final" column)
    done = done.assign(_baseline=done["kind"] == MethodKind.BASELINE).sort_values(
        ["_baseline", "method_label", "setting", "image", "run.seed"], kind="stable")
    first = done.groupby(["setting", "image", "method_label"], sort=False).head(1)
    rule = primary_rule(done)
    with_gt = has_ground_truth(first)
    columns = ["gt", "degraded", "peak", "early_stopped", "final"] if with_gt.any() else ["degraded", "early_stopped", "final"]
    stored = {"early_stopped": keys.es_image(rule)}  # image names in images.npz
    fig, axes = plt.subplots(len(first), len(columns), figsize=(2.0 * len(columns), 2.1 * len(first)), squeeze=False,
                             layout="constrained")
    for row_axes, (_, r) in zip(axes, first.iterrows()):
        path = Path(r["path"]) / "images.npz"
        images = np.load(path) if path.exists() else {}
        for ax, key in zip(row_axes, columns):
            ax.axis("off")
            if stored.get(key, key) in images:
                img, cmap = _display(images[stored.get(key, key)])
                ax.imshow(img, cmap=cmap, vmin=0 if cmap else None, vmax=float(np.max(img)) if cmap else None)
            elif key in ("gt", "peak") and not with_gt[r.name]:
                ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            elif r["_baseline"] and key in ("peak", "early_stopped"):
                ax.text(0.5, 0.5, "baseline:\none image (final)", ha="center", va="center", fontsize=7, color="#666",
                        transform=ax.transAxes)
            elif key == "early_stopped" and rule:
                ax.text(0.5, 0.5, f"{rule}\ndid not stop", ha="center", va="center", fontsize=7, color="#666",
                        transform=ax.transAxes)
            psnr = {"peak": None if r["_baseline"] else r.get(keys.PEAK_PSNR),
                    "early_stopped": r.get(keys.es(rule, "psnr")) if rule and not r["_baseline"] else None,
                    "final": r.get(keys.FINAL_PSNR), "degraded": r.get(keys.DEGRADED_PSNR)}.get(key)
            label = key.replace("_", " ") + (f"\n{psnr:.2f} dB" if psnr is not None and pd.notna(psnr) else "")
            ax.set_title(label, fontsize=7)
        row_axes[0].text(-0.1, 0.5, f"{r['method_label']}\n{r['image']}", transform=row_axes[0].transAxes,
                         rotation=90, va="center", ha="right", fontsize=6)
    return save_figure(fig, title, out)
