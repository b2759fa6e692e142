"""The NTK experiments from stored runs: A-F4 (Survey A Fig. 4: DIP on a 1-D signal vs the NTK
filter of eq. (6), the NTK's singular values, its condition number per depth) and B-F3
(Survey B Fig. 3: top NTK eigenvectors for random vs FBP input, the untrained output, and the
fraction of the ground truth's energy in the span of the top-k eigenvectors).

Runs of ``ntk_filter`` are paired with the ``vanilla_dip`` run they mirror (same dataset,
seed, run length and every shared method setting); runs of ``ntk_eigen`` are paired by
input (noise vs fbp) over the same dataset, seed and network. Everything is read from the
run store (traces, metrics, images.npz); the ground truth enters only here.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.results import RunState  # noqa: E402
from reports.collect import load_trace  # noqa: E402
from reports.figures import save_figure  # noqa: E402  (one title/caption layout for every figure)
from reports.sections import SuitePage, register_section  # noqa: E402

FILTER, DIP, EIGEN = "ntk_filter", "vanilla_dip", "ntk_eigen"
ENERGY_AT = (1, 4, 16, 64)  # k shown in the tables
_OWN_KEYS = {"method.name", "method.max_size", "method.optimizer", "method.grad_clip"}  # checked separately below


def _done(runs: pd.DataFrame, method: str) -> pd.DataFrame:
    if runs.empty or "method.name" not in runs:
        return runs.iloc[0:0]
    return runs[(runs["status"] == RunState.FINISHED) & (runs["method.name"] == method)]


def _same(a: pd.Series, b: pd.Series, columns) -> bool:
    for c in columns:
        va, vb = a.get(c), b.get(c)
        if pd.isna(va) and pd.isna(vb):
            continue
        if str(va) != str(vb):
            return False
    return True


def filter_pairs(runs: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(vanilla DIP run, NTK filter run) pairs with the same setting; the DIP run must use plain
    gradient descent without clipping, as eq. (5) assumes."""
    ntk, dip = _done(runs, FILTER), _done(runs, DIP)
    if ntk.empty or dip.empty:
        return []
    dip = dip[(dip["method.optimizer"] == "sgd") & dip["method.grad_clip"].isna()]
    shared = [c for c in runs.columns if c.startswith(("method.", "dataset.", "run.")) and c not in _OWN_KEYS
              and not c.startswith("method.preset")]
    pairs = []
    for _, n in ntk.iterrows():
        for _, d in dip.iterrows():
            own = [c for c in shared if not (c.startswith("method.") and (pd.isna(n.get(c)) or pd.isna(d.get(c))))]
            if _same(n, d, own):
                pairs.append((d, n))
    return pairs


def _psnr(row: pd.Series) -> pd.Series:
    t = load_trace(row["path"])
    if t.empty or "psnr" not in t:
        return pd.Series(dtype=float)
    t = t[t["step"] >= 1]
    return t.set_index("step")["psnr"].dropna()


def curve_agreement(dip: pd.Series, ntk: pd.Series) -> dict:
    """|PSNR_DIP(t) − PSNR_NTK(t)| over the iterations both traced (max and mean), and both peaks."""
    a, b = _psnr(dip), _psnr(ntk)
    common = a.index.intersection(b.index)
    diff = (a[common] - b[common]).abs()
    depth = ntk.get("method.net.hidden_layers")
    return {"setting": _setting(ntk), "depth": int(depth) if pd.notna(depth) else None, "iterations": len(common),
            "max_abs_db": float(diff.max()) if len(diff) else float("nan"),
            "mean_abs_db": float(diff.mean()) if len(diff) else float("nan"),
            "noisy": float(dip.get("degraded_psnr", float("nan"))),
            "dip_peak": float(dip["peak_psnr"]), "dip_peak_step": int(dip["peak_step"]),
            "ntk_peak": float(ntk["peak_psnr"]), "ntk_peak_step": int(ntk["peak_step"])}


def _array(row: pd.Series, key: str) -> np.ndarray | None:
    path = Path(row["path"]) / "images.npz"
    if not path.exists():
        return None
    with np.load(path) as images:
        return images[key] if key in images else None


def energy_fractions(row: pd.Series) -> np.ndarray | None:
    """E(k) = ‖V_kᵀ x‖² / ‖x‖² for k = 1 … K: the share of the ground truth's energy in the span
    of the top-k NTK eigenvectors of an ``ntk_eigen`` run (None without stored images)."""
    basis, gt = _array(row, "ntk_basis"), _array(row, "gt")
    if basis is None or gt is None:
        return None
    v = basis.reshape(basis.shape[0], -1).astype(np.float64)  # (K, n), orthonormal rows
    x = gt.reshape(-1).astype(np.float64)
    return np.cumsum((v @ x) ** 2) / float(x @ x)


