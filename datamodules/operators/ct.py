"""2D CT: ASTRA's CPU projectors as cached sparse matrices, and the FBP-type images.

The ray transform of a 2D geometry (parallel beam or flat-detector fan beam) is
exported once from ASTRA (``astra.projector.matrix``) and applied with torch.sparse
(:class:`SparseMatrixOperator`): exactly adjoint, differentiable, and faster than
calling ASTRA at every DIP step. Matrices are cached on disk, keyed by a hash of the
geometry, in ``$DIPBENCH_CACHE/operators`` or the user's cache folder
(:func:`datamodules.sources.paths.cache_root`).

Exactness: ASTRA's matrix export stores at most a fixed number of weights per ray (for
the fan-beam strip kernel 10·N+1 for an N² image) and silently drops the rest, which
at 501² loses up to 14 % of a central ray. :func:`build_matrix` therefore rebuilds every
ray that fills that buffer from ASTRA's own back-projection of that single ray, so the
matrix equals ASTRA's forward projection to float32 rounding at every size
(tests/test_ct_exact.py).

Units: ASTRA's volume has unit pixels, so the matrix holds intersection lengths in
pixels; ``CTOperator(scale=s)`` multiplies it by the physical pixel size ``s``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import astra
import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from datamodules.operators.sparse import SparseMatrixOperator
from datamodules.sources.paths import cache_dir

# ASTRA CPU projector names per beam type ("linear" is parallel-beam only).
PROJECTORS = {"parallel": ("line", "strip", "linear"), "fan": ("line", "strip")}
# Version of how matrices are built (part of the cache key): 2 = truncated rays rebuilt exactly.
MATRIX_BUILD = 2


@dataclass(frozen=True)
class CTGeometry:
    """A 2D acquisition geometry in ASTRA's units (the image is ``image_size``² unit
    pixels centred at the origin). ``angles`` in radians; ``source_origin`` and
    ``origin_detector`` are the fan-beam distances (0 for parallel beam)."""

    kind: str  # "parallel" | "fan"
    image_size: int
    angles: tuple[float, ...]
    n_detectors: int
    detector_spacing: float = 1.0
    source_origin: float = 0.0
    origin_detector: float = 0.0
    projector: str = "strip"

    def __post_init__(self):
        if self.image_size < 1 or self.n_detectors < 1 or not len(self.angles):
            raise ValueError(f"CT geometry needs image_size, n_detectors and angles >= 1, got {self.image_size}, "
                             f"{self.n_detectors}, {len(self.angles)}")
        if not (math.isfinite(self.detector_spacing) and self.detector_spacing > 0):
            raise ValueError(f"detector_spacing must be a positive number, got {self.detector_spacing}")
        if not all(math.isfinite(a) for a in self.angles):
            raise ValueError("CT angles must be finite numbers")
        if self.kind not in PROJECTORS:
            raise ValueError(f"unknown CT geometry {self.kind!r}; valid: {', '.join(PROJECTORS)}")
        if self.projector not in PROJECTORS[self.kind]:
            raise ValueError(f"ASTRA has no CPU {self.kind}-beam projector {self.projector!r}; "
                             f"valid: {', '.join(PROJECTORS[self.kind])}")
        if self.kind == "fan" and not (self.source_origin > self.image_size / math.sqrt(2) and self.origin_detector > 0):
            raise ValueError("fan beam needs the source outside the image (source_origin > image_size/√2) "
                             "and origin_detector > 0")

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    def key(self) -> str:
        """Hash of everything that determines the matrix (and the ASTRA version)."""
        text = json.dumps({**asdict(self), "astra": astra.__version__, "build": MATRIX_BUILD}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def astra_geometries(self) -> tuple[dict, dict]:
        vol = astra.create_vol_geom(self.image_size, self.image_size)
        angles = np.asarray(self.angles, dtype=np.float64)
        if self.kind == "parallel":
            proj = astra.create_proj_geom("parallel", self.detector_spacing, self.n_detectors, angles)
        else:
            proj = astra.create_proj_geom(
                "fanflat", self.detector_spacing, self.n_detectors, angles, self.source_origin, self.origin_detector
            )
        return vol, proj

    def astra_projector_type(self) -> str:
        return self.projector if self.kind == "parallel" else f"{self.projector}_fanflat"


def parallel_geometry(image_size: int, angles, n_detectors: int | None = None, projector: str = "strip",
                      detector_spacing: float | None = None) -> CTGeometry:
    """Parallel beam (lengths in pixels). By default the detector spans the image
    diagonal: ⌈√2·N⌉ unit bins, or ``n_detectors`` bins of ⌈√2·N⌉/n_detectors. A given
    ``detector_spacing`` is used as is (with ``n_detectors`` bins, default: enough to
    span the diagonal)."""
    span = math.ceil(math.sqrt(2) * image_size)
    if detector_spacing is None:
        n = n_detectors or span
        detector_spacing = span / n
    else:
        n = n_detectors or math.ceil(span / detector_spacing)
    return CTGeometry("parallel", image_size, tuple(float(a) for a in angles), n, float(detector_spacing),
                      projector=projector)


def fan_geometry(image_size: int, angles, n_detectors: int, source_origin: float, origin_detector: float,
                 projector: str = "strip", detector_spacing: float | None = None) -> CTGeometry:
    """Flat-detector fan beam (distances in pixels, ``detector_spacing`` measured on the
    detector). By default the fan just covers the image's circumscribed circle: a ray
    tangent to radius r hits the detector at r·(s+d)/√(s²−r²) from its centre."""
    r = image_size / math.sqrt(2)
    if source_origin <= r:
        raise ValueError(f"fan beam needs the source outside the image: source_origin {source_origin:g} <= {r:g} (image_size/√2)")
    if detector_spacing is None:
        half_width = r * (source_origin + origin_detector) / math.sqrt(source_origin**2 - r**2)
        detector_spacing = 2 * half_width / n_detectors
    return CTGeometry("fan", image_size, tuple(float(a) for a in angles), n_detectors, float(detector_spacing),
                      source_origin, origin_detector, projector)


@contextmanager
def astra_projector(geom: CTGeometry):
    """An ASTRA CPU projector id for ``geom``, deleted afterwards."""
    vol, proj = geom.astra_geometries()
    pid = astra.create_projector(geom.astra_projector_type(), proj, vol)
    try:
        yield pid
    finally:
        astra.projector.delete(pid)


def build_matrix(geom: CTGeometry) -> scipy.sparse.csr_matrix:
    """ASTRA's projector as a ``(n_angles·n_detectors, N²)`` float32 CSR matrix; rows in
    ASTRA's sinogram order (angle-major), columns the row-major image.

    ASTRA's export keeps at most a fixed number of weights per ray (its
    ``getProjectionWeightsCount``) and drops the rest without notice. A truncated ray
    has exactly that many entries, so it is among the rays with the largest entry
    count; those rays are rebuilt from ASTRA's back-projection of the single ray
    (:func:`ray_weights`) and replace the exported ones wherever they have more entries.
    """
    with astra_projector(geom) as pid:
        mid = astra.projector.matrix(pid)
        try:
            matrix = astra.matrix.get(mid)
        finally:
            astra.matrix.delete(mid)
    matrix = scipy.sparse.csr_matrix(matrix, dtype=np.float32)
    counts = np.diff(matrix.indptr)
    if not matrix.nnz:
        return matrix
    full = np.flatnonzero(counts == counts.max())  # every truncated ray is among these
    rows, cols, vals = ray_weights(geom, full)
    truncated = full[np.bincount(rows, minlength=matrix.shape[0])[full] > counts[full]]
    if not len(truncated):
        return matrix
    keep = np.ones(matrix.shape[0], dtype=np.float32)
    keep[truncated] = 0.0
    kept = scipy.sparse.diags(keep, format="csr") @ matrix
    kept.eliminate_zeros()
    new = np.isin(rows, truncated)
    rebuilt = scipy.sparse.csr_matrix((vals[new], (rows[new], cols[new])), shape=matrix.shape, dtype=np.float32)
    return (kept + rebuilt).tocsr()


def ray_weights(geom: CTGeometry, rays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matrix rows of ``rays`` (indices into the angle-major sinogram) as COO triplets
    ``(rows, cols, values)``: each ray is back-projected alone by ASTRA's CPU ``BP``
    (the ray as its own sinogram mask, so ASTRA computes only that ray), which applies
    exactly the weights its forward projection uses (about 2 ms per ray at 501²)."""
    vol, proj = geom.astra_geometries()
    one_hot = np.zeros((geom.n_angles, geom.n_detectors), dtype=np.float32)
    rows, cols, vals = [], [], []
    with astra_projector(geom) as pid:
        sid = astra.data2d.create("-sino", proj, 0.0)
        rid = astra.data2d.create("-vol", vol, 0.0)
        cfg = astra.astra_dict("BP")
        cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, option={"SinogramMaskId": sid})
        aid = astra.algorithm.create(cfg)
        try:
            for ray in np.asarray(rays, dtype=np.int64).ravel():
                one_hot.flat[ray] = 1.0
                astra.data2d.store(sid, one_hot)
                one_hot.flat[ray] = 0.0
                astra.algorithm.run(aid)
                image = astra.data2d.get_shared(rid).ravel()
                nonzero = np.flatnonzero(image)
                rows.append(np.full(nonzero.size, ray, dtype=np.int64))
                cols.append(nonzero)
                vals.append(image[nonzero].astype(np.float32))
        finally:
            astra.algorithm.delete(aid)
            astra.data2d.delete([sid, rid])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def operator_cache_dir() -> Path:
    """``$DIPBENCH_CACHE/operators`` if set, else ``operators`` in the user's cache folder."""
    return cache_dir("operators")


