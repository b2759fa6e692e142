"""Multi-coil SENSE operator y = M F S x, its adjoint, the fastMRI masks and CG-SENSE."""
import numpy as np
import pytest
import torch

from datamodules.operators.mri import MultiCoilMRI, magnitude, sense_least_squares
from datamodules.sources.bart_io import bart_executable
from datamodules.sources.coil_maps import simulated_maps
from datamodules.tasks.mri import cartesian_mask

requires_bart = pytest.mark.skipif(bart_executable() is None, reason="BART not installed (apt-get install bart)")


def random_operator(coils=4, h=24, w=20, seed=0, full=False):
    gen = torch.Generator().manual_seed(seed)
    maps = torch.complex(torch.randn(coils, h, w, generator=gen), torch.randn(coils, h, w, generator=gen))
    mask = torch.ones(h, w) if full else (torch.rand(h, w, generator=gen) < 0.4).float()
    return MultiCoilMRI(maps, mask), maps, mask


def dot_test(op, dtype=torch.float64, trials=3) -> float:
    """max relative |<Ax, y> - <x, Aᴴy>| over random pairs (real inner product of the real views)."""
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for _ in range(trials):
        x = torch.randn((2, *op.in_shape), generator=gen, dtype=dtype)
        y = torch.randn((2, *op.out_shape), generator=gen, dtype=dtype)
        lhs, rhs = (op.A(x) * y).sum(), (x * op.A_adjoint(y)).sum()
        worst = max(worst, float((lhs - rhs).abs() / lhs.abs()))
    return worst


def test_adjoint_dot_test_float64_and_float32():
    op, _, _ = random_operator()
    assert op.in_shape == (2, 24, 20) and op.out_shape == (4, 24, 20, 2)
    assert dot_test(op, torch.float64) < 1e-12
    assert dot_test(op, torch.float32) < 1e-4


def test_forward_and_adjoint_match_a_direct_numpy_implementation():
    op, maps, mask = random_operator(coils=3, h=16, w=12, seed=2)
    x = torch.randn(1, 2, 16, 12, dtype=torch.float64)
    y = torch.randn(1, 3, 16, 12, 2, dtype=torch.float64)
    s, m = maps.numpy().astype(np.complex128), mask.numpy()
    xc = x[0, 0].numpy() + 1j * x[0, 1].numpy()
    yc = y[0, ..., 0].numpy() + 1j * y[0, ..., 1].numpy()

    def fft2c(a):
        return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(a, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))

    def ifft2c(a):
        return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(a, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))

    ax = m * fft2c(s * xc)
    ahy = (np.conj(s) * ifft2c(m * yc)).sum(0)
    got_ax = op.A(x)[0].numpy()
    got_ahy = op.A_adjoint(y)[0].numpy()
    np.testing.assert_allclose(got_ax[..., 0] + 1j * got_ax[..., 1], ax, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_ahy[0] + 1j * got_ahy[1], ahy, rtol=1e-5, atol=1e-5)


def test_full_sampling_with_normalised_maps_is_an_isometry():
    maps = simulated_maps(6, 20, 24)
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(0), 1.0, rtol=1e-5)
    op = MultiCoilMRI(torch.from_numpy(maps), torch.ones(20, 24))
    x = torch.randn(1, 2, 20, 24, dtype=torch.float64)
    torch.testing.assert_close(op.A_adjoint(op.A(x)), x, rtol=1e-5, atol=1e-5)  # AᴴA = SᴴFᴴF S = I
    assert abs(op.norm() - 1.0) < 1e-3


def test_maps_and_mask_are_buffers_that_follow_the_module():
    op, _, _ = random_operator()
    assert {"maps", "mask"} <= set(dict(op.named_buffers()))
    op64 = op.to(torch.float64)
    assert op64.maps.dtype == torch.float64
    assert op64.A(torch.randn(1, *op.in_shape, dtype=torch.float64)).dtype == torch.float64


def test_magnitude_of_two_channel_image():
    x = torch.tensor([[[[3.0]], [[-4.0]]]])
    assert magnitude(x).shape == (1, 1, 1, 1) and float(magnitude(x)) == pytest.approx(5.0)


@pytest.mark.parametrize("mask_type", ["equispaced", "random"])
@pytest.mark.parametrize("width", [320, 368])
def test_fastmri_masks_have_4x_acceleration_and_8_percent_centre(mask_type, width):
    mask, center = cartesian_mask(8, width, 4, 0.08, mask_type, seed=3)
    assert mask.shape == (8, width)
    assert torch.equal(mask, mask[:1].expand_as(mask))  # whole columns (Cartesian phase encoding)
    columns = mask[0]
    assert center == round(0.08 * width)
    lo = (width - center + 1) // 2
    assert columns[lo : lo + center].all()  # fully sampled centre block
    if mask_type == "equispaced":
        assert abs(columns.sum().item() - width / 4) <= 2
    else:  # expected width/4 columns; binomial spread of the random part
        assert abs(columns.sum().item() - width / 4) <= 4 * np.sqrt(width / 4)


def test_masks_are_seeded():
    a, _ = cartesian_mask(4, 320, 4, 0.08, "random", seed=0)
    b, _ = cartesian_mask(4, 320, 4, 0.08, "random", seed=0)
    c, _ = cartesian_mask(4, 320, 4, 0.08, "random", seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="equispaced, random"):
        cartesian_mask(4, 320, 4, 0.08, "poisson", seed=0)
    with pytest.raises(ValueError, match="already reaches 4x"):
        cartesian_mask(4, 48, 4, 0.25, "equispaced", seed=0)


def test_cg_sense_solves_the_regularised_normal_equations():
    op, _, _ = random_operator(coils=4, h=16, w=16, seed=4)
    op = op.to(torch.float64)
    y = op.A(torch.randn(1, 2, 16, 16, dtype=torch.float64))
    lam = 0.05
    residuals = []
    for iterations in (2, 100):
        x = sense_least_squares(op, y, iterations=iterations, tikhonov=lam)
        r = op.A_adjoint(op.A(x)) + lam * x - op.A_adjoint(y)
        residuals.append(float(r.norm() / op.A_adjoint(y).norm()))
    assert residuals[1] < 1e-5 and residuals[0] > 1e-2  # deepinv CG (eps=1e-8 in its steps) stalls near 1e-7


@requires_bart
def test_bart_pics_l2_equals_our_cg_sense_on_the_same_data():
    """BART's own SENSE model (pics -l2, unitary centred FFT) and ours give the same
    Tikhonov solution: checks FFT centring, map layout and adjoint against BART."""
    from datamodules.sources.bart_io import run_bart, to_bart

    maps = simulated_maps(4, 24, 20)
    mask, _ = cartesian_mask(24, 20, 2, 0.2, "equispaced", seed=0)
    op = MultiCoilMRI(torch.from_numpy(maps), mask)
    y = op.A(torch.randn(1, 2, 24, 20)).double()
    lam = 0.1
    ours = sense_least_squares(op.to(torch.float64), y, iterations=100, tikhonov=lam)[0]
    kspace = torch.view_as_complex(y[0].float().contiguous()).numpy()
    theirs = np.squeeze(run_bart(f"pics -S -l2 -r {lam} -i 100", to_bart(kspace), to_bart(maps)))
    ours_c = ours[0].numpy() + 1j * ours[1].numpy()
    assert np.linalg.norm(theirs - ours_c) / np.linalg.norm(ours_c) < 1e-3
