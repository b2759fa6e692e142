import math

import torch

from datamodules.operators import Identity
from datamodules.task import ImageMetric, Task
from scoring.callbacks import EMAOutput, OracleBest, StepOutput
from scoring.stopping import RunningVarianceConfig, RunningVarianceES


def _task(gt):
    return Task("t", gt, gt, Identity(gt.shape[1:]), gt, ImageMetric(), "synthetic")


def test_running_variance_rule_finds_the_valley_of_a_u_shaped_curve():
    """Algorithm 2 on g(k) = (k − 400)² + 1: k_min lands in the valley, the stop
    iteration is k_min + p + 1, and later (larger) values never move k_min."""
    es = RunningVarianceES(_task(torch.zeros(1, 1, 2, 2)), RunningVarianceConfig(window=1, patience=200, delta=0.99))
    for k in range(1, 2001):
        es.update(k, (k - 400) ** 2 + 1.0)
    assert abs(es.pick_step - 400) <= 10  # δ = 0.99 stops accepting once the decrease is < 1 %
    assert es.stop_step == es.pick_step + 201


def test_running_variance_needs_relative_decrease_delta():
    es = RunningVarianceES(_task(torch.zeros(1, 1, 2, 2)), RunningVarianceConfig(window=1, patience=10_000, delta=0.5))
    for k, g in enumerate([10.0, 6.0, 4.9, 4.0, 2.0], start=1):
        es.update(k, g)
    # 6 is not < 0.5·10; 4.9 is; 4.0 is not < 0.5·4.9; 2.0 is
    assert es.pick_step == 5 and es.g_min == 2.0


def test_running_variance_matches_equation_19():
    gt = torch.zeros(1, 1, 4, 4)
    es = RunningVarianceES(_task(gt), RunningVarianceConfig(window=5, patience=100))
    gen = torch.Generator().manual_seed(0)
    frames = [torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64) for _ in range(12)]
    for k, x in enumerate(frames, start=1):
        es.on_iterate(k, StepOutput(0.0, x.float()))
    window = torch.stack([f.float().double() for f in frames[-5:]])
    direct = ((window - window.mean(0)) ** 2).sum(dim=tuple(range(1, window.ndim))).mean()
    assert math.isclose(es.g, float(direct), rel_tol=1e-9)


def test_oracle_best_keeps_the_highest_psnr_iterate_and_ema_averages():
    gt = torch.full((1, 1, 8, 8), 0.5)
    task = _task(gt)
    best, ema = OracleBest(task), EMAOutput(task, decay=0.5)
    errors = [0.3, 0.1, 0.02, 0.2]
    for k, e in enumerate(errors, start=1):
        x = gt + e
        best.on_iterate(k, StepOutput(0.0, x))
        ema.on_iterate(k, StepOutput(0.0, x))
        ema.trace_values()
    assert best.best_step == 3
    assert math.isclose(best.best_psnr, task.psnr(gt + 0.02), rel_tol=1e-6)
    expected = gt + (((0.3 * 0.5 + 0.1 * 0.5) * 0.5 + 0.02 * 0.5) * 0.5 + 0.2 * 0.5)
    assert torch.allclose(ema.ema, expected)


def test_masked_psnr_uses_gt_max_inside_the_mask():
    from datamodules.task import ImageMetric

    gt = torch.zeros(1, 1, 4, 4)
    gt[..., 1:3, 1:3] = 0.5
    gt[..., 0, 0] = 2.0  # outside the mask: must not set the data range
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 1:3, 1:3] = True
    x = gt.clone()
    x[..., 1, 1] += 0.1
    metric = ImageMetric(data_range=None, mask=mask)
    expected = 10 * math.log10(0.5**2 / (0.1**2 / 4))
    assert math.isclose(metric.psnr(x, gt), expected, rel_tol=1e-5)
