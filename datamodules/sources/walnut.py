"""The Walnut μCT data (Der Sarkissian et al. 2019, Zenodo 2686726) as used by Survey B
§6.1: one 501² slice of Walnut 1 from the orbit-2 cone-beam scan, 60 of 1200 angles,
128 of 768 detector columns, one detector row per (angle, column) → m = 7680.

Two inputs:
- the real published layout under a root folder (``Walnut1/Projections/tubeV2/``,
  ``Walnut1/Reconstructions/``) plus the single-slice ray-transform matrix of Zenodo
  7282279 (``single_slice_ray_trafo_matrix_walnut1_orbit2_ass20_css6.mat``), whose
  ``proj_mask`` says which detector row each measurement comes from;
- the real ground-truth slice resized to 256² (``walnut_gt_256_float32.npy``, ×14),
  on which the CT task simulates measurements.

Building the matrix needs ASTRA's cone-beam projector, which exists only on CUDA;
on a CPU machine the published matrix must be downloaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import scipy.io
import scipy.sparse

from core.schema import NonNegativeInt, PositiveFloat, PositiveInt, Range
from datamodules.sources.paths import MissingDataError

GT_256_FILE = "walnut_gt_256_float32.npy"
ZENODO_DATA = "https://zenodo.org/records/2686726"
ZENODO_MATRIX = "https://zenodo.org/records/7282279"

# FleX-ray set-up of the data set (approximate, Der Sarkissian et al. 2019) and the
# reconstruction volume: 501 voxels of 0.1 mm.
SOURCE_ORIGIN_MM = 66.0
ORIGIN_DETECTOR_MM = 133.0
FIELD_OF_VIEW_MM = 50.1

HOW_TO_GET = (
    "The walnut data are public (CC-BY 4.0):\n"
    f"  - real measurements: Walnut1.zip from {ZENODO_DATA}, unzipped into the walnut folder so that\n"
    "    <walnut>/Walnut1/Projections/tubeV2/scan_000001.tif exists;\n"
    f"  - single-slice matrix: single_slice_ray_trafo_matrix_walnut1_orbit2_ass20_css6.mat from {ZENODO_MATRIX},\n"
    "    into <walnut>/ (building it needs ASTRA's CUDA cone-beam projector, i.e. a GPU);\n"
    f"  - the simulated task only needs <walnut>/{GT_256_FILE}; prepare it from the real data with\n"
    "    `python -m datamodules.sources.walnut --root <walnut>`."
)


@dataclass
class WalnutLayout:
    """Which part of the real data set forms the 2D problem (walnut-geometry.md)."""

    walnut_id: Annotated[int, Range(ge=1, le=42)] = 1  # the data set has 42 walnuts
    orbit_id: Literal[1, 2, 3] = 2  # source heights tubeV1…3
    angular_sub_sampling: PositiveInt = 20  # 1200 → 60 angles
    column_sub_sampling: PositiveInt = 6  # 768 → 128 columns (centred: first column 2)
    first_row: NonNegativeInt = 474  # detector rows first_row … first_row + num_rows − 1 …
    num_rows: PositiveInt = 9  # … from which proj_mask keeps one per (angle, column)
    slice_index: NonNegativeInt = 253  # ground truth full_AGD_50_000253.tiff (centre 250 + offset 3)
    scale: PositiveFloat = 14.0  # measurements and ground truth are multiplied by this
    matrix: str | None = None  # path of the .mat; default <root>/<published file name>


def projection_folder(root: Path, layout: WalnutLayout) -> Path:
    return Path(root) / f"Walnut{layout.walnut_id}" / "Projections" / f"tubeV{layout.orbit_id}"


def matrix_filename(layout: WalnutLayout) -> str:
    """Name of the published single-slice matrix for this sub-sampling."""
    return (f"single_slice_ray_trafo_matrix_walnut{layout.walnut_id}_orbit{layout.orbit_id}"
            f"_ass{layout.angular_sub_sampling}_css{layout.column_sub_sampling}.mat")


def first_column(n_columns: int, factor: int) -> int:
    """First column of a centred sub-sampling by ``factor`` (768, 6 → 2)."""
    n_kept = math.ceil(n_columns / factor)
    return (n_columns - ((n_kept - 1) * factor + 1)) // 2


def read_geometry(folder: Path) -> np.ndarray:
    """``scan_geom_corrected.geom``: one ASTRA ``cone_vec`` row (12 numbers) per angle."""
    vecs = np.loadtxt(Path(folder) / "scan_geom_corrected.geom", ndmin=2)
    if vecs.shape[1] != 12:
        raise ValueError(f"{folder}/scan_geom_corrected.geom has {vecs.shape[1]} columns, expected 12 (cone_vec)")
    return vecs


def _read_detector_image(path: Path) -> np.ndarray:
    """A detector image in ASTRA's (row, column) orientation: flipped up–down, transposed."""
    import tifffile

    if not path.exists():
        raise MissingDataError(f"walnut: {path} is missing.\n{HOW_TO_GET}")
    return np.transpose(np.flipud(tifffile.imread(path).astype(np.float64)))


