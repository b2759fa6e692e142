"""Calibration: tune a method's declared tunables (``core.schema.Tunable``) for one task
family on *calibration* measurements, never on the measurements the evaluation suites
report, and write the family preset (methods/presets.py) with its provenance.

Protocol per family (:data:`PROTOCOLS`): the calibration datasets, and the settings shared by
every trial, which mirror the family's CPU evaluation twin (same network, optimiser,
learning rate, size and noise level) so that a tuned weight means the same there (a method
with its own network, e.g. the Deep Random Projector, keeps its network and optimiser). The
search is a grid over the tunables (``Tunable.grid``, log or linear; the product grid for
two), every trial an ordinary run of the suite ``tune__<method>__<family>`` in the run
store: resumable after a kill, on any executor. The choice follows a stated rule:

- ``peak``: the best mean oracle peak PSNR over the calibration images (the surveys' rule);
- ``es``: the best mean early-stopped PSNR (running variance), usable without ground truth.

A trial that failed (diverged) ranks last. The table of every trial is written beside the
preset (``<method>.table.csv``) and the report draws it as sensitivity curves.
"""
from __future__ import annotations

import datetime
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.config import ConfigError
from benchmark.store import RunStore, inspect_folder
from benchmark.suites import Suite, expand
from core import keys
from core.results import RunState
from core.schema import tunables
from methods.networks import UNetConfig
from methods.presets import PRESETS_DIR, PresetValue, preset_path, write_preset
from methods.registry import METHODS

RULES = {"peak": keys.PEAK_PSNR, "es": keys.es("running_variance", "psnr")}
MRI_STEPS = 2000
MRI_STEPS_WHY = ("mri_quick's budget: vanilla DIP still rises at 2000 iterations on both calibration images, peak "
                 "30.9 / 32.3 dB at iteration ≈ 1990, measured 2026-12-07, so a shorter run would rank the weights by "
                 "how fast they fit rather than by where they lead")
TWIN_NET = {"name": "unet", "scales": 5, "channels": 32, "skip_channels": [4, 4, 4, 4, 4]}


@dataclass(frozen=True)
class Protocol:
    family: str
    description: str
    datasets: list[dict]
    settings: dict = field(default_factory=dict)  # dotted keys shared by every trial
    points: int = 5  # grid points per tunable


PROTOCOLS = {
    "ct": Protocol(
        "ct",
        "CT calibration: the real head CT of pydicom-data and a random-ellipse phantom (not the walnut), each "
        "measured like survey_b_table2_quick (walnut scanner fan beam, 60 angles, 64², 15 % noise; simulated); the "
        "twin's network and optimiser (5-scale 32-channel U-Net, AMSGrad lr 0.02), 1500 iterations (the twin's "
        "vanilla DIP peaks near 1500)",
        datasets=[{"name": "ct_calibration", "image": "head", "image_size": 64, "noise": 0.15},
                  {"name": "ct_calibration", "image": "ellipses", "image_size": 64, "noise": 0.15}],
        settings={"method.lr": 0.02, "method.optimizer": "amsgrad", "method.net": TWIN_NET,
                  "run.max_steps": 1500, "run.stopping.running_variance.patience": 500},
        points=4,
    ),
    "natural": Protocol(
        "natural",
        "natural-image calibration: Gaussian denoising σ = 25/255 of two CBSD68 photos in no evaluation image set "
        "(0003, 0005: datamodules/sources/image_sets.py lists the evaluated ones; 64² centre crops; simulated noise; "
        "needs CBSD68, `make data-cbsd68`), the house CPU setting of the natural suites (default, natural_quick): "
        "5-scale 32-channel U-Net, Adam lr 0.01, 1500 iterations (vanilla DIP peaks near 450–600 there). The "
        "embedded scikit-image photos are all evaluated except camera and moon, whose 64² crops are grey and, for "
        "moon, nearly flat (std 0.05 under noise std 0.1)",
        datasets=[{"name": "denoising", "source": "cbsd68", "image": image, "crop": 64, "sigma": 25}
                  for image in ("0003", "0005")],
        settings={"method.lr": 0.01, "method.net": {"name": "unet", "scales": 5, "channels": 32,
                                                    "skip_channels": [0, 0, 0, 4, 4]},
                  "run.max_steps": 1500, "run.stopping.running_variance.patience": 300},
        points=4,
    ),
    "mri": Protocol(
        "mri",
        "MRI calibration: 4× Cartesian multi-coil MRI (15 simulated coil maps, simulated k-space and noise) of the two "
        "embedded real MR images that no MRI suite evaluates (the abdomen of pydicom-data and pydicom's small head; "
        "the MRI suites evaluate the shoulder or fastMRI data), measured like mri_quick (64², 4× equispaced, 8 % centre "
        "lines; semi-synthetic); mri_quick's network and optimiser (4-scale 32-channel U-Net, Adam lr 0.01), "
        f"{MRI_STEPS} iterations ({MRI_STEPS_WHY})",
        datasets=[{"name": "fastmri_knee", "image": image, "crop": 64} for image in ("abdomen", "head_small")],
        settings={"method.lr": 0.01, "method.net": {"name": "unet", "scales": 4, "channels": 32,
                                                    "skip_channels": [0, 0, 4, 4]},
                  "run.max_steps": MRI_STEPS, "run.stopping.running_variance.patience": 300},
        points=4,
    ),
}


