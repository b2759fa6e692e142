"""CT tasks: the walnut (simulated on the real slice; real published layout on a
fixture written here) and AAPM-style sparse-view CT (embedded head CT; DICOM fixture)."""
import numpy as np
import pydicom
import pytest
import scipy.io
import scipy.sparse
import tifffile
import torch
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

import datamodules.sources.paths as paths
from datamodules.operators.sparse import SparseMatrixOperator
from datamodules.registry import load_all
from datamodules.sources.dicom import hu_to_unit, read_ct_slice
from datamodules.sources.paths import MissingDataError
from datamodules.sources.walnut import WalnutLayout, first_column, load_real_walnut, matrix_filename
from datamodules.tasks.ct import AAPMConfig, WalnutConfig, build_aapm, build_walnut, circle_mask, select_views
from tests.conftest import shared_data


def test_ct_datasets_are_registered():
    datasets = load_all()
    assert datasets["walnut"].config is WalnutConfig and datasets["aapm"].config is AAPMConfig


# --- walnut, simulated on the real slice -------------------------------------------


def test_simulated_walnut_on_real_slice(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    root = shared_data("walnut")
    cfg = WalnutConfig(root=str(root), image_size=32, n_angles=12, noise=0.05, noise_seed=3)
    task = build_walnut(cfg)
    assert "simulated on real slice" in task.provenance
    assert task.gt.shape == (1, 1, 32, 32) and task.y.shape == (1, 1, 12, 32)  # min(128, 32) detectors
    assert task.physics.geometry.kind == "fan" and 0 <= float(task.gt.min()) and float(task.gt.max()) < 1
    assert torch.equal(task.extras["fbp"], task.degraded) and "LSQR" in task.info["fbp_method"]
    noise = task.y - task.physics.A(task.gt)
    assert abs(float(noise.std()) / task.info["noise_sigma"] - 1) < 0.1
    assert torch.equal(build_walnut(cfg).y, task.y)  # seeded
    assert torch.equal(task.metric.mask, circle_mask(32))
    assert task.psnr(task.gt) == float("inf") and task.psnr(task.degraded) > 10


def test_simulated_walnut_parallel_uses_astra_fbp(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    task = build_walnut(WalnutConfig(root=str(shared_data("walnut")), image_size=32, geometry="parallel", noise=0.0))
    assert task.info["fbp_method"].startswith("FBP (ASTRA")
    assert torch.allclose(task.y, task.physics.A(task.gt))


def test_inscribed_circle_mask():
    m = circle_mask(8)[0, 0]
    assert m[4, 4] and m[0, 4] and not m[0, 0] and m.sum() < 64 and torch.equal(m, m.flip(0)) and torch.equal(m, m.T)


def test_walnut_without_data_fails_with_download_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "candidate_roots", lambda name: [tmp_path / "nowhere" / name])  # a fresh clone
    with pytest.raises(MissingDataError) as err:
        build_walnut(WalnutConfig())
    assert "zenodo.org/records/2686726" in str(err.value) and "python -m datamodules.sources.walnut" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="walnut_gt_256_float32.npy"):
        build_walnut(WalnutConfig(root=str(tmp_path / "empty")))
    with pytest.raises(MissingDataError, match="Walnut1.zip"):
        build_walnut(WalnutConfig(root=str(tmp_path / "empty"), source="real"))


# --- walnut, real published layout (fixture) ---------------------------------------

LAYOUT = WalnutLayout(angular_sub_sampling=2, column_sub_sampling=3, first_row=3, num_rows=3, slice_index=7)
N_TOTAL, ROWS, COLS, GT_SIZE = 8, 10, 12, 6  # 4 angles × 4 columns kept


def _raw(detector_image):
    """Inverse of the loader's orientation change (flip up–down, transpose)."""
    return np.flipud(detector_image.T)