def cached_matrix(geom: CTGeometry, cache_dir: Path | None = None) -> scipy.sparse.csr_matrix:
    """The geometry's matrix from the disk cache, building and storing it on a miss.
    Written to a temporary file then renamed, so concurrent runs never read half a file."""
    folder = Path(cache_dir) if cache_dir is not None else operator_cache_dir()
    path = folder / f"ct_{geom.kind}_{geom.image_size}_{geom.key()}.npz"
    if path.exists():
        return scipy.sparse.load_npz(path).tocsr()
    matrix = build_matrix(geom)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as tmp:
        scipy.sparse.save_npz(tmp, matrix)
    os.replace(tmp.name, path)
    path.with_suffix(".json").write_text(json.dumps({**asdict(geom), "astra": astra.__version__}, indent=1))
    return matrix


class CTOperator(SparseMatrixOperator):
    """Ray transform of a :class:`CTGeometry`: ``(1, N, N) -> (1, n_angles, n_detectors)``,
    times ``scale`` (the pixel size in the unit wanted for line integrals)."""

    def __init__(self, geometry: CTGeometry, scale: float = 1.0, cache: bool = True, cache_dir: Path | None = None,
                 dtype: torch.dtype = torch.float32):
        matrix = cached_matrix(geometry, cache_dir) if cache else build_matrix(geometry)
        n = geometry.image_size
        super().__init__(matrix * scale, (1, n, n), (1, geometry.n_angles, geometry.n_detectors), dtype=dtype)
        self.geometry = geometry
        self.scale = float(scale)