def tune_suite(method: str, family: str, points: int | None = None, overrides: dict | None = None,
               only: list[str] | None = None) -> Suite:
    """The trials of tuning ``method`` for ``family``, as an ordinary suite (``only``: a
    subset of its tunables; the others keep their preset or default)."""
    if family not in PROTOCOLS:
        raise ConfigError(f"no calibration protocol for family {family!r}; valid: {', '.join(PROTOCOLS)}")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(sorted(METHODS))}")
    declared = tunables(METHODS[method].config)
    if not declared:
        raise ConfigError(f"{method} declares no tunable settings (core.schema.Tunable in its config); nothing to tune")
    unknown = sorted(set(only or ()) - set(declared))
    if unknown:
        raise ConfigError(f"{method} has no tunable {', '.join(unknown)}; its tunables: {', '.join(declared)}")
    declared = {k: t for k, t in declared.items() if not only or k in only}
    protocol = PROTOCOLS[family]
    n = points or protocol.points
    settings = dict(protocol.settings)
    own = own_network(METHODS[method].config)
    if own:  # its weights were tuned for its own network and optimiser: the house U-Net's would mean something else
        settings = {k: v for k, v in settings.items() if k not in HOUSE_NETWORK_KEYS}
    ranges = ", ".join(f"{k} [{t.low:g}, {t.high:g}] ({t.scale})" for k, t in declared.items())
    raw = {"name": suite_name(method, family), "experiment": "calibration",
           "description": f"calibration of {method} for {family}: {protocol.description}"
                          f"{'; ' + method + ' keeps its own network and optimiser' if own else ''}; grid of {n} points "
                          f"per tunable over {ranges}",
           "methods": [method], "datasets": protocol.datasets, "seeds": [0], "set": settings,
           "grid": {f"method.{k}": t.grid(n) for k, t in declared.items()},
           "tune": {"method": method, "family": family, "tunables": list(declared)}}
    skipped: list = []
    runs = expand(raw, overrides or {}, f"tune {method} {family}", skipped)
    if not runs:
        reason = skipped[0][2] if skipped else "no runs"
        raise ConfigError(f"{method} cannot be tuned for {family}: {reason}")
    return Suite(raw["name"], raw["description"], runs, raw, skipped)


HOUSE_NETWORK_KEYS = ("method.net", "method.lr", "method.optimizer", "method.grad_clip")


def own_network(config_cls) -> bool:
    """Whether a method brings its own network (a default ``net`` other than the house U-Net, e.g.
    the Deep Random Projector's frozen skip network): its calibration keeps that network and its
    optimiser settings instead of the protocol's, as its evaluation runs do."""
    net = getattr(config_cls(), "net", None)
    return net is not None and not isinstance(net, UNetConfig)


def suite_name(method: str, family: str) -> str:
    return f"tune__{method}__{family}"  # one suite per method × family: trials of any grid are kept and reused


