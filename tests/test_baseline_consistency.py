"""Every classical baseline's image explains its own measurement: the data residual
‖A x − y‖ is far below that of the best constant image, at odd and even half-sizes.

Issue 18 item 6: on the real 8-coil brain k-space (180 × 230) `bart_pics` returned −x
(‖Ax − y‖ 152 against CG-SENSE's 2.8). BART < 1.0 `pics` modulates the k-space with
`fftmod` where its model needs `ifftmod` (fixed upstream in BART v1.0.00), i.e. it fits
y·m² (m = BART's fftmod modulation): the sign (−1)^(H/2 + W/2) for even sizes, a one-pixel
shift for odd ones. The shipped sizes (64, 320) have H/2 and W/2 even and never showed it.
"""
import numpy as np
import pytest
import torch

from datamodules.operators.mri import MultiCoilMRI
from datamodules.sources.bart_io import bart_executable
from datamodules.sources.coil_maps import simulated_maps
from datamodules.sources.images import crop
from datamodules.sources.mr_images import load_mr_image
from datamodules.tasks.mri import cartesian_mask, mri_task
from methods.baselines.bart_pics import bart_fftmod
from methods.registry import load_all
from tests.conftest import shared_data

requires_bart = pytest.mark.skipif(bart_executable() is None, reason="BART not installed (apt-get install bart)")

# (H, W) with H/2, W/2: even/even, odd/odd, odd/odd, even/odd, odd/even; and odd H, W
MRI_SIZES = [(36, 40), (38, 42), (30, 46), (36, 42), (38, 40), (37, 41)]


def small_mri_task(h: int, w: int):
    """A real MR image cropped to h × w with a smooth phase, 4 simulated coils, 3× Cartesian, a little noise."""
    img, _ = load_mr_image("shoulder", max(h, w))
    img = crop(img[None], [h, w])[0].numpy()
    rows, cols = np.mgrid[:h, :w]
    gt = (img * np.exp(1j * (0.8 + 2.0 * cols / w - 1.0 * rows / h))).astype(np.complex64)
    maps = simulated_maps(4, h, w)
    mask, _ = cartesian_mask(h, w, 3, 0.16, "equispaced", seed=0)
    clean = MultiCoilMRI(torch.from_numpy(maps), mask).A(torch.view_as_real(torch.from_numpy(gt)).permute(2, 0, 1)[None])
    noise = 0.005 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * mask[None, None, :, :, None]
    y = torch.view_as_complex((clean + noise)[0].contiguous()).numpy()
    return mri_task("mri", gt, y, mask, maps, f"test: shoulder {h}x{w}, simulated coils", {}, support=False)


def data_residual(task, x: torch.Tensor) -> float:
    return float((task.physics.A(x) - task.y).norm())


def constant_image_residual(task) -> float:
    """‖A c − y‖ of the best constant image c (one value per channel, least squares): the trivial fit."""
    columns = []
    for channel in range(task.gt.shape[1]):
        e = torch.zeros_like(task.gt)
        e[:, channel] = 1
        columns.append(task.physics.A(e).flatten().double())
    a, y = torch.stack(columns, 1), task.y.flatten().double()
    c = torch.linalg.lstsq(a, y[:, None]).solution
    return float((a @ c)[:, 0].sub(y).norm())


def reconstruct(name: str, task, **settings) -> torch.Tensor:
    spec = load_all()[name]
    oracle = task.psnr if task.gt is not None else None
    x = spec.cls(spec.config(**settings), task.measurement(), oracle=oracle).reconstruct()
    assert x.shape == task.degraded.shape
    return x


def complex_ratio(x: torch.Tensor, ref: torch.Tensor) -> complex:
    """⟨ref, x⟩ / ‖ref‖² of two 2-channel complex images: 1 when x = ref (same sign and phase)."""
    a, b = (torch.view_as_complex(v[0].permute(1, 2, 0).contiguous()) for v in (x, ref))
    return complex((b.conj() * a).sum() / (b.abs() ** 2).sum())