def eigen_pairs(runs: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(random-input run, FBP-input run) pairs of ``ntk_eigen`` with the same dataset, seed and network."""
    eig = _done(runs, EIGEN)
    if eig.empty:
        return []
    shared = [c for c in runs.columns if c.startswith(("method.", "dataset.")) and c != "method.input"
              and not c.startswith("method.preset")]
    noise, fbp = eig[eig["method.input"] == "noise"], eig[eig["method.input"] == "fbp"]
    return [(a, b) for _, a in noise.iterrows() for _, b in fbp.iterrows() if _same(a, b, shared)]


def eigen_comparison(noise: pd.Series, fbp: pd.Series) -> dict | None:
    """Energy fractions of both inputs and the share of k at which the FBP input's is higher."""
    en, ef = energy_fractions(noise), energy_fractions(fbp)
    if en is None or ef is None:
        return None
    k = min(len(en), len(ef))
    return {"k": k, "noise": en[:k], "fbp": ef[:k], "fbp_higher": float(np.mean(ef[:k] > en[:k]))}


# -- report ------------------------------------------------------------------------------------
def _label(row: pd.Series) -> str:
    net = row.get("method.net.name")
    depth = row.get("method.net.hidden_layers")
    return f"{net}, {int(depth)} hidden layers" if pd.notna(depth) else str(net)


def _setting(row: pd.Series) -> str:
    """The report's setting label, else the dataset (and which signal)."""
    if pd.notna(row.get("setting")):
        return str(row["setting"])
    signal = row.get("dataset.signal")
    return str(row.get("dataset.name")) + (f" ({signal})" if pd.notna(signal) else "")


def _provenance(rows) -> str:
    return "; ".join(sorted({str(r.get("provenance")) for r in rows if pd.notna(r.get("provenance"))}))


def filter_figure(runs: pd.DataFrame, title: str, out: Path) -> Path | None:
    """A-F4, one row per dataset setting: the clean and noisy signal, PSNR vs iteration of DIP
    (solid) and its NTK filter (dashed), and the NTK's singular values per network (log scale,
    condition number in the legend)."""
    pairs, ntk = filter_pairs(runs), _done(runs, FILTER)
    if ntk.empty:
        return None
    settings = list(dict.fromkeys(_setting(n) for _, n in ntk.iterrows()))
    fig, axes = plt.subplots(len(settings), 3, figsize=(13, 3.4 * len(settings)), squeeze=False)
    for row_axes, setting in zip(axes, settings):
        here = [(d, n) for d, n in pairs if _setting(n) == setting]
        filters = sorted((n for _, n in ntk.iterrows() if _setting(n) == setting),
                         key=lambda n: str(n.get("method.net.hidden_layers")).zfill(8))
        shown = next((r for r in [*(d for d, _ in here), *filters] if _array(r, "gt") is not None), None)
        if shown is not None:
            row_axes[0].plot(_array(shown, "degraded").reshape(-1), lw=0.7, color="grey", label="noisy y")
            row_axes[0].plot(_array(shown, "gt").reshape(-1), lw=1.2, color="black", label="clean x")
            row_axes[0].legend(fontsize=7)
        row_axes[0].set_title(setting, fontsize=8)
        for i, (d, n) in enumerate(here):
            for row, style, who in ((d, "-", "DIP (GD)"), (n, "--", "NTK filter eq. (6)")):
                p = _psnr(row)
                row_axes[1].plot(p.index, p.values, style, color=f"C{i}", lw=1.1, label=f"{who}, {_label(row)}")
        if shown is not None and pd.notna(shown.get("degraded_psnr")):
            row_axes[1].axhline(float(shown["degraded_psnr"]), ls=":", lw=0.8, color="grey", label="noisy y")
        row_axes[1].set_xlabel("iteration")
        row_axes[1].set_ylabel("PSNR [dB]")
        row_axes[1].set_title("DIP vs NTK filter", fontsize=8)
        row_axes[1].legend(fontsize=6)
        for n in filters:
            values = np.asarray(n.get("ntk_singular_values") or [], dtype=float)
            if values.size:
                row_axes[2].semilogy(np.arange(1, values.size + 1), values, lw=1.1,
                                     label=f"{_label(n)}: κ = {float(n['ntk_condition_number']):.3g}")
        row_axes[2].set_xlabel("index")
        row_axes[2].set_ylabel("singular value of K = J Jᵀ")
        row_axes[2].set_title("NTK spectrum at initialisation", fontsize=8)
        row_axes[2].legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, f"{title}: {_provenance(r for _, r in ntk.iterrows())}\nA-F4: DIP vs NTK filter (Survey A Fig. 4)",
                 out, y=1.04)  # above the panel titles (tight_layout leaves no room for a suptitle)