def trial_table(store: RunStore, suite: Suite) -> pd.DataFrame:
    """One row per trial of the suite: its tunable values, calibration image, status and
    peak / early-stopped / final PSNR."""
    names = suite.raw["tune"]["tunables"]
    datasets = [run.to_dict()["dataset"] for run in suite.runs]
    differing = [k for k in datasets[0] if len({repr(d.get(k)) for d in datasets}) > 1]  # what tells images apart
    rows = []
    for run, dataset in zip(suite.runs, datasets):
        state = inspect_folder(store.run_dir(suite.name, run))
        metrics = state.metrics if state.state == RunState.FINISHED else {}
        row = {k: getattr(run.method_cfg, k) for k in names}
        row.update({"calibration_image": "/".join(str(dataset[k]) for k in differing) or run.dataset,
                    "status": str(state.state),
                    "peak_psnr": metrics.get(keys.PEAK_PSNR), "peak_step": metrics.get(keys.PEAK_STEP),
                    "es_psnr": metrics.get(RULES["es"]), "final_psnr": metrics.get(keys.FINAL_PSNR),
                    "code": _code_of(metrics)})
        rows.append(row)
    return pd.DataFrame(rows)


def _code_of(metrics: dict) -> str | None:
    """The code version that computed a trial (short commit, '+' when uncommitted changes)."""
    code = metrics.get("code") or {}
    commit = code.get("git_commit")
    return None if not commit else commit[:10] + ("+" if code.get("git_dirty") else "")


def choose(table: pd.DataFrame, names: list[str], rule: str) -> tuple[dict, pd.DataFrame]:
    """The tunable values with the best mean PSNR under ``rule`` over the calibration images
    (a failed trial counts as −inf), and the per-setting summary it was chosen from."""
    column = {"peak": "peak_psnr", "es": "es_psnr"}[rule]
    scored = table.assign(score=pd.to_numeric(table[column], errors="coerce").fillna(-math.inf))
    summary = scored.groupby(names, as_index=False).agg(
        score=("score", "mean"), peak_psnr=("peak_psnr", "mean"), es_psnr=("es_psnr", "mean"),
        final_psnr=("final_psnr", "mean"), failed=("status", lambda s: int((s != RunState.FINISHED).sum())))
    best = summary.loc[summary["score"].idxmax()]
    if not math.isfinite(best["score"]):
        raise ConfigError(f"every trial failed or scored nothing under rule {rule!r}; see the suite's runs")
    values = {k: (int(best[k]) if isinstance(table[k].iloc[0], int) else float(best[k])) for k in names}
    return values, summary


def write_calibrated_preset(suite: Suite, table: pd.DataFrame, rule: str, root: Path | None = None) -> Path:
    """Choose by ``rule`` and write the preset and its trial table (``<method>.table.csv``)."""
    tune = suite.raw["tune"]
    method, family, names = tune["method"], tune["family"], tune["tunables"]
    values, summary = choose(table, names, rule)
    path = preset_path(method, family, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    table_path = path.with_suffix(".table.csv")
    table.assign(rule=rule, chosen=table[names].eq(pd.Series(values)).all(axis=1)).to_csv(table_path, index=False)
    codes = sorted({c for c in table["code"].dropna()}) or ["unknown"]
    commit = ", ".join(codes)  # of the trials ('+': with uncommitted changes)
    steps = suite.runs[0].run.max_steps
    project = PRESETS_DIR.parents[1]
    table_label = table_path.relative_to(project) if table_path.is_relative_to(project) else table_path
    source = (f"calibrated: suite {suite.name} ({len(table['calibration_image'].unique())} calibration images of "
              f"{family}, {steps} iterations), code {commit}, {datetime.date.today().isoformat()}, rule {rule} "
              f"(best mean {'peak' if rule == 'peak' else 'early-stopped'} PSNR), table {table_label}")
    points = len(next(iter(suite.raw["grid"].values())))
    command = f"python -m benchmark tune {method} --family {family} --rule {rule}" + (
        f" --points {points}" if points != PROTOCOLS[family].points else "") + (
        f" --tunables {' '.join(names)}" if set(names) != set(tunables(METHODS[method].config)) else "")
    comment = (f"Written by `{command}`; rerun it to change.\n"
               "Per setting (mean over the calibration images):\n"
               + summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    edges = [k for k in names if values[k] in (table[k].min(), table[k].max())]
    if edges:
        source += f"; at the edge of the searched range ({', '.join(edges)}): widen the Tunable range and rerun"
        print(f"warning: {method}: the chosen {', '.join(edges)} lies at the edge of the searched range; the best "
              "value may lie beyond it (widen the Tunable range in the config and rerun tune)", file=sys.stderr)
    cfg = suite.runs[0].dataset_cfg
    size = next((s for s in (getattr(cfg, k, None) for k in ("image_size", "crop")) if isinstance(s, int)), None)
    return write_preset(method, family, {k: PresetValue(v, source, size) for k, v in values.items()}, comment, root)
