"""The forward-operator interface every task uses.

Operators are deepinv ``Physics`` objects, so deepinv's proximal operators,
denoisers and algorithms accept them unchanged. They act on batched tensors
``(B, *in_shape) -> (B, *out_shape)``. Measurement noise is *not* part of the
operator: the task adds it once, with its own seed, so ``A`` stays deterministic.
"""
from __future__ import annotations

import deepinv as dinv
import torch


class NonlinearOperator(dinv.physics.Physics):
    """y = A(x) with A differentiable but not linear (no adjoint assumed)."""

    linear = False

    def __init__(self, in_shape, out_shape, **kwargs):
        super().__init__(**kwargs)
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} must implement A(x)")


class LinearOperator(dinv.physics.LinearPhysics):
    """y = A x with an exact adjoint ``A_adjoint``; subclasses implement both."""

    linear = True

    def __init__(self, in_shape, out_shape, **kwargs):
        super().__init__(**kwargs)
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)

    def norm(self, n_iter: int = 100, tol: float = 1e-5) -> float:
        """Spectral norm ‖A‖₂ by power iteration on AᵀA (deepinv's ``compute_norm``)."""
        return spectral_norm(self, n_iter=n_iter, tol=tol)

    def frobenius_sq(self, probes: int = 64) -> float:
        """‖A‖_F² = trace(AᵀA), the sum of squared column norms: Hutchinson's estimate
        E‖Aε‖² over ``probes`` seeded Rademacher vectors ε (deterministic; a few % error).
        Operators with a cheap exact value override it (identity, masks, sparse matrices)."""
        return hutchinson_frobenius_sq(self, probes)


def hutchinson_frobenius_sq(op: LinearOperator, probes: int = 64) -> float:
    """trace(AᵀA) ≈ mean_k ‖A ε_k‖², ε_k Rademacher, from a fixed seed (Hutchinson 1989)."""
    device = next((b.device for b in op.buffers()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    signs = torch.randint(0, 2, (probes, *op.in_shape), generator=gen).float().mul_(2).sub_(1).to(device)
    with torch.no_grad():
        total = sum(float(op.A(signs[k:k + 1]).abs().pow(2).sum()) for k in range(probes))
    return total / probes


def spectral_norm(op: LinearOperator, n_iter: int = 100, tol: float = 1e-5) -> float:
    """‖A‖₂ of a linear operator, by power iteration (deterministic start)."""
    dtype = torch.float32
    device = next((b.device for b in op.buffers()), torch.device("cpu"))
    x0 = torch.zeros((1, *op.in_shape), dtype=dtype, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        value = op.compute_norm(x0, max_iter=n_iter, tol=tol, verbose=False, squared=False)
    return float(value)


class Identity(LinearOperator):
    """A = I (Gaussian denoising: y = x + η)."""

    def __init__(self, shape):
        super().__init__(in_shape=shape, out_shape=shape)

    def frobenius_sq(self, probes: int = 64) -> float:
        n = 1
        for d in self.in_shape:
            n *= d
        return float(n)

    def A(self, x, **kwargs):
        return x

    def A_adjoint(self, y, **kwargs):
        return y
