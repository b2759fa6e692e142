"""Natural-image tasks: denoising noise level and seeding, inpainting, deblurring,
CBSD68 loading (real folder and a PNG-folder fixture), named image sets."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from datamodules.operators.blur import BlurOperator
from datamodules.operators.inpainting import MaskOperator
from datamodules.operators.nonlinear_blur import LearnedBlur, NonlinearBlur
from datamodules.registry import load_all
from datamodules.sources.image_sets import IMAGE_SETS, images_in_set
from datamodules.sources.images import SKIMAGE_PHOTOS, load_image
from datamodules.sources.paths import MissingDataError
from tests.conftest import shared_data

NATURAL = ("denoising", "inpainting", "deblur_gaussian", "deblur_motion", "deblur_nonlinear")


def build(name, **overrides):
    spec = load_all()[name]
    return spec.build(dataclasses.replace(spec.config(), **overrides))


def test_natural_datasets_are_registered_with_simulated_provenance():
    datasets = load_all()
    for name in NATURAL:
        assert name in datasets
        task = build(name, crop=32)
        assert "simulated" in task.provenance
        assert task.gt.shape == task.degraded.shape == (1, 3, 32, 32)
        assert task.metric.mask is None and task.metric.data_range == 1.0  # full-image PSNR
        assert not torch.allclose(task.degraded, task.gt) and math.isfinite(task.psnr(task.degraded))


# -- denoising (datamodules/tasks/denoising.py) ---------------------------------------------


@pytest.mark.parametrize("sigma", [15.0, 25.0, 50.0])
@pytest.mark.parametrize("grayscale", [False, True])
def test_denoising_noise_level(sigma, grayscale):
    task = build("denoising", sigma=sigma, crop=64, grayscale=grayscale)
    assert task.gt.shape[1] == (1 if grayscale else 3)
    noise = (task.y - task.gt).flatten().double()
    n, s = noise.numel(), sigma / 255
    # sample std of n Gaussians has relative std ≈ 1/√(2n); allow 5 of them
    assert abs(float(noise.std()) / s - 1) < 5 / math.sqrt(2 * n)
    assert abs(float(noise.mean())) < 5 * s / math.sqrt(n)
    assert abs(task.info["sigma"] - s) < 1e-12


def test_denoising_noise_is_seeded():
    a, b = build("denoising", crop=32, noise_seed=4), build("denoising", crop=32, noise_seed=4)
    c = build("denoising", crop=32, noise_seed=5)
    assert torch.equal(a.y, b.y)
    assert not torch.allclose(a.y, c.y)
    assert torch.equal(a.gt, c.gt)


def test_grayscale_is_the_luma_of_the_colour_image():
    colour, grey = build("denoising", crop=16), build("denoising", crop=16, grayscale=True)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose((colour.gt * weights).sum(1, keepdim=True), grey.gt, atol=1e-6)


# -- inpainting ------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_type", ["random", "box", "blocks"])
def test_inpainting_task_hole_ratio_and_masked_image(mask_type):
    task = build("inpainting", crop=64, mask_type=mask_type, hole_ratio=0.25)
    assert isinstance(task.physics, MaskOperator)
    mask = task.extras["mask"]
    assert abs((1 - mask.float().mean().item()) - 0.25) < 1e-9  # 64×64: exact for all three types
    assert abs(task.info["hole_ratio"] - 0.25) < 1e-9
    holes = ~mask.expand_as(task.gt)
    assert torch.all(task.y[holes] == 0)
    assert torch.equal(task.y[~holes], task.gt[~holes])  # noise-free by default
    assert torch.equal(task.degraded, task.y)  # the masked image is what is shown
    assert f"{mask_type} mask with hole ratio 0.250" in task.provenance


def test_inpainting_mask_seed_and_noise_only_on_observed_pixels():
    a = build("inpainting", crop=32, mask_seed=0)
    b = build("inpainting", crop=32, mask_seed=1)
    assert not torch.equal(a.extras["mask"], b.extras["mask"])
    noisy = build("inpainting", crop=64, sigma=25.0)
    observed = noisy.extras["mask"].expand_as(noisy.gt)
    residual = (noisy.y - noisy.gt)[observed].double()
    assert abs(float(residual.std()) / (25 / 255) - 1) < 5 / math.sqrt(2 * residual.numel())
    assert torch.all(noisy.y[~observed] == 0)


# -- deblurring ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deblur_gaussian", "deblur_motion"])
def test_linear_deblur_tasks(name):
    task = build(name, crop=48, sigma=25.0)
    assert isinstance(task.physics, BlurOperator) and task.physics.linear
    noise = (task.y - task.physics.A(task.gt)).double()
    assert abs(float(noise.std()) / (25 / 255) - 1) < 5 / math.sqrt(2 * noise.numel())
    assert torch.equal(task.extras["kernel"], task.physics.filter)


def test_motion_kernel_follows_its_seed():
    a, b = build("deblur_motion", crop=32, kernel_seed=0), build("deblur_motion", crop=32, kernel_seed=1)
    assert not torch.equal(a.extras["kernel"], b.extras["kernel"])
    assert torch.equal(a.extras["kernel"], build("deblur_motion", crop=32, kernel_seed=0).extras["kernel"])


@pytest.mark.parametrize("response", ["tanh", "gamma"])
def test_nonlinear_deblur_task_uses_the_analytic_operator(response):
    task = build("deblur_nonlinear", crop=32, response=response, sigma=0.0)
    assert isinstance(task.physics, NonlinearBlur) and not task.physics.linear
    assert torch.allclose(task.y, task.physics.A(task.gt))
    # degraded = blurred image mapped back through the known curve = the linear blur of gt
    assert torch.allclose(task.degraded, task.physics.blur.A(task.gt).clamp(0, 1), atol=1e-5)


def test_nonlinear_deblur_task_with_a_user_blur_model(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 5, padding=2), torch.nn.Sigmoid()).eval()
    path = tmp_path / "blur.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(1, 3, 32, 32),)), str(path))
    task = build("deblur_nonlinear", crop=32, model_path=str(path), sigma=5.0)
    assert isinstance(task.physics, LearnedBlur)
    with torch.no_grad():
        residual = task.y - net(task.gt)
    assert abs(float(residual.std()) / (5 / 255) - 1) < 0.1
    assert str(path) in task.provenance


# -- image sources ---------------------------------------------------------------------------


def _write_png_folder(folder, n=3, shape=(20, 30, 3)):
    import imageio.v3 as iio

    folder.mkdir()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]
    for i, img in enumerate(images):
        iio.imwrite(folder / f"{i:04d}.png", img)
    return images


@pytest.mark.parametrize("source", ["cbsd68", "folder"])
def test_png_folder_in_cbsd68_layout_loads_losslessly(tmp_path, source):
    images = _write_png_folder(tmp_path / "cbsd68")
    for key, expected in [(1, images[1]), ("0002", images[2])]:
        img, label = load_image(source, key, str(tmp_path / "cbsd68"))
        assert img.shape == (3, 20, 30)
        assert torch.equal(img, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    task = build("inpainting", source=source, root=str(tmp_path / "cbsd68"), image="0001", crop=16)
    assert task.gt.shape == (1, 3, 16, 16)


def test_missing_cbsd68_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(MissingDataError, match="make data-cbsd68"):
        load_image("cbsd68", 0, str(tmp_path / "nowhere"))


def test_real_cbsd68_folder():
    folder = shared_data("cbsd68")
    stems = sorted(p.stem for p in folder.glob("*.png"))
    assert stems == [f"{i:04d}" for i in range(68)]
    img, label = load_image("cbsd68", "0012", str(folder))
    assert img.shape[0] == 3 and sorted(img.shape[1:]) == [321, 481]
    assert 0 <= float(img.min()) and float(img.max()) <= 1 and label == "CBSD68 0012"
    task = build("deblur_nonlinear", source="cbsd68", root=str(folder), image="0012", crop=32)
    assert task.provenance.startswith("CBSD68 0012")


# -- named image sets ------------------------------------------------------------------------


def test_image_sets_substitute_the_papers_images():
    assert len(images_in_set("a_fig3", "cbsd68")) == 4
    assert len(images_in_set("a_fig6", "cbsd68")) == 10
    for name, s in IMAGE_SETS.items():
        assert s.substitutes and s.description
        assert len(set(s.cbsd68)) == len(s.cbsd68) and len(set(s.skimage)) == len(s.skimage)
        assert all(stem.isdigit() and 0 <= int(stem) < 68 for stem in s.cbsd68)
        assert set(s.skimage) <= set(SKIMAGE_PHOTOS) and "cat" not in s.skimage  # cat is chelsea
        for photo in s.skimage:
            img, _ = load_image("skimage", photo)
            assert img.shape[0] == 3  # colour photos only (sets are averaged over images)


def test_image_set_errors_list_valid_names():
    with pytest.raises(KeyError, match="a_fig3, a_fig6"):
        images_in_set("fig3", "cbsd68")
    with pytest.raises(KeyError, match="cbsd68, skimage"):
        images_in_set("a_fig3", "folder")


def test_image_sets_exist_in_the_real_cbsd68_folder():
    folder = shared_data("cbsd68")
    for name in IMAGE_SETS:
        for stem in images_in_set(name, "cbsd68"):
            assert (folder / f"{stem}.png").is_file()


# -- end to end: vanilla DIP on tiny crops ---------------------------------------------------

E2E = [
    ("inpainting", {}),
    ("inpainting", {"mask_type": "box"}),
    ("deblur_gaussian", {}),
    ("deblur_motion", {}),
    ("deblur_nonlinear", {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,extra", E2E, ids=[f"{n}-{e.get('mask_type', '')}".rstrip("-") for n, e in E2E])
def test_vanilla_dip_beats_the_degraded_image(tmp_path, name, extra):
    """300 Adam steps of a narrow 3-scale U-Net on a 32×32 crop (≈4–6 s CPU). One
    thread: with two, OpenMP spin-waiting makes this ~10× slower on a busy machine."""
    torch.set_num_threads(1)  # the autouse fixture in conftest.py sets it again for the next test
    from benchmark.config import resolve
    from benchmark.runner import execute
    from benchmark.store import RunStore

    run = resolve({
        "method": {"name": "vanilla_dip", "lr": 0.01, "net": {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}},
        "dataset": {"name": name, "crop": 32, **extra},
        "run": {"max_steps": 300, "trace_every": 10, "ssim_every": 1000, "accelerator": "cpu", "save_images": False},
    })
    metrics = execute(run, "e2e", RunStore(tmp_path))
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 1.0
    assert metrics["final_psnr"] > metrics["degraded_psnr"]
