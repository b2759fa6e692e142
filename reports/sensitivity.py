"""Sensitivity curves: per method and task family, the peak, early-stopped and final PSNR of
its calibration trials against each tunable (log x-axis where the tunable is log-scaled),
the chosen value marked. Drawn from the trial tables that ``benchmark tune`` writes beside
each preset (``methods/presets/<family>/<method>.table.csv``), so a fresh clone renders them
too; a method that declares tunables but has no table for a family is listed with the
command that makes one."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import methods.presets as presets  # noqa: E402
from core.schema import tunables  # noqa: E402
from datamodules.registry import FAMILIES  # noqa: E402
from methods.registry import METHODS  # noqa: E402

CURVES = {"peak_psnr": "peak (oracle)", "es_psnr": "early-stopped", "final_psnr": "final"}


def sensitivity_figure(table: pd.DataFrame, method: str, family: str, out: Path) -> Path:
    """One panel per tunable: mean PSNR over the calibration images (thin: each image)."""
    declared = tunables(METHODS[method].config)
    names = [c for c in declared if c in table.columns]
    chosen = table[table["chosen"]].iloc[0] if table["chosen"].any() else None
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        others = [n for n in names if n != name]
        rows = table if chosen is None else table[(table[others] == chosen[others]).all(axis=1)] if others else table
        for i, (column, label) in enumerate(CURVES.items()):
            values = pd.to_numeric(rows[column], errors="coerce")
            mean = values.groupby(rows[name]).mean()
            ax.plot(mean.index, mean.values, marker="o", color=f"C{i}", label=label)
            for _, image_rows in rows.assign(v=values).groupby("calibration_image"):
                ax.plot(image_rows[name], image_rows["v"], color=f"C{i}", alpha=0.25, linewidth=0.8)
        if chosen is not None:
            ax.axvline(chosen[name], color="k", linestyle=":", label=f"chosen {chosen[name]:g} ({chosen['rule']})")
        if declared[name].scale == "log":
            ax.set_xscale("log")
        ax.set_xlabel(f"{method}.{name}")
        ax.set_ylabel("PSNR [dB]")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    images = ", ".join(sorted(table["calibration_image"].astype(str).unique()))
    fig.suptitle(f"{method}, {family} calibration data\n({images}; dots: mean, thin: each image)", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_sensitivity(out: Path, root: Path | None = None) -> list[Path]:
    """Every sensitivity figure and ``sensitivity.md`` (chosen values, their sources, and the
    methods with tunables that are not calibrated for a family yet)."""
    root = root or presets.PRESETS_DIR
    written, lines = [], ["# Sensitivity of each method to its tuned settings", "",
                          "From the calibration trials of `python -m benchmark tune` (tables beside the presets in "
                          "`methods/presets/`). Calibration data are never the evaluated measurements.", ""]
    tunable_methods = sorted(n for n, spec in METHODS.items() if tunables(spec.config))
    families = sorted({p.parent.name for p in root.glob("*/*.table.csv")} | set(FAMILIES))
    for family in families:
        lines += [f"## {family}", ""]
        missing = []
        for method in tunable_methods:
            table_path = root / family / f"{method}.table.csv"
            if not table_path.is_file():
                missing.append(method)
                continue
            table = pd.read_csv(table_path)
            figure = sensitivity_figure(table, method, family, out / "sensitivity" / f"{family}__{method}.png")
            written.append(figure)
            values = presets.load_preset(method, family, METHODS[method].config, root)
            chosen = ", ".join(f"{k} = {v.value:g}" if isinstance(v.value, (int, float)) else f"{k} = {v.value}"
                               for k, v in values.items() if k in table.columns)
            lines += [f"### {method}: {chosen}", "", f"![{method}](sensitivity/{figure.name})", "",
                      *[f"- `{k}`: {v.source}" for k, v in values.items()], ""]
        if missing:
            lines += [f"Not calibrated for {family} yet (their defaults or paper presets apply): "
                      + ", ".join(f"`{m}`" for m in missing) + f" — `python -m benchmark tune METHOD --family {family}`.",
                      ""]
    path = out / "sensitivity.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return [path, *written]