def write_walnut_fixture(root, rng, mask_rows=None):
    """Tiny copy of the Zenodo layout; returns the true log-projections and the matrix."""
    proj_dir = root / "Walnut1" / "Projections" / "tubeV2"
    proj_dir.mkdir(parents=True)
    (root / "Walnut1" / "Reconstructions").mkdir()
    np.savetxt(proj_dir / "scan_geom_corrected.geom", rng.normal(size=(N_TOTAL, 12)))
    dark = rng.uniform(50, 100, (ROWS, COLS))
    flats = [dark + rng.uniform(3000, 4000, (ROWS, COLS)) for _ in range(2)]
    flat = (flats[0] + flats[1]) / 2
    tifffile.imwrite(proj_dir / "di000000.tif", _raw(dark).astype(np.float32))
    for i, f in enumerate(flats):
        tifffile.imwrite(proj_dir / f"io00000{i}.tif", _raw(f).astype(np.float32))
    n_angles = N_TOTAL // LAYOUT.angular_sub_sampling
    logs = rng.uniform(0.1, 2.0, (n_angles, ROWS, COLS))
    for scan in range(1, N_TOTAL + 1):
        kept = (N_TOTAL - scan) % LAYOUT.angular_sub_sampling == 0
        angle = (N_TOTAL - scan) // LAYOUT.angular_sub_sampling  # reverse order
        img = dark + (flat - dark) * np.exp(-logs[angle]) if kept else np.zeros((ROWS, COLS))  # unused scans: garbage
        tifffile.imwrite(proj_dir / f"scan_{scan:06d}.tif", _raw(img).astype(np.float32))
    gt = rng.uniform(0, 0.07, (GT_SIZE, GT_SIZE)).astype(np.float32)
    tifffile.imwrite(root / "Walnut1" / "Reconstructions" / f"full_AGD_50_{LAYOUT.slice_index:06d}.tiff", gt)
    cols = np.arange(first_column(COLS, LAYOUT.column_sub_sampling), COLS, LAYOUT.column_sub_sampling)
    sub = logs[:, LAYOUT.first_row:LAYOUT.first_row + LAYOUT.num_rows][:, :, cols].transpose(1, 0, 2)  # (rows, angles, cols)
    rows = rng.integers(0, LAYOUT.num_rows, sub.shape[1:]) if mask_rows is None else mask_rows
    mask = np.zeros(sub.shape, dtype=bool)
    np.put_along_axis(mask, rows[None], True, axis=0)
    matrix = scipy.sparse.random(int(mask.sum()), GT_SIZE**2, density=0.3, random_state=1, format="csc")
    scipy.io.savemat(root / matrix_filename(LAYOUT), {
        "ray_trafo_matrix": matrix, "proj_mask": mask, "walnut_id": 1, "orbit_id": 2,
        "angular_sub_sampling": LAYOUT.angular_sub_sampling, "proj_col_sub_sampling": LAYOUT.column_sub_sampling,
        "first_proj_row": LAYOUT.first_row + 1, "num_proj_rows": LAYOUT.num_rows})
    return sub, mask, matrix, gt


def test_first_column_of_the_published_sub_sampling():
    assert first_column(768, 6) == 2 and len(range(first_column(768, 6), 768, 6)) == 128


def test_real_walnut_loader_on_fixture(tmp_path):
    sub, mask, matrix, gt = write_walnut_fixture(tmp_path, np.random.default_rng(0))
    data = load_real_walnut(tmp_path, LAYOUT)
    np.testing.assert_allclose(data.y, LAYOUT.scale * sub[mask], rtol=1e-5)  # preprocessing, order, ×14
    np.testing.assert_allclose(data.gt, LAYOUT.scale * gt, rtol=1e-6)
    assert (data.matrix != matrix.tocsr()).nnz == 0 and data.matrix.shape == (16, GT_SIZE**2)
    assert "real Walnut 1" in data.label and "4 angles × 4 columns" in data.label


def test_real_walnut_task_on_fixture(tmp_path):
    write_walnut_fixture(tmp_path, np.random.default_rng(1))
    layout = {k: getattr(LAYOUT, k)
              for k in ("angular_sub_sampling", "column_sub_sampling", "first_row", "num_rows", "slice_index")}
    task = build_walnut(WalnutConfig(source="real", root=str(tmp_path), real=WalnutLayout(**layout), fbp_iterations=3))
    assert isinstance(task.physics, SparseMatrixOperator) and task.y.shape == (1, 1, 16)
    assert task.gt.shape == (1, 1, GT_SIZE, GT_SIZE) and "simulated" not in task.provenance
    assert task.extras["fbp"].shape == task.gt.shape and task.metric.data_range is None


def test_real_walnut_rejects_a_matrix_for_another_layout_and_explains_a_missing_one(tmp_path):
    write_walnut_fixture(tmp_path, np.random.default_rng(2))
    wrong = WalnutLayout(**{**LAYOUT.__dict__, "first_row": 2, "matrix": str(tmp_path / matrix_filename(LAYOUT))})
    with pytest.raises(ValueError, match="first_proj_row"):
        load_real_walnut(tmp_path, wrong)
    (tmp_path / matrix_filename(LAYOUT)).unlink()
    with pytest.raises(MissingDataError) as err:
        load_real_walnut(tmp_path, LAYOUT)
    assert "7282279" in str(err.value) and "GPU" in str(err.value)


