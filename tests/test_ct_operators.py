"""CT operators: ASTRA projectors exported as torch.sparse matrices (adjointness,
gradients, agreement with ASTRA, disk cache) and the FBP-type images."""
from pathlib import Path

import astra
import numpy as np
import pytest
import scipy.sparse.linalg
import torch

from datamodules.operators.ct import (
    CTGeometry,
    CTOperator,
    astra_fbp,
    astra_projector,
    build_matrix,
    cached_matrix,
    fan_geometry,
    fbp_image,
    lsqr_reconstruction,
    operator_cache_dir,
    parallel_geometry,
)
from datamodules.operators.sparse import SparseMatrixOperator
from tests.test_operators_base import dot_test


def tiny_geometries(n=16):
    par = np.linspace(0, np.pi, 7, endpoint=False)
    fan = np.linspace(0, 2 * np.pi, 9, endpoint=False)
    return [parallel_geometry(n, par, projector=p) for p in ("line", "strip", "linear")] + [
        fan_geometry(n, fan, 12, 2.0 * n, 3.0 * n, projector=p) for p in ("line", "strip")
    ]


def phantom(n):
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    img = ((yy / (0.4 * n)) ** 2 + (xx / (0.3 * n)) ** 2 < 1).astype(np.float32)
    img[(np.abs(yy - 0.1 * n) < 0.1 * n) & (np.abs(xx) < 0.1 * n)] += 0.5
    return img


@pytest.mark.parametrize("geom", tiny_geometries(), ids=lambda g: f"{g.kind}-{g.projector}")
def test_sparse_operator_is_exactly_adjoint(geom, tmp_path):
    op = CTOperator(geom, scale=0.7, cache_dir=tmp_path, dtype=torch.float64)
    assert op.in_shape == (1, 16, 16) and op.out_shape == (1, geom.n_angles, geom.n_detectors)
    assert dot_test(op) < 1e-12


@pytest.mark.parametrize("geom", tiny_geometries()[1::3], ids=lambda g: g.kind)
def test_matrix_reproduces_astra_forward_projection(geom):
    img = phantom(geom.image_size)
    with astra_projector(geom) as pid:
        sid, sino = astra.create_sino(img, pid)
        astra.data2d.delete(sid)
    op = CTOperator(geom, cache=False)
    y = op.A(torch.from_numpy(img)[None, None])[0, 0].numpy()
    assert np.abs(y - sino).max() <= 1e-5 * np.abs(sino).max()


def test_gradcheck_forward_and_adjoint_float64():
    geom = parallel_geometry(8, np.linspace(0, np.pi, 3, endpoint=False), projector="strip")
    op = CTOperator(geom, cache=False, dtype=torch.float64)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, *op.out_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op.A, (x,))
    assert torch.autograd.gradcheck(op.A_adjoint, (y,))


def test_float32_operator_accepts_float64_input_and_moves_with_to():
    op = CTOperator(tiny_geometries()[1], cache=False)
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    assert op.A(x).dtype == torch.float64
    op = op.to(torch.float64)
    assert op.matrix.dtype == torch.float64 and op.matrix.layout == torch.sparse_csr


def test_cached_matrix_equals_fresh_one_and_key_depends_on_geometry(tmp_path):
    geom = tiny_geometries()[3]
    first = cached_matrix(geom, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert any(f.endswith(".npz") for f in files) and any(f.endswith(".json") for f in files)
    again = cached_matrix(geom, tmp_path)  # from disk
    fresh = build_matrix(geom)
    assert (again != fresh).nnz == 0 and (first != fresh).nnz == 0
    other = fan_geometry(16, geom.angles, 12, 2.5 * 16, 3.0 * 16)
    assert other.key() != geom.key()
    cached_matrix(other, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    x = torch.randn(1, 1, 16, 16)
    a, b = CTOperator(geom, cache_dir=tmp_path), CTOperator(geom, cache=False)
    assert torch.equal(a.A(x), b.A(x))


def test_cache_dir_follows_environment_else_the_user_cache_folder(monkeypatch, tmp_path):
    import platformdirs

    from datamodules.sources.paths import PROJECT_ROOT

    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    assert operator_cache_dir() == tmp_path / "operators"
    monkeypatch.delenv("DIPBENCH_CACHE")
    assert operator_cache_dir() == Path(platformdirs.user_cache_dir("dipbench", appauthor=False)) / "operators"
    assert PROJECT_ROOT not in operator_cache_dir().parents  # the project folder stays clean


def test_fan_beam_sees_every_pixel_in_every_view():
    geom = fan_geometry(16, np.linspace(0, 2 * np.pi, 5, endpoint=False), 10, 1.5 * 16, 2.0 * 16)
    m = build_matrix(geom).toarray().reshape(geom.n_angles, geom.n_detectors, -1)
    assert (m.sum(axis=1) > 0).all()


def test_invalid_geometry_is_rejected_with_valid_choices():
    with pytest.raises(ValueError, match="line, strip"):
        CTGeometry("fan", 16, (0.0,), 8, 1.0, 40.0, 40.0, projector="linear")
    with pytest.raises(ValueError, match="source outside"):
        fan_geometry(16, [0.0], 8, 5.0, 10.0)


def test_norm_matches_largest_singular_value():
    op = CTOperator(tiny_geometries()[1], scale=0.5, cache=False)
    sigma = scipy.sparse.linalg.svds(op.to_scipy(), k=1, return_singular_vectors=False)[0]
    assert abs(op.norm(n_iter=500, tol=1e-8) - sigma) < 1e-3 * sigma


def test_astra_fbp_inverts_dense_parallel_data_and_respects_scale():
    n = 32
    geom = parallel_geometry(n, np.linspace(0, np.pi, 90, endpoint=False), projector="linear")
    x = torch.from_numpy(phantom(n))[None, None]
    fbp = {}
    for s in (1.0, 0.25):
        op = CTOperator(geom, scale=s, cache=False)
        fbp[s] = astra_fbp(op, op.A(x))
    assert float((fbp[1.0] - x).norm() / x.norm()) < 0.25  # Ram-Lak FBP of noiseless dense data
    assert torch.allclose(fbp[1.0], fbp[0.25], atol=1e-4)  # scale is undone
    nothing = astra_fbp(op, torch.zeros_like(op.A(x)))
    assert float(nothing.abs().max()) == 0.0


def test_fan_beam_fbp_is_lsqr_and_reduces_the_residual():
    geom = tiny_geometries(24)[3]
    op = CTOperator(geom, cache=False)
    x = torch.from_numpy(phantom(24))[None, None]
    y = op.A(x)
    image, how = fbp_image(op, y, lsqr_iterations=8)
    assert "LSQR" in how and image.shape == x.shape
    residuals = [float((op.A(lsqr_reconstruction(op, y, k)) - y).norm()) for k in (1, 4, 16)]
    assert residuals[0] > residuals[1] > residuals[2]
    assert torch.allclose(image, lsqr_reconstruction(op, y, 8))
    with pytest.raises(ValueError, match="parallel-beam only"):
        astra_fbp(op, y)


def test_generic_sparse_operator_checks_shape():
    m = scipy.sparse.random(6, 12, density=0.5, random_state=0)
    with pytest.raises(ValueError, match="expected"):
        SparseMatrixOperator(m, (1, 3, 3), (1, 6))
    assert dot_test(SparseMatrixOperator(m, (1, 3, 4), (1, 6), dtype=torch.float64)) < 1e-12
