"""A Task checks its parts when it is built (datamodules/task.py: validate_task): shapes,
ranges, finiteness and the operator's output shape, with messages that say what to change
(issue 12: a wrong-shaped ground truth used to fail late with a raw IndexError)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.operators import Identity
from datamodules.operators.ct import CTOperator, parallel_geometry
from datamodules.operators.inpainting import MaskOperator
from datamodules.task import ImageMetric, Task, TaskError


def make(gt=None, y=None, physics=None, degraded=None, **kwargs) -> Task:
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    gt = x if gt is None else gt
    degraded = x if degraded is None else degraded
    physics = Identity((1, 16, 16)) if physics is None else physics
    y = physics.A(degraded) if y is None else y
    return Task("t", gt, y, physics, degraded, kwargs.pop("metric", ImageMetric()), "synthetic", **kwargs)


def test_a_consistent_task_builds_and_gt_may_be_absent():
    assert make().x_shape == (1, 16, 16)
    task = Task("t", None, torch.zeros(1, 1, 16, 16), Identity((1, 16, 16)), torch.zeros(1, 1, 16, 16), ImageMetric(), "s")
    assert not task.has_ground_truth and task.x_shape == (1, 16, 16)


def test_wrong_shaped_ground_truth_names_both_shapes_and_the_fix():
    with pytest.raises(TaskError, match=r"ground truth has shape \(1, 1, 16, 12\) but the reconstruction space is "
                                        r"\(1, 1, 16, 16\) .*give a ground truth of that size"):
        make(gt=torch.zeros(1, 1, 16, 12))
    with pytest.raises(TaskError, match=r"ground truth has shape \(1, 3, 16, 16\)"):  # channels count too
        make(gt=torch.zeros(1, 3, 16, 16))


def test_unit_range_ground_truth_outside_0_1_says_what_to_change():
    with pytest.raises(TaskError, match=r"spans \[0, 2\] but x_range='unit' .*rescale .* or use a signed range"):
        make(gt=torch.full((1, 1, 16, 16), 2.0).index_fill_(2, torch.tensor([0]), 0.0))
    assert make(gt=torch.full((1, 1, 16, 16), 2.0), x_range="signed").x_range == "signed"
    with pytest.raises(TaskError, match="x_range = 'positive'; valid: unit, signed"):
        make(x_range="positive")


def test_non_finite_data_are_reported_with_counts():
    y = torch.zeros(1, 1, 16, 16)
    y[0, 0, :2, 0] = float("nan")
    with pytest.raises(TaskError, match=r"y has 2 NaN/inf value\(s\) of 256"):
        make(y=y)
    gt = torch.zeros(1, 1, 16, 16)
    gt[0, 0, 3, 3] = float("inf")
    with pytest.raises(TaskError, match="ground truth has NaN/inf"):
        make(gt=gt)


def test_extras_and_metric_mask_shapes_are_checked():
    with pytest.raises(TaskError, match=r"extras\['fbp'\] has shape \(1, 1, 8, 8\), expected the reconstruction space's "
                                        r"\(1, 1, 16, 16\)"):
        make(extras={"fbp": torch.zeros(1, 1, 8, 8)})
    with pytest.raises(TaskError, match=r"extras\['support'\] has shape \(16, 16\), expected a mask \(1, 1, 16, 16\)"):
        make(extras={"support": torch.ones(16, 16)})
    with pytest.raises(TaskError, match=r"metric's mask has shape \(1, 1, 8, 8\)"):
        make(metric=ImageMetric(mask=torch.ones(1, 1, 8, 8, dtype=torch.bool)))


def test_operator_and_measurement_must_fit():
    op = CTOperator(parallel_geometry(16, np.linspace(0, np.pi, 5, endpoint=False), projector="line"), cache=False)
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(TaskError, match=r"the operator maps \(1, 1, 16, 16\) to \(1, 1, 5, 23\) but the measurement y "
                                        r"has shape \(1, 1, 5, 20\)"):
        make(gt=x, degraded=x, physics=op, y=torch.zeros(1, 1, 5, 20))
    mask_op = MaskOperator(torch.ones(8, 8), 1)
    with pytest.raises(TaskError, match=r"cannot be applied to an image of the reconstruction space \(1, 1, 16, 16\)"):
        make(physics=mask_op, y=torch.zeros(1, 1, 8, 8))


def test_degraded_image_must_be_batched():
    with pytest.raises(TaskError, match=r"must be batched \(1, C, H, W\).*got shape \(1, 16, 16\)"):
        Task("t", None, torch.zeros(1, 16, 16), Identity((1, 16, 16)), torch.zeros(1, 16, 16), ImageMetric(), "s")


def test_task_errors_are_value_errors():
    assert issubclass(TaskError, ValueError)  # a dataset's __post_init__ / the config layer reports them as config errors