def read_projections(root: Path, layout: WalnutLayout) -> np.ndarray:
    """Log-transformed, sub-sampled projections ``(num_rows, n_angles, n_columns)``.

    Every ``angular_sub_sampling``-th of the scans in reverse order (portrait-mode
    acquisition), −log((proj − dark)/(flat − dark)) with the two flats averaged, then
    rows ``first_row …`` and every ``column_sub_sampling``-th column (centred)."""
    folder = projection_folder(root, layout)
    n_total = read_geometry(folder).shape[0]
    if n_total % layout.angular_sub_sampling:
        raise ValueError(f"{n_total} angles cannot be sub-sampled by {layout.angular_sub_sampling}")
    dark = _read_detector_image(folder / "di000000.tif")
    flat = np.mean([_read_detector_image(folder / f"io00000{i}.tif") for i in (0, 1)], axis=0)
    n_rows, n_cols = dark.shape
    rows = slice(layout.first_row, layout.first_row + layout.num_rows)
    cols = slice(first_column(n_cols, layout.column_sub_sampling), None, layout.column_sub_sampling)
    if layout.first_row + layout.num_rows > n_rows:
        raise ValueError(f"rows {layout.first_row}…{layout.first_row + layout.num_rows - 1} exceed the detector's {n_rows}")
    scans = range(n_total, 0, -layout.angular_sub_sampling)
    projs = np.stack([_read_detector_image(folder / f"scan_{i:06d}.tif")[rows, cols] for i in scans], axis=1)
    return -np.log((projs - dark[rows, cols][:, None]) / (flat - dark)[rows, cols][:, None])


def read_ground_truth(root: Path, layout: WalnutLayout) -> np.ndarray:
    """The AGD reconstruction slice from all three orbits (unscaled)."""
    import tifffile

    path = Path(root) / f"Walnut{layout.walnut_id}" / "Reconstructions" / f"full_AGD_50_{layout.slice_index:06d}.tiff"
    if not path.exists():
        raise MissingDataError(f"walnut: ground truth {path} is missing.\n{HOW_TO_GET}")
    return tifffile.imread(path).astype(np.float32)


def _scalar(mat: dict, key: str):
    return int(np.ravel(mat[key])[0]) if key in mat else None


