"""Operators of the natural-image tasks: inpainting masks, linear blur, nonlinear blur."""
import deepinv as dinv
import pytest
import torch

from datamodules.operators.blur import PADDINGS, BlurOperator, make_kernel
from datamodules.operators.inpainting import MASK_TYPES, MaskOperator, make_mask
from datamodules.operators.nonlinear_blur import LearnedBlur, NonlinearBlur, load_blur_model
from tests.test_operators_base import dot_test

# -- inpainting -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MASK_TYPES)
@pytest.mark.parametrize("size", [(64, 64), (30, 50)])
def test_mask_has_the_requested_hole_ratio(kind, size):
    mask = make_mask(kind, size, 0.25, seed=3, block_size=8)
    assert mask.shape == (1, 1, *size)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    ratio = 1.0 - float(mask.mean())
    H, W = size
    # random: exact pixel count; box: off by at most one row/column of the hole;
    # blocks: off by at most half a block
    tol = {"random": 0.5 / (H * W), "box": (H + W) / (H * W), "blocks": 0.5 * 8**2 / (H * W)}[kind]
    assert abs(ratio - 0.25) <= tol
    if kind == "random":
        assert round(0.25 * H * W) == int((mask == 0).sum())


def test_blocks_mask_is_exact_when_the_block_divides_the_image():
    mask = make_mask("blocks", (64, 64), 0.25, seed=0, block_size=8)
    assert 1.0 - float(mask.mean()) == 0.25
    cells = mask[0, 0].unfold(0, 8, 8).unfold(1, 8, 8)  # each 8×8 cell is all-hole or all-observed
    assert torch.all(cells.amin((-1, -2)) == cells.amax((-1, -2)))


