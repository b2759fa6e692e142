"""A fixed sparse matrix as a differentiable linear operator (torch.sparse CSR).

Used for CT: ASTRA's projector is exported once as a scipy matrix (or the published
walnut matrix is loaded) and applied with ``torch.sparse.mm``. The adjoint is the
transpose of the same stored values, so ⟨Ax, y⟩ = ⟨x, Aᵀy⟩ holds to rounding.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse
import torch

from datamodules.operators.base import LinearOperator


def to_torch_csr(matrix: scipy.sparse.spmatrix, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A scipy sparse matrix as a torch CSR tensor (indices int64)."""
    csr = scipy.sparse.csr_matrix(matrix)
    csr.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr.astype(np.int64)),
            torch.from_numpy(csr.indices.astype(np.int64)),
            torch.from_numpy(np.asarray(csr.data)).to(dtype),
            size=csr.shape,
            check_invariants=False,  # built from a valid scipy CSR
        )


def to_scipy_csr(matrix: torch.Tensor) -> scipy.sparse.csr_matrix:
    """Inverse of :func:`to_torch_csr` (float64 values)."""
    m = matrix.detach().cpu()
    return scipy.sparse.csr_matrix(
        (m.values().double().numpy(), m.col_indices().numpy(), m.crow_indices().numpy()), shape=tuple(m.shape)
    )


class _SparseMatmul(torch.autograd.Function):
    """out = M @ x (x is ``(n, B)``); the gradient is Mᵀ @ g with the stored transpose."""

    @staticmethod
    def forward(ctx, x, matrix, matrix_t):
        ctx.save_for_backward(matrix, matrix_t)
        return torch.sparse.mm(matrix, x)

    @staticmethod
    def backward(ctx, grad):
        matrix, matrix_t = ctx.saved_tensors
        return torch.sparse.mm(matrix_t, grad.contiguous()), None, None


def _matched(matrix: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if matrix.dtype == like.dtype and matrix.device == like.device:
        return matrix
    return matrix.to(device=like.device, dtype=like.dtype)


class SparseMatrixOperator(LinearOperator):
    """y = M x, with M a sparse ``(prod(out_shape), prod(in_shape))`` matrix acting on
    row-major flattened images. M and Mᵀ are CSR buffers (``.to(device)`` moves them)."""

    def __init__(self, matrix: scipy.sparse.spmatrix, in_shape, out_shape, dtype: torch.dtype = torch.float32, **kwargs):
        super().__init__(in_shape=in_shape, out_shape=out_shape, **kwargs)
        m, n = int(np.prod(self.out_shape)), int(np.prod(self.in_shape))
        if matrix.shape != (m, n):
            raise ValueError(f"matrix has shape {matrix.shape}, expected {(m, n)} for {self.in_shape} -> {self.out_shape}")
        csr = scipy.sparse.csr_matrix(matrix)
        self.register_buffer("matrix", to_torch_csr(csr, dtype))
        self.register_buffer("matrix_t", to_torch_csr(csr.T.tocsr(), dtype))

    def _matmul(self, t: torch.Tensor, fwd: torch.Tensor, bwd: torch.Tensor, shape) -> torch.Tensor:
        batch = t.shape[0]
        flat = t.reshape(batch, -1).transpose(0, 1).contiguous()  # (n, B)
        out = _SparseMatmul.apply(flat, _matched(fwd, t), _matched(bwd, t))
        return out.transpose(0, 1).reshape(batch, *shape)

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self._matmul(x, self.matrix, self.matrix_t, self.out_shape)

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        return self._matmul(y, self.matrix_t, self.matrix, self.in_shape)

    def frobenius_sq(self, probes: int = 64) -> float:
        """‖M‖_F², exactly: the sum of the squared stored entries."""
        return float(self.matrix.values().double().pow(2).sum())

    def to_scipy(self) -> scipy.sparse.csr_matrix:
        """The matrix as scipy CSR (float64), e.g. for scipy's LSQR."""
        return to_scipy_csr(self.matrix)
