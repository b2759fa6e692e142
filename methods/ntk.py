"""The empirical neural tangent kernel of a DIP network at its initialisation (Survey A §II-B,
eqs (3)–(6); Survey B §5.1, Fig. 3).

For the network output f_θ(z) ∈ ℝⁿ (the flattened reconstruction space) and its Jacobian
J = ∂f/∂θ at θ₀, the NTK is K = J Jᵀ (n × n). J itself (n × #parameters) is never formed:
K V = J (Jᵀ V) is a vector–Jacobian product (``torch.func.vjp``) and a Jacobian–vector
product (``torch.func.jvp``), batched over the columns of V with ``torch.func.vmap``.

* :func:`ntk_matmul` — V ↦ K V;
* :func:`empirical_ntk` — the full K from n matvecs on the unit vectors (a 1-D signal);
* :func:`top_eigenpairs` — the top-k eigenpairs of K: exact (``torch.linalg.eigh`` of the
  formed K) for small n, else randomised block subspace iteration on the matvec with a
  Rayleigh–Ritz step (Halko, Martinsson & Tropp 2011, Alg. 4.4 and 5.3), which returns each
  pair's relative residual ‖Kv − λv‖/λ so its accuracy is on record.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, jvp, vjp, vmap

TANGENT_BUDGET = 2 ** 24  # floats of Jᵀ V held at once (block size × #parameters), ≈ 64 MB in float32


def _output_fn(net: torch.nn.Module, z: torch.Tensor, dtype: torch.dtype):
    """(θ₀ as a dict of detached tensors in ``dtype``, θ ↦ f_θ(z) flattened); buffers stay fixed."""
    params = {k: p.detach().to(dtype) for k, p in net.named_parameters()}
    buffers = {k: b.detach().to(dtype) if b.is_floating_point() else b for k, b in net.named_buffers()}
    z = z.detach().to(dtype)

    def f(theta: dict) -> torch.Tensor:
        return functional_call(net, {**theta, **buffers}, (z,)).reshape(-1)

    return params, f


def ntk_matmul(net: torch.nn.Module, z: torch.Tensor, dtype: torch.dtype = torch.float32
               ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, int]:
    """``(matmul, f₀, block)``: ``matmul(V)`` for V of shape (n, b) returns K V = J (Jᵀ V) (n, b) in
    ``dtype``; f₀ = f_θ₀(z) flattened (n,); ``block`` is the number of columns that fit
    :data:`TANGENT_BUDGET` (callers split V into such blocks). Survey A eq. (6): K = J Jᵀ at θ₀."""
    params, f = _output_fn(net, z, dtype)
    f0, pullback = vjp(f, params)
    n_params = sum(p.numel() for p in params.values())

    def push(tangent: dict) -> torch.Tensor:
        return jvp(f, (params,), (tangent,))[1]

    def matmul(v: torch.Tensor) -> torch.Tensor:
        cotangents = v.T.to(dtype).contiguous()  # (b, n)
        tangents = vmap(pullback)(cotangents)[0]  # Jᵀ v per column: a dict of (b, *parameter shape)
        return vmap(push)(tangents).T.detach()  # J Jᵀ v: (n, b)

    return matmul, f0.detach(), max(1, min(256, TANGENT_BUDGET // max(n_params, 1)))


def _blocked(matmul: Callable, block: int, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([matmul(v[:, i:i + block]) for i in range(0, v.shape[1], block)], dim=1)


def empirical_ntk(net: torch.nn.Module, z: torch.Tensor, dtype: torch.dtype = torch.float64
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, f₀)``: the empirical NTK K = J Jᵀ (n × n, symmetrised against round-off), formed from n
    matvecs on the unit vectors, and the initial output f₀ (n,), both in ``dtype`` (float64 by
    default: a deep network's K has a condition number beyond float32's resolution)."""
    matmul, f0, block = ntk_matmul(net, z, dtype)
    kernel = _blocked(matmul, block, torch.eye(f0.numel(), dtype=dtype, device=f0.device))
    return 0.5 * (kernel + kernel.T), f0


def top_eigenpairs(net: torch.nn.Module, z: torch.Tensor, k: int, dense_limit: int = 1024, oversample: int = 16,
                   power_iterations: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(λ, V, r)``: the k largest eigenvalues of K = J Jᵀ (descending), their unit eigenvectors as
    columns of V (n, k) and the relative residuals r_i = ‖K v_i − λ_i v_i‖/λ_i. For n ≤
    ``dense_limit`` K is formed and diagonalised exactly; above it, ``power_iterations`` steps
    of block subspace iteration from a seeded Gaussian block of k + ``oversample`` columns,
    then Rayleigh–Ritz ((q + 1)(k + p) matvecs in all)."""
    matmul, f0, block = ntk_matmul(net, z, dtype)
    n = f0.numel()
    if not 1 <= k <= n:
        raise ValueError(f"asked for {k} eigenvectors of an NTK of size {n}; use 1 <= k <= {n}")
    if n <= dense_limit:
        kernel = _blocked(matmul, block, torch.eye(n, dtype=dtype, device=f0.device))
        values, vectors = torch.linalg.eigh(0.5 * (kernel + kernel.T).double())
        values, vectors = values.flip(0)[:k].to(dtype), vectors.flip(1)[:, :k].to(dtype)
        kv = kernel @ vectors
    else:
        width = min(n, k + oversample)
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn((n, width), generator=gen, dtype=dtype).to(f0.device))
        for _ in range(power_iterations):
            q, _ = torch.linalg.qr(_blocked(matmul, block, q))
        kq = _blocked(matmul, block, q)
        t = q.T @ kq
        values, w = torch.linalg.eigh(0.5 * (t + t.T).double())
        w = w.flip(1)[:, :k].to(dtype)
        values, vectors, kv = values.flip(0)[:k].to(dtype), q @ w, kq @ w
    residuals = (kv - vectors * values).norm(dim=0) / values.abs().clamp_min(torch.finfo(dtype).tiny)
    return values, vectors, residuals


def condition_number(eigenvalues: torch.Tensor) -> float:
    """λ_max / λ_min of a positive semi-definite kernel (inf when λ_min ≤ 0 in floating point)."""
    lo, hi = float(eigenvalues.min()), float(eigenvalues.max())
    return hi / lo if lo > 0 else float("inf")