def read_single_slice_matrix(path: Path, layout: WalnutLayout, proj_shape: tuple[int, int, int]):
    """The published matrix (``ray_trafo_matrix``) and its ``proj_mask`` (which detector
    row each measurement is), checked against ``layout`` and the projection shape."""
    if not Path(path).exists():
        import astra

        gpu = ("ASTRA reports a usable GPU here, but this project does not build the matrix."
               if astra.use_cuda() else "ASTRA has no usable CUDA device here: its cone-beam projector (needed to build the "
               "matrix) is GPU-only, so the matrix cannot be built on this machine.")
        raise MissingDataError(
            f"walnut: single-slice ray-transform matrix {path} not found. {gpu}\n"
            f"Download {matrix_filename(layout)} from {ZENODO_MATRIX} into the walnut folder (or set "
            "dataset.real.matrix=/path/to/it), or build it on a GPU machine with ASTRA's cone-beam projector "
            "(about 45 min; e.g. bayes_dip's save_single_slice_ray_trafo_matrix).\n" + HOW_TO_GET
        )
    mat = scipy.io.loadmat(path)
    if "ray_trafo_matrix" not in mat or "proj_mask" not in mat:
        raise ValueError(f"{path} lacks 'ray_trafo_matrix' or 'proj_mask' (is it the Zenodo 7282279 file?)")
    expected = {"walnut_id": layout.walnut_id, "orbit_id": layout.orbit_id,
                "angular_sub_sampling": layout.angular_sub_sampling, "proj_col_sub_sampling": layout.column_sub_sampling,
                "first_proj_row": layout.first_row + 1, "num_proj_rows": layout.num_rows}  # 1-based in the file
    wrong = {k: (_scalar(mat, k), v) for k, v in expected.items() if _scalar(mat, k) not in (None, v)}
    if wrong:
        raise ValueError(f"{path} was built for a different layout: " +
                         ", ".join(f"{k}={got} (config: {want})" for k, (got, want) in wrong.items()))
    matrix = scipy.sparse.csr_matrix(mat["ray_trafo_matrix"])
    mask = np.asarray(mat["proj_mask"]).astype(bool)
    if mask.shape != proj_shape:
        raise ValueError(f"proj_mask has shape {mask.shape}, the projections {proj_shape}")
    if not np.all(mask.sum(axis=0) == 1) or matrix.shape[0] != mask.sum():
        raise ValueError(f"proj_mask must select one row per (angle, column) and match the matrix's {matrix.shape[0]} rows")
    return matrix, mask


@dataclass
class WalnutMeasurement:
    gt: np.ndarray  # (H, W) float32, ×scale
    y: np.ndarray  # (m,) float32, ×scale, in the matrix's row order
    matrix: scipy.sparse.csr_matrix  # (m, H·W)
    label: str


def load_real_walnut(root: Path, layout: WalnutLayout) -> WalnutMeasurement:
    """Ground truth, real measurement and matrix of the single-slice problem."""
    root = Path(root)
    if not projection_folder(root, layout).is_dir():
        raise MissingDataError(f"walnut: {projection_folder(root, layout)} does not exist.\n{HOW_TO_GET}")
    projs = read_projections(root, layout)
    matrix_path = Path(layout.matrix) if layout.matrix else root / matrix_filename(layout)
    matrix, mask = read_single_slice_matrix(matrix_path, layout, projs.shape)
    gt = read_ground_truth(root, layout) * layout.scale
    if matrix.shape[1] != gt.size:
        raise ValueError(f"matrix has {matrix.shape[1]} columns but the ground truth {gt.shape} has {gt.size} pixels")
    y = (projs[mask] * layout.scale).astype(np.float32)  # row-major over (row, angle, column), as the matrix rows
    n_angles = projs.shape[1]
    label = (f"real Walnut {layout.walnut_id} μCT (Zenodo 2686726), orbit {layout.orbit_id}, {n_angles} angles × "
             f"{projs.shape[2]} columns, slice {layout.slice_index}")
    return WalnutMeasurement(gt=gt, y=y, matrix=matrix, label=label)


def load_gt_256(folder: Path) -> np.ndarray:
    """The real slice resized to 256² (already ×14)."""
    path = Path(folder) / GT_256_FILE
    if not path.exists():
        raise MissingDataError(f"walnut: {path} is missing.\n{HOW_TO_GET}")
    return np.load(path).astype(np.float32)


def prepare_gt_256(root: Path, layout: WalnutLayout | None = None) -> Path:
    """Write ``walnut_gt_256_float32.npy`` (the ×14 ground-truth slice, antialiased
    resize to 256²) from the real data set's reconstruction."""
    import torch
    import torch.nn.functional as F

    layout = layout or WalnutLayout()
    gt = torch.from_numpy(read_ground_truth(root, layout) * layout.scale)[None, None]
    small = F.interpolate(gt, size=(256, 256), mode="bilinear", antialias=True, align_corners=False)
    path = Path(root) / GT_256_FILE
    np.save(path, small[0, 0].clamp_min(0).numpy().astype(np.float32))
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=f"Prepare {GT_256_FILE} from the real Walnut data set.")
    parser.add_argument("--root", required=True, help="walnut folder containing Walnut1/Reconstructions/")
    print(prepare_gt_256(Path(parser.parse_args().root)))
