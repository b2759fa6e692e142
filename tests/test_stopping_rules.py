"""Stopping rules (scoring/stopping.py): each stops where its definition says on hand-made
sequences, ES-WMV and Survey B's Algorithm 2 differ where their definitions differ, the
discrepancy principle stops at the first crossing on a tiny linear task, no rule crashes on
NaN/inf, and all four run together end to end."""
import json
import math

import pytest
import torch

from benchmark.cli import main
from datamodules.operators import Identity
from datamodules.operators.inpainting import MaskOperator
from datamodules.task import ImageMetric, Task
from reports.collect import load_runs
from scoring.callbacks import StepOutput
from scoring.noise import estimate_noise_sigma
from scoring.stopping import (
    STOPPING_RULES,
    DiscrepancyConfig,
    DiscrepancyES,
    EMVConfig,
    ExponentialMovingVarianceES,
    RunningVarianceConfig,
    RunningVarianceES,
    WindowedMovingVarianceES,
    WMVConfig,
    build_stopping_rules,
)

RULES = ("running_variance", "es_wmv", "es_emv", "discrepancy")


def _task(gt, y=None, physics=None, info=None):
    y = gt if y is None else y
    return Task("t", gt, y, physics or Identity(gt.shape[1:]), y, ImageMetric(), "synthetic", info=info or {})


def _feed(rule, values):
    for k, g in enumerate(values, start=1):
        rule.update(k, g)
    return rule


def test_es_wmv_variance_is_survey_a_eq16_over_the_window_ending_at_k():
    es = WindowedMovingVarianceES(_task(torch.zeros(1, 1, 3, 3)), WMVConfig(window=4, patience=100))
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand(1, 1, 3, 3, generator=gen) for _ in range(9)]
    for k, x in enumerate(frames, start=1):
        es.on_iterate(k, StepOutput(0.0, x))
        if k < 4:
            assert math.isnan(es.g)
            continue
        window = torch.stack(frames[k - 4:k]).double()  # x^(t) … x^(t+W−1) with t = k − W + 1
        var = ((window - window.mean(0)) ** 2).sum(dim=tuple(range(1, window.ndim))).mean()  # eq 16
        assert es.g == pytest.approx(float(var), rel=1e-9)


def test_es_wmv_stops_after_p_consecutive_non_improvements_reset_by_each_strict_decrease():
    patience = 15
    # strictly decreasing to k = 20 (g = 80), ties (not strict) until 29, a new minimum at 30, then flat
    g = [100.0 - k for k in range(1, 21)] + [80.0] * 9 + [79.0] * 40
    es = _feed(WindowedMovingVarianceES(_task(torch.zeros(1, 1, 2, 2)), WMVConfig(window=1, patience=patience)), g)
    last_min = max(k for k in range(1, len(g) + 1) if g[k - 1] < min(g[: k - 1], default=math.inf))
    assert last_min == 30 and es.pick_step == last_min and es.g_min == 79.0
    assert es.stop_step == last_min + patience
    # a count of all non-improvements (not reset at k = 30) would reach P at 21 … 29 plus 6 more
    cumulative = [k for k in range(2, len(g) + 1) if g[k - 1] >= min(g[: k - 1])][patience - 1]
    assert cumulative == 36 != es.stop_step


def test_es_wmv_and_running_variance_differ_on_relative_decrease_and_stop_iteration():
    task, p = _task(torch.zeros(1, 1, 2, 2)), 5
    # g falls by 0.1 % per iteration: every value is a strict decrease, but within p iterations none
    # is a δ = 0.99 relative decrease (0.999^p > 0.99), so Algorithm 2 keeps k_min = 1 and stops
    slow = [0.999**k for k in range(1, 101)]
    assert 0.999**p > 0.99
    rv = _feed(RunningVarianceES(task, RunningVarianceConfig(window=1, patience=p, delta=0.99)), slow)
    wmv = _feed(WindowedMovingVarianceES(task, WMVConfig(window=1, patience=p)), slow)
    assert (rv.pick_step, rv.stop_step) == (1, 1 + p + 1)  # stop once k > k_min + p
    assert (wmv.pick_step, wmv.stop_step) == (len(slow), None)  # never P non-improvements in a row
    # a sharp drop to k = 10 and then a plateau: same pick, stop one iteration apart
    sharp = [2.0**-k for k in range(1, 11)] + [2.0**-10] * 50
    rv = _feed(RunningVarianceES(task, RunningVarianceConfig(window=1, patience=p, delta=0.99)), sharp)
    wmv = _feed(WindowedMovingVarianceES(task, WMVConfig(window=1, patience=p)), sharp)
    assert rv.pick_step == wmv.pick_step == 10
    assert (wmv.stop_step, rv.stop_step) == (10 + p, 10 + p + 1)