def astra_fbp(op: CTOperator, y: torch.Tensor, filter_type: str = "ram-lak") -> torch.Tensor:
    """ASTRA's CPU filtered back-projection (parallel beam only) of ``y`` ``(1, 1, A, D)``."""
    geom = op.geometry
    if geom.kind != "parallel":
        raise ValueError("ASTRA's CPU FBP is parallel-beam only; use lsqr_reconstruction for fan beam")
    vol, proj = geom.astra_geometries()
    sino = np.ascontiguousarray(y.detach().cpu().double().numpy().reshape(geom.n_angles, geom.n_detectors) / op.scale)
    with astra_projector(geom) as pid:
        sid = astra.data2d.create("-sino", proj, sino.astype(np.float32))
        rid = astra.data2d.create("-vol", vol, 0.0)
        cfg = astra.astra_dict("FBP")
        cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, option={"FilterType": filter_type})
        aid = astra.algorithm.create(cfg)
        try:
            astra.algorithm.run(aid)
            image = astra.data2d.get(rid)
        finally:
            astra.algorithm.delete(aid)
            astra.data2d.delete([sid, rid])
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).reshape(1, *op.in_shape)


def lsqr_reconstruction(op: SparseMatrixOperator, y: torch.Tensor, iterations: int) -> torch.Tensor:
    """``iterations`` steps of LSQR (≡ CGLS on AᵀA x = Aᵀy) from x = 0 — an early-stopped,
    hence regularised, pseudo-inverse (scipy's ``lsqr`` on the stored matrix)."""
    b = y.detach().cpu().double().numpy().ravel()
    x = scipy.sparse.linalg.lsqr(op.to_scipy(), b, iter_lim=iterations)[0]
    return torch.from_numpy(x.astype(np.float32)).reshape(1, *op.in_shape)


def fbp_image(op: SparseMatrixOperator, y: torch.Tensor, lsqr_iterations: int) -> tuple[torch.Tensor, str]:
    """The classical image used as "FBP": ASTRA FBP (Ram-Lak) for parallel beam; for fan
    beam and matrix-only operators (ASTRA has no CPU fan-beam/cone-beam FBP) an
    early-stopped LSQR pseudo-inverse. Returns the image and how it was made."""
    if isinstance(op, CTOperator) and op.geometry.kind == "parallel":
        return astra_fbp(op, y), "FBP (ASTRA CPU, Ram-Lak filter)"
    return lsqr_reconstruction(op, y, lsqr_iterations), f"LSQR pseudo-inverse, {lsqr_iterations} iterations (stands in for FBP)"
