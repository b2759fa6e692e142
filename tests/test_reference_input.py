"""Reference-guided input (Ref-G, Survey A §III-B; Zhao et al. 2020): ``method.input=reference``
feeds the task's reference image (``dataset.reference``: another image of the same source, or
an image file) to the network. Tasks with a reference declare "reference_image"; elsewhere the
pair is skipped with the reason."""
from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data
import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import IncompatibleError, resolve
from benchmark.runner import build_task, execute
from benchmark.store import RunStore
from datamodules.registry import load_all as load_datasets

DATASETS = load_datasets()
NET = {"scales": 2, "channels": 8, "skip_channels": [0, 4]}


def task_of(dataset: dict, method: dict | None = None):
    return build_task(resolve({"method": method or {"name": "degraded"}, "dataset": dataset}))


def center_crop(img: np.ndarray, size: int) -> torch.Tensor:
    """The reference computed here, independently of the task code: centre crop, [0, 1], (C, H, W)."""
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return torch.from_numpy(img[top:top + size, left:left + size].astype(np.float32) / 255).permute(2, 0, 1)


def test_reference_is_another_image_of_the_source_cut_like_the_image():
    task = task_of({"name": "denoising", "image": "astronaut", "reference": "coffee", "crop": 32})
    ref = task.extras["reference"]
    assert ref.shape == task.gt.shape
    torch.testing.assert_close(ref[0], center_crop(skimage.data.coffee(), 32), rtol=0, atol=0)
    assert "reference" in task.provenance and "coffee" in task.provenance
    assert "reference" in task.measurement().extras  # methods see it (it is not the ground truth)


def test_reference_image_file_is_cropped_with_the_image_box_and_converted_to_its_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    path = tmp_path / "prior.png"
    iio.imwrite(path, rgb)
    task = task_of({"name": "denoising", "reference": str(path), "crop": 32, "crop_at": [2, 5]})
    expected = torch.from_numpy(rgb[2:34, 5:37].astype(np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(task.extras["reference"][0], expected, rtol=0, atol=0)
    grey = task_of({"name": "denoising", "reference": str(path), "crop": 32, "crop_at": [2, 5], "grayscale": True})
    assert grey.extras["reference"].shape == grey.gt.shape == (1, 1, 32, 32)


@pytest.mark.parametrize("name,extra", [("inpainting", "mask"), ("deblur_gaussian", "kernel"),
                                        ("deblur_nonlinear", "kernel")])
def test_every_natural_task_offers_a_reference_and_declares_it(name, extra):
    spec = DATASETS[name]
    with_ref = resolve({"method": {"name": "degraded"},
                        "dataset": {"name": name, **spec.smoke_config, "reference": "coffee"}}).dataset_cfg
    without = resolve({"method": {"name": "degraded"}, "dataset": {"name": name, **spec.smoke_config}}).dataset_cfg
    assert "reference_image" in spec.capabilities_for(with_ref)
    assert "reference_image" not in spec.capabilities_for(without)
    task = spec.build(with_ref)
    assert task.extras["reference"].shape == task.gt.shape and extra in task.extras
    assert "reference" not in spec.build(without).extras


def test_reference_errors_name_the_option():
    with pytest.raises(FileNotFoundError, match="dataset.reference"):
        task_of({"name": "denoising", "reference": "/no/such/prior.png", "crop": 32})
    with pytest.raises(ValueError, match="ground truth"):
        task_of({"name": "denoising", "image": "coffee", "reference": "coffee", "crop": 32})
    with pytest.raises(KeyError, match="valid"):
        task_of({"name": "denoising", "reference": "no_such_photo", "crop": 32})


def test_reference_input_is_skipped_where_the_task_has_no_reference():
    with pytest.raises(IncompatibleError, match="reference_image"):
        resolve({"method": {"name": "vanilla_dip", "input": "reference"}, "dataset": {"name": "denoising"}})
    with pytest.raises(IncompatibleError, match="reference_image"):
        resolve({"method": {"name": "vanilla_dip", "input": "reference"}, "dataset": {"name": "walnut"}})


class InputRecorder(Callback):
    def on_train_start(self, trainer, module):
        self.z = module.z.detach().clone()
        self.reference = module.problem.extras["reference"].clone()


def test_reference_guided_dip_feeds_the_reference_image_and_runs_end_to_end(tmp_path):
    torch.set_num_threads(1)  # the autouse fixture in conftest.py sets it again for the next test
    run = resolve({"method": {"name": "vanilla_dip", "input": "reference", "net": NET, "lr": 0.01},
                   "dataset": {"name": "denoising", "image": "astronaut", "reference": "coffee", "crop": 32},
                   "run": {"max_steps": 30, "trace_every": 10, "ssim_every": 1000, "save_images": False}})
    recorder = InputRecorder()
    metrics = execute(run, "refg", RunStore(tmp_path), extra_callbacks=[recorder])
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert torch.equal(recorder.z, recorder.reference)  # z is the reference image itself
    torch.testing.assert_close(recorder.z[0], center_crop(skimage.data.coffee(), 32), rtol=0, atol=0)
    assert np.isfinite(metrics["peak_psnr"]) and "coffee" in metrics["provenance"]