def test_es_emv_follows_the_ema_and_emv_updates():
    """α = 1/2 on 1-pixel iterates 0.2, 0.6, 0.4: δ = 0.4 then 0; EMA 0.2 → 0.4 → 0.4;
    EMV 0 → ½(0 + ½·0.16) = 0.04 → ½(0.04 + 0) = 0.02."""
    es = ExponentialMovingVarianceES(_task(torch.zeros(1, 1, 1, 1)), EMVConfig(alpha=0.5, patience=10, burn_in=0))
    expected = [(0.2, math.nan), (0.4, 0.04), (0.4, 0.02)]
    for k, (value, (ema, emv)) in enumerate(zip([0.2, 0.6, 0.4], expected), start=1):
        es.on_iterate(k, StepOutput(0.0, torch.full((1, 1, 1, 1), value)))
        assert float(es.ema) == pytest.approx(ema)
        assert (math.isnan(es.g) and math.isnan(emv)) or es.g == pytest.approx(emv)
    assert es.pick_step == 3  # 0.02 < 0.04
    es.on_iterate(4, StepOutput(0.0, torch.full((1, 1, 1, 1), 1.5)))  # x_range "unit": EMA clipped to 1
    assert float(es.ema) == pytest.approx(min(0.4 + 0.5 * 1.1, 1.0))


def test_es_emv_burn_in_patience_and_pick():
    """Constant iterates: EMV stays 0, so the first monitored iteration (burn_in + 2: the first
    iterate initialises, then burn_in updates are not compared) is the minimum and the rule stops
    P iterations later (ties are not strict decreases)."""
    task = _task(torch.zeros(1, 1, 2, 2))
    for burn_in in (0, 3):
        es = ExponentialMovingVarianceES(task, EMVConfig(alpha=0.1, patience=4, burn_in=burn_in))
        for k in range(1, 30):
            es.on_iterate(k, StepOutput(0.0, torch.full((1, 1, 2, 2), 0.5)))
        assert es.pick_step == burn_in + 2 and es.stop_step == burn_in + 2 + 4
    # growing iterates make EMV grow from 0: the minimum is the first monitored iterate
    frames = [torch.full((1, 1, 2, 2), 0.1 * k) for k in range(1, 8)]
    picks = {}
    for pick in ("ema", "iterate"):
        es = ExponentialMovingVarianceES(task, EMVConfig(alpha=0.5, patience=100, burn_in=0, pick=pick))
        for k, x in enumerate(frames, start=1):
            es.on_iterate(k, StepOutput(0.0, x))
        picks[pick] = es.pick_x
        assert es.pick_step == 2
    assert torch.allclose(picks["iterate"], frames[1])
    assert torch.allclose(picks["ema"], frames[0] + 0.5 * (frames[1] - frames[0]))


def _masked_task(sigma_info=True):
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 1, 8, 8, generator=gen)
    mask = (torch.rand(8, 8, generator=gen) > 0.25).float()
    physics = MaskOperator(mask, 1)
    sigma = 0.05
    y = physics.A(gt + sigma * torch.randn(gt.shape, generator=gen))
    return _task(gt, y, physics, {"sigma": sigma} if sigma_info else {}), mask, sigma


def test_discrepancy_stops_at_the_first_iterate_inside_the_discrepancy_ball():
    task, mask, sigma = _masked_task()
    tau, n = 1.0, 50
    rule = DiscrepancyES(task, DiscrepancyConfig(tau=tau))
    assert rule.sigma == sigma and rule.m == int(mask.sum())  # holes are not measured
    iterates = [task.y * (k / n) for k in range(1, n + 1)]  # ‖A x − y‖² = (1 − k/n)² ‖y‖² (A y = y)
    for k, x in enumerate(iterates, start=1):
        rule.on_iterate(k, StepOutput(0.0, x))
    residuals = [float((task.physics.A(x) - task.y).pow(2).sum()) for x in iterates]
    first = next(k for k, r in enumerate(residuals, start=1) if r <= tau * rule.m * sigma**2)
    assert 1 < first < n
    assert rule.stop_step == rule.pick_step == first
    assert torch.equal(rule.pick_x, iterates[first - 1])
    metrics, images = rule.summary()
    assert metrics["es.discrepancy.step"] == first and metrics["es.discrepancy.sigma"] == sigma
    assert "es_discrepancy" in images
    # the monitored value is ‖Ax − y‖² / (m σ²): its threshold is τ
    assert rule.g == pytest.approx(residuals[-1] / (rule.m * sigma**2))


