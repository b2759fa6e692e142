import torch

from datamodules.operators import Identity


def dot_test(op, n_trials: int = 3, dtype=torch.float64) -> float:
    """max relative |<Ax, y> - <x, Aᵀy>| over random pairs (adjoint dot-test)."""
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    for _ in range(n_trials):
        x = torch.randn((1, *op.in_shape), generator=gen, dtype=dtype)
        y = torch.randn((1, *op.out_shape), generator=gen, dtype=dtype)
        lhs = (op.A(x) * y).sum()
        rhs = (x * op.A_adjoint(y)).sum()
        worst = max(worst, float((lhs - rhs).abs() / lhs.abs().clamp_min(1e-12)))
    return worst


def test_identity_is_self_adjoint_with_unit_norm():
    op = Identity((3, 16, 16))
    assert dot_test(op) < 1e-12
    assert abs(op.norm() - 1.0) < 1e-4