def test_bart_fftmod_squared_is_the_sign_of_the_half_sizes_or_a_shift_for_odd_sizes():
    """What an old `pics` multiplies the k-space by: (−1)^(N/2) for even N, a linear phase
    (a one-pixel shift of the image) for odd N."""
    for n in (30, 36, 38, 40, 42, 46, 64, 180, 230, 320):
        np.testing.assert_allclose(bart_fftmod(n) ** 2, np.full(n, (-1.0) ** (n // 2)), atol=1e-9)
    for n in (37, 41):
        m2 = bart_fftmod(n) ** 2
        np.testing.assert_allclose(m2[1:] / m2[:-1], np.exp(-2j * np.pi / n), atol=1e-9)


@pytest.mark.bart
@requires_bart
def test_bart_fftmod_matches_the_bart_binary():
    from datamodules.sources.bart_io import run_bart

    for h, w in ((36, 42), (37, 41)):
        ones = np.ones((h, w, 1, 1), np.complex64)
        theirs = np.squeeze(run_bart("fftmod 3", ones))
        np.testing.assert_allclose(theirs, bart_fftmod(h)[:, None] * bart_fftmod(w)[None, :], atol=1e-5)


@pytest.mark.parametrize("size", MRI_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mri_baselines_fit_the_data_at_odd_and_even_half_sizes(size):
    task = small_mri_task(*size)
    trivial = constant_image_residual(task)
    assert data_residual(task, task.gt) < 0.06 * trivial  # the noise level
    assert data_residual(task, reconstruct("degraded", task)) < 0.3 * trivial  # zero-filled (measured ≈ 0.14)
    cg = reconstruct("cg_sense", task)
    assert data_residual(task, cg) < 0.06 * trivial  # measured ≈ 0.027
    assert abs(complex_ratio(cg, task.gt) - 1) < 0.15


@pytest.mark.bart
@requires_bart
@pytest.mark.parametrize("size", MRI_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bart_pics_fits_the_data_like_cg_sense_at_odd_and_even_half_sizes(size):
    task = small_mri_task(*size)
    trivial = constant_image_residual(task)
    cg, pics = reconstruct("cg_sense", task), reconstruct("bart_pics", task, iterations=30)
    assert data_residual(task, pics) < 0.06 * trivial  # measured ≈ 0.033 (before the fix ≈ 2.5 at 36x42, 38x40, 37x41)
    assert data_residual(task, pics) < 1.5 * data_residual(task, cg)
    assert abs(complex_ratio(pics, cg) - 1) < 0.05  # same sign and phase as CG-SENSE (measured 0.99)
    assert task.psnr(pics) > task.psnr(cg)


@pytest.mark.bart
@requires_bart
def test_old_pics_fits_fftmod_squared_data_and_the_probe_knows_it():
    """The cause, shown on the installed BART: `pics` on our k-space at 36 × 42 (W/2 odd)
    returns −x exactly when the probe says this `pics` predates BART's ifftmod fix."""
    from datamodules.sources.bart_io import bart_version, require_bart, run_bart, to_bart
    from methods.baselines.bart_pics import _pics_fits_fftmod_squared

    task = small_mri_task(36, 42)
    kspace = torch.view_as_complex(task.y[0].contiguous()).numpy()
    maps = task.physics.maps_complex().numpy()
    raw = np.squeeze(run_bart("pics -S -l2 -r 0.001 -i 30", to_bart(kspace), to_bart(maps)))
    raw = torch.view_as_real(torch.from_numpy(raw.astype(np.complex64))).permute(2, 0, 1)[None]
    old = _pics_fits_fftmod_squared(str(require_bart()), bart_version())
    assert complex_ratio(raw, reconstruct("cg_sense", task)).real == pytest.approx(-1.0 if old else 1.0, abs=0.05)
    spec = load_all()["bart_pics"]
    method = spec.cls(spec.config(iterations=5), task.measurement())
    method.reconstruct()
    assert method.info["bart_kspace_correction"] == ("conj(fftmod)^2 (BART < 1.0 pics)" if old else "none")


@pytest.mark.parametrize("n", [30, 31, 32])
def test_ct_baselines_fit_the_data_at_odd_and_even_half_sizes(n, tmp_path, monkeypatch):
    from datamodules.tasks.ct import AAPMConfig, build_aapm

    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    task = build_aapm(AAPMConfig(image_size=n, n_views=8, n_total_views=64, poisson_i0=1e5))
    trivial = constant_image_residual(task)
    for name, settings, bound in (("fbp", {}, 0.4), ("degraded", {}, 0.4), ("tv", {"lam": 1e-4, "iterations": 30}, 0.2)):
        # measured: FBP 0.12–0.23 (8 views), TV 0.06–0.09 of the constant image's residual
        assert data_residual(task, reconstruct(name, task, **settings)) < bound * trivial, name


@pytest.mark.parametrize("n", [30, 31, 32])
def test_image_baselines_fit_the_data_at_odd_and_even_half_sizes(n):
    from datamodules.tasks.natural import GaussianDeblurConfig, InpaintingConfig, build_deblur_gaussian, build_inpainting

    inpainting = build_inpainting(InpaintingConfig(crop=n))
    trivial = constant_image_residual(inpainting)
    assert data_residual(inpainting, reconstruct("degraded", inpainting)) < 1e-3 * trivial  # the observed pixels
    assert data_residual(inpainting, reconstruct("tv", inpainting, lam=1e-4, iterations=30)) < 0.05 * trivial
    deblur = build_deblur_gaussian(GaussianDeblurConfig(crop=n, sigma=0))
    tv = reconstruct("tv", deblur, lam=1e-4, iterations=30)
    assert data_residual(deblur, tv) < 0.1 * constant_image_residual(deblur)  # measured ≈ 0.035


@pytest.mark.bart
@requires_bart
def test_real_brain_bart_pics_fits_the_data_like_cg_sense(tmp_path, monkeypatch):
    """The issue's case: real 8-coil brain k-space, 180 × 230 (W/2 = 115 odd), ecalib maps.
    Measured (100 iterations): ‖y‖ 76.1, zero-filled 10.2, CG-SENSE 2.77, bart_pics 3.15
    (152 before the fix, image −0.99 × CG-SENSE's)."""
    from datamodules.tasks.measurement_mri import MRIKspaceConfig, build_measurement_mri

    folder = shared_data("mri")
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    task = build_measurement_mri(MRIKspaceConfig(file=str(folder / "bart_brain_ksp.cfl")))
    assert task.y.shape == (1, 8, 180, 230, 2)
    y_norm, zero_filled = float(task.y.norm()), data_residual(task, task.degraded)
    cg = reconstruct("cg_sense", task)
    pics = reconstruct("bart_pics", task, iterations=10)
    assert data_residual(task, cg) < 0.5 * zero_filled < 0.1 * y_norm
    assert data_residual(task, pics) < 1.5 * data_residual(task, cg)
    assert abs(complex_ratio(pics, cg) - 1) < 0.05
