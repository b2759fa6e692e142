"""Row blocks of a sparse-matrix operator (ordered subsets of CT angles), for stochastic
gradients of the data term (Survey B §5.3; Ehrhardt et al. 2025)."""
from __future__ import annotations

import numpy as np

from datamodules.operators.sparse import SparseMatrixOperator


def angle_subsets(n_angles: int, count: int) -> list[np.ndarray]:
    """``count`` interleaved subsets of the angles: subset b = angles b, b + count, b + 2·count, …
    (each spans the whole angular range)."""
    if not 1 <= count <= n_angles:
        raise ValueError(f"method.subsets = {count}: needs 1 … {n_angles} (the task's number of angles)")
    return [np.arange(b, n_angles, count) for b in range(count)]


def angle_block_operators(op: SparseMatrixOperator, subsets: list[np.ndarray]) -> list[SparseMatrixOperator]:
    """A_b: the rows of ``op`` (out shape ``(1, n_angles, n_detectors)``, angle-major rows) of the
    angles in each subset, as operators ``(1, N, N) → (1, |subset|, n_detectors)``."""
    if not isinstance(op, SparseMatrixOperator) or len(op.out_shape) != 3:
        raise ValueError(f"stochastic subsets need a sparse-matrix CT operator with a (1, angles, detectors) "
                         f"sinogram; got {type(op).__name__} with output {tuple(getattr(op, 'out_shape', ()))}")
    matrix = op.to_scipy()
    n_det = op.out_shape[-1]
    blocks = []
    for angles in subsets:
        rows = (angles[:, None] * n_det + np.arange(n_det)[None]).ravel()
        blocks.append(SparseMatrixOperator(matrix[rows], op.in_shape, (1, len(angles), n_det),
                                           dtype=op.matrix.values().dtype))
    return blocks