def test_box_mask_is_one_rectangle():
    mask = make_mask("box", (64, 64), 0.25, seed=5)[0, 0]
    rows, cols = torch.where(mask == 0)
    h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert h * w == int((mask == 0).sum()) == 32 * 32  # a filled box of area 0.25·64²


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_masks_are_seeded(kind):
    a = make_mask(kind, (32, 32), 0.25, seed=1, block_size=4)
    b = make_mask(kind, (32, 32), 0.25, seed=1, block_size=4)
    c = make_mask(kind, (32, 32), 0.25, seed=2, block_size=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_mask_operator_is_a_self_adjoint_projection():
    mask = make_mask("random", (12, 10), 0.25, seed=0)
    op = MaskOperator(mask, channels=3)
    assert op.in_shape == op.out_shape == (3, 12, 10)
    assert dot_test(op) < 1e-12
    x = torch.randn(2, 3, 12, 10, dtype=torch.float64)
    assert torch.equal(op.A(x), op.A_adjoint(x))
    assert torch.equal(op.A(op.A(x)), op.A(x))
    holes = (mask == 0).expand_as(x)
    assert torch.all(op.A(x)[holes] == 0) and torch.equal(op.A(x)[~holes], x[~holes])  # all channels share holes
    assert abs(op.norm() - 1.0) < 1e-3
    assert abs(op.hole_ratio - 0.25) < 1e-6
    assert "mask" in dict(op.named_buffers())


def test_mask_errors_say_what_is_valid():
    with pytest.raises(KeyError, match="random, box, blocks"):
        make_mask("circle", (8, 8), 0.25, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        make_mask("random", (8, 8), 1.0, seed=0)
    with pytest.raises(ValueError, match="binary"):
        MaskOperator(torch.full((8, 8), 0.5), channels=1)


# -- linear blur ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "motion"])
def test_kernels_are_normalised_psfs(kind):
    k = make_kernel(kind, 9, sigma=1.5, seed=4)
    assert k.shape == (1, 1, 9, 9)
    assert torch.all(k >= 0) and abs(float(k.sum()) - 1.0) < 1e-5


def test_motion_kernels_are_seeded():
    a, b, c = (make_kernel("motion", 9, seed=s) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("kind", ["gaussian", "motion"])
def test_blur_adjoint_dot_test(kind, padding):
    op = BlurOperator(make_kernel(kind, 7, sigma=1.5, seed=2), (3, 12, 16), padding)
    assert op.in_shape == op.out_shape == (3, 12, 16)
    assert op.A(torch.zeros(1, 3, 12, 16)).shape == (1, 3, 12, 16)
    assert dot_test(op) < 1e-10


def test_circular_blur_matches_deepinv_fft_blur():
    """Independent check of the convolution: periodic boundary = deepinv's BlurFFT."""
    k = make_kernel("motion", 7, seed=1)
    op = BlurOperator(k, (2, 16, 16), "circular")
    fft = dinv.physics.BlurFFT(img_size=(2, 16, 16), filter=k)
    x = torch.rand(1, 2, 16, 16)
    assert torch.allclose(op.A(x), fft.A(x), atol=1e-5)
    assert torch.allclose(op.A_adjoint(x), fft.A_adjoint(x), atol=1e-5)


def test_blur_preserves_a_constant_image_with_reflect_boundary():
    op = BlurOperator(make_kernel("gaussian", 7, sigma=2.0), (1, 10, 10), "reflect")
    x = torch.full((1, 1, 10, 10), 0.3)
    assert torch.allclose(op.A(x), x, atol=1e-6)


def test_blur_errors_say_what_to_do():
    with pytest.raises(ValueError, match="odd"):
        make_kernel("gaussian", 8, sigma=1.0)
    with pytest.raises(ValueError, match="smaller kernel_size"):
        BlurOperator(make_kernel("gaussian", 9, sigma=1.0), (1, 4, 4))
    with pytest.raises(ValueError, match="valid: reflect"):
        BlurOperator(make_kernel("gaussian", 3, sigma=1.0), (1, 8, 8), "mirror")
    with pytest.raises(KeyError, match="gaussian, motion"):
        make_kernel("box", 3)


# -- nonlinear blur -------------------------------------------------------------------------


def _nonlinear(response, shape=(1, 6, 6)):
    blur = BlurOperator(make_kernel("motion", 3, seed=0), shape, "reflect")
    return NonlinearBlur(blur, response=response, alpha=1.0, gamma=2.2)


@pytest.mark.parametrize("response", ["tanh", "gamma"])
def test_nonlinear_blur_is_differentiable(response):
    op = _nonlinear(response)
    gen = torch.Generator().manual_seed(0)
    x = (0.1 + 0.8 * torch.rand((1, *op.in_shape), generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(op.A, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("response", ["tanh", "gamma"])
def test_nonlinear_blur_is_not_linear(response):
    op = _nonlinear(response)
    gen = torch.Generator().manual_seed(1)
    a, b = (0.4 * torch.rand((1, *op.in_shape), generator=gen) for _ in range(2))
    additivity_gap = (op.A(a + b) - op.A(a) - op.A(b)).norm() / op.A(a + b).norm()
    homogeneity_gap = (op.A(2 * a) - 2 * op.A(a)).norm() / op.A(2 * a).norm()
    assert additivity_gap > 0.05 and homogeneity_gap > 0.05
    assert op.linear is False and isinstance(op, dinv.physics.Physics)


@pytest.mark.parametrize("response", ["tanh", "gamma"])
def test_response_curve_is_a_monotone_tone_curve_with_an_inverse(response):
    op = _nonlinear(response)
    u = torch.linspace(0, 1, 101, dtype=torch.float64)
    g = op.curve(u)
    assert abs(float(g[0])) < 1e-12 and abs(float(g[-1]) - 1.0) < 1e-12
    assert torch.all(g[1:] > g[:-1])
    assert torch.all(g[1:-1] > u[1:-1])  # concave: brightens mid-tones (camera response)
    assert torch.allclose(op.inverse_curve(g), u, atol=1e-9)


class _TinyBlurNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # TorchScript is deprecated in recent torch but still loads
@pytest.mark.parametrize("fmt", ["pt2", "torchscript"])
def test_learned_blur_model_plugs_in_from_a_file(tmp_path, fmt):
    torch.manual_seed(0)
    net = _TinyBlurNet().eval()
    x = torch.rand(1, 3, 8, 8)
    if fmt == "pt2":
        path = tmp_path / "blur.pt2"
        torch.export.save(torch.export.export(net, (x,)), str(path))
    else:
        path = tmp_path / "blur.pt"
        torch.jit.script(net).save(str(path))
    op = LearnedBlur.from_path(path, (3, 8, 8))
    assert op.out_shape == (3, 8, 8)
    assert torch.allclose(op.A(x), net(x), atol=1e-6)
    xr = x.clone().requires_grad_()
    op.A(xr).sum().backward()
    assert xr.grad is not None and xr.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in op.parameters())  # the blur model stays frozen


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_learned_blur_loading_errors_say_how_to_export(tmp_path):
    with pytest.raises(FileNotFoundError, match="torch.export"):
        load_blur_model(tmp_path / "missing.pt2")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="TorchScript"):
        load_blur_model(bad)