def eigen_figure(runs: pd.DataFrame, title: str, out: Path) -> Path | None:
    """B-F3: per input (random, FBP) the untrained output and the top NTK eigenvectors, the ground
    truth, and the energy fraction E(k) of both inputs."""
    pairs = eigen_pairs(runs)
    rows = [r for pair in pairs for r in pair] or list(_done(runs, EIGEN).iterrows())
    rows = [r[1] if isinstance(r, tuple) else r for r in rows]
    if not rows:
        return None
    show = max(int(r.get("method.show") or 4) for r in rows)
    fig, axes = plt.subplots(len(rows) + 1, show + 2, figsize=(1.9 * (show + 2), 2.0 * (len(rows) + 1)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    gt = _array(rows[0], "gt")
    if gt is not None:
        axes[-1, 0].imshow(gt[0], cmap="gray")
        axes[-1, 0].set_title("ground truth", fontsize=7)
    for r_axes, row in zip(axes, rows):
        final = _array(row, "final")
        if final is not None:
            r_axes[0].imshow(final[0], cmap="gray")
            r_axes[0].set_title(f"untrained output\n{float(row['final_psnr']):.1f} dB", fontsize=7)
        values = row.get("ntk_eigenvalues") or []
        for i in range(show):
            vec = _array(row, f"ntk_eigvec_{i + 1}")
            if vec is not None:
                lim = float(np.abs(vec[0]).max()) or 1.0
                r_axes[i + 1].imshow(vec[0], cmap="RdBu_r", vmin=-lim, vmax=lim)
                r_axes[i + 1].set_title(f"v{i + 1}, λ = {values[i]:.3g}" if i < len(values) else f"v{i + 1}", fontsize=7)
        r_axes[0].text(-0.15, 0.5, f"input: {row['method.input']}", transform=r_axes[0].transAxes, rotation=90,
                       va="center", ha="right", fontsize=7)
    energy = axes[-1, -1]
    energy.axis("on")
    for noise, fbp in pairs:
        result = eigen_comparison(noise, fbp)
        if result:
            k = np.arange(1, result["k"] + 1)
            energy.plot(k, result["noise"], label="random input")
            energy.plot(k, result["fbp"], label="FBP input")
    energy.set_xlabel("k", fontsize=7)
    energy.set_title("GT energy in span(v1…vk)", fontsize=7)
    energy.tick_params(labelsize=6)
    if pairs:
        energy.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, f"{title}: {_provenance(rows)}\nB-F3: NTK eigenvectors, random vs FBP input (Survey B Fig. 3)", out,
                 y=1.02)


def theory_figures(runs: pd.DataFrame, title: str, folder: Path) -> list[Path]:
    """The A-F4 and B-F3 figures of a suite that has such runs (none otherwise); ``title`` starts with the
    suite's name (each figure adds the provenance of the runs it draws)."""
    title = title.split(":")[0]
    figures = [filter_figure(runs, title, folder / "ntk_filter.png"), eigen_figure(runs, title, folder / "ntk_eigen.png")]
    return [f for f in figures if f]


def theory_markdown(runs: pd.DataFrame) -> list[str]:
    """Tables of the measured NTK quantities for a suite's page (empty without NTK runs)."""
    md = []
    ntk = _done(runs, FILTER)
    if len(ntk):
        rows = [{"setting": _setting(n), "network": _label(n), "n": n.get("ntk_size"), "λ_max": max(n["ntk_singular_values"]),
                 "λ_min": min(n["ntk_singular_values"]), "condition number": n["ntk_condition_number"]}
                for _, n in ntk.iterrows()]
        md += ["", "## A-F4: the NTK K = J Jᵀ at initialisation", "", pd.DataFrame(rows).to_markdown(index=False,
                                                                                                   floatfmt=".4g")]
        agreement = [curve_agreement(d, n) for d, n in filter_pairs(runs)]
        if agreement:
            md += ["", "DIP (plain gradient descent) vs the NTK filter of eq. (6) with the same η, seed and network: "
                   "|PSNR_DIP(t) − PSNR_NTK(t)| over the traced iterations.", "",
                   pd.DataFrame(agreement).to_markdown(index=False, floatfmt=".3g")]
    rows = []
    for noise, fbp in eigen_pairs(runs):
        result = eigen_comparison(noise, fbp)
        if result:
            for name, values in (("random", result["noise"]), ("FBP", result["fbp"])):
                run = noise if name == "random" else fbp
                rows.append({"input": name, **{f"E({k})": values[k - 1] for k in ENERGY_AT if k <= result["k"]},
                             "FBP higher at": f"{result['fbp_higher']:.0%} of k = 1…{result['k']}",
                             "max residual ‖Kv − λv‖/λ": max(run.get("ntk_eigen_residuals") or [float("nan")]),
                             "eigensolver": run.get("ntk_eigen_method")})
    if rows:
        md += ["", "## B-F3: ground-truth energy in the span of the top-k NTK eigenvectors", "",
               "E(k) = ‖V_kᵀ x‖² / ‖x‖² (x the ground truth, V_k the top-k eigenvectors of J Jᵀ at initialisation).", "",
               pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f")]
    return md


@register_section("theory", "A-F4 NTK filter vs DIP and B-F3 NTK eigenvectors, when the suite has NTK runs")
def _theory_section(page: SuitePage) -> None:
    page.md += theory_markdown(page.runs)
    page.figures += theory_figures(page.runs, page.title, page.folder)
