"""PSNR-vs-iteration figures (seaborn) with peak, early-stop and final marked, and
reconstruction panels (GT / degraded / peak / early-stopped / final)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from reports.collect import load_trace  # noqa: E402

MARKS = {"peak": ("peak_step", "peak_psnr", "^"), "early stop": ("es_step", "es_psnr", "o"), "final": ("final_step", "final_psnr", "s")}


def psnr_curves(runs: pd.DataFrame, title: str, out: Path) -> Path | None:
    """One panel per (setting, image); a line per DIP run (colour = method); markers
    at each run's peak, early-stop pick and final iterate; baselines as dashed lines."""
    done = runs[runs["status"] == "finished"]
    dip = done[done["kind"] == "dip"]
    if dip.empty:
        return None
    traces = []
    for _, r in dip.iterrows():
        t = load_trace(r["path"])
        if not t.empty:
            t = t[["step", "psnr"]].assign(method=r["method_label"], run=r["run_id"], seed=r["run.seed"],
                                          panel=f"{r['setting']} | {r['image']}")
            traces.append(t)
    data = pd.concat(traces, ignore_index=True)
    panels = list(dict.fromkeys(data["panel"]))
    palette = dict(zip(sorted(data["method"].unique()), sns.color_palette("tab10")))
    grid = sns.relplot(data=data, x="step", y="psnr", hue="method", units="run", estimator=None, kind="line",
                       col="panel", col_order=panels, col_wrap=min(3, len(panels)), height=3.2, aspect=1.3,
                       palette=palette, linewidth=1, alpha=0.85, facet_kws={"sharey": False})
    for panel, ax in zip(panels, grid.axes.flat):
        in_panel = done.assign(panel=done["setting"] + " | " + done["image"].astype(str))
        in_panel = in_panel[in_panel["panel"] == panel]
        for _, r in in_panel.iterrows():
            if r["kind"] == "baseline":
                ax.axhline(r["final_psnr"], ls="--", lw=0.8, color="grey")
                ax.annotate(r["method_label"], (ax.get_xlim()[0], r["final_psnr"]), fontsize=6, color="grey", va="bottom")
                continue
            for mark, (step_key, psnr_key, marker) in MARKS.items():
                if pd.notna(r.get(step_key)) and pd.notna(r.get(psnr_key)):
                    ax.scatter(r[step_key], r[psnr_key], marker=marker, s=28, color=palette[r["method_label"]],
                               edgecolor="black", linewidths=0.5, zorder=5, label=None)
        ax.set_title(panel, fontsize=7)
        ax.set_xlabel("iteration")
        ax.set_ylabel("PSNR [dB]")
    handles = [plt.Line2D([], [], marker=m, ls="", color="black", label=k) for k, (_, _, m) in MARKS.items()]
    grid.figure.legend(handles=handles, loc="lower right", fontsize=7, frameon=False)
    grid.figure.suptitle(title, fontsize=9, y=1.02)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(grid.figure)
    return out


def _display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    if img.shape[0] == 2:  # complex as 2 channels → magnitude
        return np.hypot(img[0], img[1]), "gray"
    if img.shape[0] == 1:
        return img[0], "gray"
    return np.clip(np.moveaxis(img[:3], 0, -1), 0, 1), None


def reconstruction_panel(runs: pd.DataFrame, title: str, out: Path) -> Path | None:
    """GT, degraded and each DIP method's peak / early-stopped / final image (first seed)."""
    done = runs[(runs["status"] == "finished") & (runs["kind"] == "dip")]
    if done.empty:
        return None
    first = done.sort_values("run.seed").groupby(["setting", "image", "method_label"], sort=False).head(1)
    columns = ["gt", "degraded", "peak", "early_stopped", "final"]
    fig, axes = plt.subplots(len(first), len(columns), figsize=(2.0 * len(columns), 2.1 * len(first)), squeeze=False)
    for row_axes, (_, r) in zip(axes, first.iterrows()):
        path = Path(r["path"]) / "images.npz"
        images = np.load(path) if path.exists() else {}
        for ax, key in zip(row_axes, columns):
            ax.axis("off")
            if key in images:
                img, cmap = _display(images[key])
                ax.imshow(img, cmap=cmap, vmin=0 if cmap else None, vmax=float(np.max(img)) if cmap else None)
            psnr = {"peak": r.get("peak_psnr"), "early_stopped": r.get("es_psnr"), "final": r.get("final_psnr"),
                    "degraded": r.get("degraded_psnr")}.get(key)
            label = key.replace("_", " ") + (f"\n{psnr:.2f} dB" if psnr is not None and pd.notna(psnr) else "")
            ax.set_title(label, fontsize=7)
        row_axes[0].text(-0.1, 0.5, f"{r['method_label']}\n{r['image']}", transform=row_axes[0].transAxes,
                         rotation=90, va="center", ha="right", fontsize=6)
    fig.suptitle(title, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out