# --- AAPM-style sparse-view CT -------------------------------------------------------


def test_embedded_head_ct_task(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    task = build_aapm(AAPMConfig(image_size=32, n_views=6, n_total_views=60))
    assert "693_UNCR.dcm" in task.provenance and "noiseless" in task.provenance
    assert task.gt.shape == (1, 1, 32, 32) and task.y.shape == (1, 1, 6, 46)  # ⌈√2·32⌉ detectors
    assert float(task.gt.min()) >= 0 and 0.3 < float(task.gt.max()) <= 1  # slice max is 1 before the 512→32 resize
    assert torch.allclose(task.y, task.physics.A(task.gt))  # post-log y = A x, I0 = 1, no noise
    assert task.info["views"] == [0, 10, 20, 30, 40, 50] and task.info["fbp_method"].startswith("FBP")
    assert task.psnr(task.degraded) > 10


def test_view_selection():
    assert list(select_views(18, 180, "equispaced", 0)) == list(range(0, 180, 10))
    a, b = select_views(18, 180, "random", 5), select_views(18, 180, "random", 5)
    assert np.array_equal(a, b) and len(set(a)) == 18 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, select_views(18, 180, "random", 6))
    with pytest.raises(ValueError, match="equispaced, random"):
        select_views(18, 180, "golden", 0)


def test_poisson_noise_is_seeded_and_vanishes_with_many_photons(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    cfg = dict(image_size=32, n_views=6, n_total_views=60)
    clean = build_aapm(AAPMConfig(**cfg)).y
    low = build_aapm(AAPMConfig(**cfg, poisson_i0=1e3, noise_seed=1)).y
    assert torch.equal(low, build_aapm(AAPMConfig(**cfg, poisson_i0=1e3, noise_seed=1)).y)
    high = build_aapm(AAPMConfig(**cfg, poisson_i0=1e9, noise_seed=1)).y
    assert (high - clean).norm() < 0.05 * (low - clean).norm()


def write_ct_dicom(path, raw, slope=1.0, intercept=-1024.0, spacing=0.5):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.PixelSpacing = slope, intercept, [spacing, spacing]
    ds.PixelData = raw.astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_reader_and_hu_mapping(tmp_path):
    raw = np.array([[0, 24], [1024, 3024]], dtype=np.int16)  # HU −1024, −1000, 0, 2000
    write_ct_dicom(tmp_path / "a.dcm", raw, slope=1.0, intercept=-1024.0, spacing=0.7)
    hu, spacing = read_ct_slice(tmp_path / "a.dcm")
    np.testing.assert_array_equal(hu, raw - 1024.0)
    assert spacing == pytest.approx(0.7)
    x, s = hu_to_unit(hu)
    assert s == pytest.approx(3.0) and x[0, 0] == 0 and x[0, 1] == 0 and x[1, 0] == pytest.approx(1 / 3) and x[1, 1] == 1
    x, s = hu_to_unit(hu, hu_max=1000.0)
    assert s == 2.0 and x[1, 0] == 0.5 and x[1, 1] == 1.0  # clipped


def test_aapm_folder_task_from_written_ima_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "aapm" / "L067" / "full_1mm"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:40, :40] - 19.5
    for i in range(2):
        body = np.where(yy**2 + xx**2 < (12 + 4 * i) ** 2, 1024 + 40, 24)  # water-ish disc in air
        write_ct_dicom(folder / f"L067_FD_1_1.CT.0001.{i + 1:04d}.IMA", body)
    cfg = dict(source="aapm", root=str(tmp_path / "aapm"), image_size=20, n_views=4, n_total_views=40)
    first, second = build_aapm(AAPMConfig(**cfg, image=0)), build_aapm(AAPMConfig(**cfg, image="L067_FD_1_1.CT.0001.0002"))
    assert "L067_FD_1_1.CT.0001.0001.IMA" in first.provenance and "0002.IMA" in second.provenance
    assert float(second.gt.sum()) > float(first.gt.sum())  # larger disc
    with pytest.raises(MissingDataError, match="TCIA"):
        build_aapm(AAPMConfig(source="aapm", root=str(tmp_path / "missing")))
