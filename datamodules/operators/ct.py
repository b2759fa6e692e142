"""2D CT: ASTRA's CPU projectors as cached sparse matrices, and the FBP-type images.

The ray transform of a 2D geometry (parallel beam or flat-detector fan beam) is
exported once from ASTRA (``astra.projector.matrix``) and applied with torch.sparse
(:class:`SparseMatrixOperator`): exactly adjoint, differentiable, and faster than
calling ASTRA at every DIP step. Matrices are cached on disk, keyed by a hash of the
geometry, in ``$DIPBENCH_CACHE/operators`` or ``<project>/.cache/operators``.

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
from datamodules.sources.paths import PROJECT_ROOT

# ASTRA CPU projector names per beam type ("linear" is parallel-beam only).
PROJECTORS = {"parallel": ("line", "strip", "linear"), "fan": ("line", "strip")}


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
        text = json.dumps({**asdict(self), "astra": astra.__version__}, sort_keys=True)
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


def parallel_geometry(image_size: int, angles, n_detectors: int | None = None, projector: str = "strip") -> CTGeometry:
    """Parallel beam whose detector spans the image diagonal (⌈√2·N⌉ unit bins by default)."""
    span = math.ceil(math.sqrt(2) * image_size)
    n = n_detectors or span
    return CTGeometry("parallel", image_size, tuple(float(a) for a in angles), n, span / n, projector=projector)


def fan_geometry(image_size: int, angles, n_detectors: int, source_origin: float, origin_detector: float,
                 projector: str = "strip") -> CTGeometry:
    """Flat-detector fan beam (distances in pixels) whose fan just covers the image's
    circumscribed circle: a ray tangent to radius r hits the detector at
    r·(s+d)/√(s²−r²) from its centre."""
    r = image_size / math.sqrt(2)
    if source_origin <= r:
        raise ValueError(f"fan beam needs the source outside the image: source_origin {source_origin:g} <= {r:g} (image_size/√2)")
    half_width = r * (source_origin + origin_detector) / math.sqrt(source_origin**2 - r**2)
    return CTGeometry("fan", image_size, tuple(float(a) for a in angles), n_detectors, 2 * half_width / n_detectors,
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
    ASTRA's sinogram order (angle-major), columns the row-major image."""
    with astra_projector(geom) as pid:
        mid = astra.projector.matrix(pid)
        try:
            matrix = astra.matrix.get(mid)
        finally:
            astra.matrix.delete(mid)
    return scipy.sparse.csr_matrix(matrix, dtype=np.float32)


def operator_cache_dir() -> Path:
    """``$DIPBENCH_CACHE/operators`` if set, else ``<project>/.cache/operators`` (gitignored)."""
    base = os.environ.get("DIPBENCH_CACHE")
    return (Path(base).expanduser() if base else PROJECT_ROOT / ".cache") / "operators"


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