def test_discrepancy_sigma_from_config_task_or_estimate_and_no_pick_if_never_reached():
    task, _, sigma = _masked_task()
    assert DiscrepancyES(task, DiscrepancyConfig(sigma=0.2)).sigma == 0.2
    assert DiscrepancyES(task, DiscrepancyConfig()).sigma_source == "task"
    unstated, _, _ = _masked_task(sigma_info=False)
    rule = DiscrepancyES(unstated, DiscrepancyConfig())
    assert rule.sigma_source == "estimate" and rule.sigma == estimate_noise_sigma(unstated.y)
    never = DiscrepancyES(task, DiscrepancyConfig(tau=1e-6))
    for k in range(1, 5):
        never.on_iterate(k, StepOutput(0.0, torch.zeros_like(task.gt)))
    metrics, images = never.summary()
    assert never.stop_step is None and math.isnan(metrics["es.discrepancy.psnr"])
    assert metrics["es.discrepancy.step"] is None and images == {}


@pytest.mark.parametrize("name", RULES)
def test_no_rule_crashes_on_nan_or_inf_and_recovers(name):
    task, _, _ = _masked_task()
    small = {"running_variance": {"window": 2, "patience": 3}, "es_wmv": {"window": 2, "patience": 3},
             "es_emv": {"burn_in": 0, "patience": 3}, "discrepancy": {"tau": 1.0}}[name]
    rule = build_stopping_rules(task, {name: STOPPING_RULES[name].config(**small)})[0]
    # g first: NaN as the very first value (used to raise TypeError in running_variance), then inf
    for k, g in enumerate([math.nan, math.inf, math.nan, 0.5, 0.4], start=1):
        rule.update(k, g)
    first_finite, smaller = 4, 5  # discrepancy fires at the first g ≤ τ; the others keep the minimum
    assert rule.pick_step == (first_finite if name == "discrepancy" else smaller)
    # iterates: NaN and inf images pass through a fresh rule without an exception
    rule = build_stopping_rules(task, {name: STOPPING_RULES[name].config(**small)})[0]
    bad = [torch.full_like(task.gt, math.nan), torch.full_like(task.gt, math.inf)]
    good = [task.y * (1 - 0.5**k) for k in range(1, 8)]
    for k, x in enumerate(bad + good, start=1):
        rule.on_iterate(k, StepOutput(math.nan, x))
        assert isinstance(rule.trace_values()[f"es.{name}.g"], float)
    assert math.isfinite(rule.g)  # the bad iterates have left every window
    rule.summary()


def test_all_four_rules_in_one_suite_run_report_their_metrics(tmp_path):
    suite = tmp_path / "es.yaml"
    suite.write_text(
        "name: es_rules\nmethods: [vanilla_dip]\ndatasets: [denoising]\nseeds: [0]\n"
        "set:\n  dataset.crop: 16\n  dataset.sigma: 50\n  method.lr: 0.01\n"
        "  method.net: {name: unet, scales: 3, channels: 8, skip_channels: [0, 4, 4]}\n"
        "  run.max_steps: 60\n  run.trace_every: 5\n"
        "  run.stopping: {running_variance: {window: 5, patience: 10}, es_wmv: {window: 5, patience: 10},\n"
        "                 es_emv: {burn_in: 5, patience: 10}, discrepancy: {tau: 1.0}}\n")
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results)]) == 0
    metrics = json.loads(next(results.glob("es_rules/*/metrics.json")).read_text())
    assert metrics["status"] == "finished", metrics.get("traceback")
    row = load_runs(results).iloc[0]  # the reports derive the gap (oracle peak − pick)
    for rule in RULES:
        assert {f"es.{rule}.{what}" for what in ("psnr", "step", "stop_step")} <= set(metrics)
        if metrics[f"es.{rule}.step"] is not None:
            assert 1 <= metrics[f"es.{rule}.step"] <= 60 and f"es.{rule}.ssim" in metrics
            assert row[f"es.{rule}.gap_db"] == pytest.approx(metrics["peak_psnr"] - metrics[f"es.{rule}.psnr"])
    assert metrics["es.discrepancy.sigma"] == pytest.approx(50 / 255)
    out = tmp_path / "reports"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    board = (out / "leaderboard.md").read_text()
    assert all(f"| {rule}" in board for rule in RULES)
