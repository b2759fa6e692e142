"""The fastmri_knee dataset: sources (embedded, fastMRI .h5 fixture, real BART brain),
BART coil maps and their cache, the metric convention."""
import dataclasses

import h5py
import numpy as np
import pytest
import torch
from conftest import shared_data

from datamodules.operators.mri import MultiCoilMRI
from datamodules.registry import load_all
from datamodules.sources import bart_io, coil_maps
from datamodules.sources.bart_io import BartNotFoundError, bart_executable, read_cfl, write_cfl
from datamodules.sources.fastmri_h5 import find_volume, read_slice
from datamodules.sources.paths import MissingDataError
from datamodules.tasks.mri import FastMRIKneeConfig, build_mri, crop_kspace

requires_bart = pytest.mark.skipif(bart_executable() is None, reason="BART not installed (apt-get install bart)")

HEADER = b"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize></encodedSpace>
<reconSpace><matrixSize><x>{c}</x><y>{c}</y><z>1</z></matrixSize></reconSpace>
</encoding></ismrmrdHeader>"""


def _np_ifft2c(k):
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _np_fft2c(x):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def write_fastmri_fixture(path, slices=3, coils=4, h=72, w=64, crop=48):
    """A fully sampled multi-coil volume in the fastMRI layout: smooth-coil images of a
    disc phantom with a different intensity per slice; ``reconstruction_rss`` computed
    with numpy as fastMRI does (RSS of the centre-cropped coil images)."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    maps = coil_maps.simulated_maps(coils, h, w)
    kspace, rss = [], []
    for s in range(slices):
        img = (xx**2 / 0.5 + yy**2 / 0.7 < 1) * (1.0 + s) + 0.5 * (xx**2 + (yy - 0.2) ** 2 < 0.05)
        k = _np_fft2c(maps * img).astype(np.complex64)
        kspace.append(k)
        top, left = (h - crop) // 2, (w - crop) // 2
        coil_images = _np_ifft2c(k)[:, top : top + crop, left : left + crop]
        rss.append(np.sqrt((np.abs(coil_images) ** 2).sum(0)).astype(np.float32))
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=np.stack(kspace))
        f.create_dataset("reconstruction_rss", data=np.stack(rss))
        f.create_dataset("ismrmrd_header", data=HEADER.replace(b"{h}", str(h).encode()).replace(b"{w}", str(w).encode())
                         .replace(b"{c}", str(crop).encode()))
        f.attrs.update({"acquisition": "CORPD_FBK", "max": float(np.max(rss)), "norm": float(np.linalg.norm(rss)),
                        "patient_id": "fixture"})
    return maps


# -- registration and the offline default --------------------------------------------------

def test_dataset_is_registered_with_the_paper_defaults():
    spec = load_all()["fastmri_knee"]
    cfg = spec.config()
    assert (cfg.crop, cfg.acceleration, cfg.center_fraction, cfg.mask_type) == (320, 4, 0.08, "equispaced")
    assert cfg.source == "embedded" and cfg.coil_maps == "auto"


def test_embedded_task_is_semi_synthetic_and_consistent():
    task = build_mri(FastMRIKneeConfig(crop=32, coils=4, noise_std=0.0))
    assert task.gt.shape == (1, 2, 32, 32) and task.y.shape == (1, 4, 32, 32, 2)
    assert "semi-synthetic" in task.provenance and task.x_range == "signed"
    assert isinstance(task.physics, MultiCoilMRI)
    torch.testing.assert_close(task.physics.A(task.gt), task.y, rtol=0, atol=1e-5)  # noiseless: y = A x_GT
    torch.testing.assert_close(task.degraded, task.physics.A_adjoint(task.y))  # zero-filled, 2 channels
    assert float(task.to_image(task.degraded).max()) == pytest.approx(1.0)  # measurement-only scaling
    mask = task.extras["mask"][0, 0]
    assert float((task.y * (1 - mask)[None, None, :, :, None]).abs().max()) == 0.0  # no data off the mask
    assert task.info["acceleration"] == pytest.approx(float(mask.numel() / mask.sum()))
    assert task.psnr(task.gt) == float("inf")


def test_metric_is_psnr_of_magnitudes_with_the_gt_maximum_as_range():
    task = build_mri(FastMRIKneeConfig(crop=32, coils=4))
    x = task.degraded
    mag_x = np.hypot(x[0, 0].numpy(), x[0, 1].numpy())
    mag_gt = np.hypot(task.gt[0, 0].numpy(), task.gt[0, 1].numpy())
    expected = 10 * np.log10(mag_gt.max() ** 2 / np.mean((mag_x - mag_gt) ** 2))
    assert task.psnr(x) == pytest.approx(expected, abs=1e-3)
    assert "max |x_GT|" in task.metric.description
    # only the magnitude is scored: a global phase (x·i) is not an error
    rotated = torch.stack([-task.gt[:, 1], task.gt[:, 0]], 1)  # x·i: same magnitude
    assert task.psnr(rotated) == float("inf")


def test_noise_is_seeded_and_embedded_options_are_checked():
    a = build_mri(FastMRIKneeConfig(crop=32, coils=4, noise_seed=0))
    b = build_mri(FastMRIKneeConfig(crop=32, coils=4, noise_seed=0))
    c = build_mri(FastMRIKneeConfig(crop=32, coils=4, noise_seed=1))
    assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
    with pytest.raises(KeyError, match="shoulder"):
        build_mri(FastMRIKneeConfig(crop=32, image="knee"))
    with pytest.raises(ValueError, match="embedded only"):
        build_mri(FastMRIKneeConfig(source="fastmri", noise_std=0.1))


# -- fastMRI .h5 files ------------------------------------------------------------------------

def test_fastmri_reader_slices_attrs_header(tmp_path):
    write_fastmri_fixture(tmp_path / "file_a.h5")
    sl = read_slice(tmp_path / "file_a.h5")
    assert sl.slice == 1 and sl.num_slices == 3  # middle slice by default
    assert sl.kspace.shape == (4, 72, 64) and sl.kspace.dtype == np.complex64
    assert sl.attrs["acquisition"] == "CORPD_FBK"
    assert sl.header == {"encoding_size": (72, 64, 1), "recon_size": (48, 48, 1)}
    assert read_slice(tmp_path / "file_a.h5", -1).slice == 2
    with pytest.raises(IndexError, match="3 slices"):
        read_slice(tmp_path / "file_a.h5", 3)


def test_crop_follows_the_fastmri_rss_convention(tmp_path):
    write_fastmri_fixture(tmp_path / "f.h5")
    sl = read_slice(tmp_path / "f.h5", 0)
    cropped = crop_kspace(sl.kspace, 48)
    assert cropped.shape == (4, 48, 48)
    rss = np.sqrt((np.abs(_np_ifft2c(cropped)) ** 2).sum(0))
    np.testing.assert_allclose(rss, sl.rss, rtol=1e-4, atol=1e-4 * sl.rss.max())


def test_finding_fastmri_files_and_missing_data_message(tmp_path):
    write_fastmri_fixture(tmp_path / "b.h5", slices=1)
    write_fastmri_fixture(tmp_path / "a.h5", slices=1)
    assert find_volume(str(tmp_path), None).name == "a.h5"
    assert find_volume(str(tmp_path), "b.h5").name == "b.h5"
    assert find_volume(str(tmp_path / "b.h5"), None).name == "b.h5"
    with pytest.raises(MissingDataError, match="fastmri.med.nyu.edu"):
        build_mri(FastMRIKneeConfig(source="fastmri", root=str(tmp_path / "nowhere")))
    with pytest.raises(MissingDataError, match="fastmri.med.nyu.edu"):
        find_volume(str(tmp_path), "missing.h5")


# -- BART: maps, cache, missing binary --------------------------------------------------------

def test_missing_bart_fails_with_install_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("BART_TOOLBOX_PATH", str(tmp_path))  # no bart executable in there
    with pytest.raises(BartNotFoundError, match="apt-get install bart"):
        bart_io.require_bart()
    with pytest.raises(BartNotFoundError, match="apt-get install bart"):
        build_mri(FastMRIKneeConfig(crop=32, coils=4, coil_maps="bart"))


@requires_bart
def test_fastmri_task_with_bart_maps_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    write_fastmri_fixture(tmp_path / "vol.h5")
    cfg = FastMRIKneeConfig(source="fastmri", root=str(tmp_path), crop=48, center_fraction=0.2)
    first = build_mri(cfg)
    second = build_mri(cfg)
    assert first.info["coil_map_cache"] == "miss" and second.info["coil_map_cache"] == "hit"
    assert len(list((tmp_path / "cache" / "coil_maps").glob("*.npy"))) == 1
    assert torch.equal(first.physics.maps, second.physics.maps)
    assert "real fastMRI" in first.provenance and "BART ecalib" in first.provenance
    assert first.gt.shape == (1, 2, 48, 48) and first.y.shape == (1, 4, 48, 48, 2)
    # the coil combination of the fully sampled data matches the file's RSS where the maps are non-zero
    rss = read_slice(tmp_path / "vol.h5").rss * first.info["scale"]
    inside = first.physics.maps_complex().abs().pow(2).sum(0).numpy() > 0.5
    combined = first.to_image(first.gt)[0, 0].numpy()[inside]
    assert np.linalg.norm(combined - rss[inside]) / np.linalg.norm(rss[inside]) < 0.05


@requires_bart
def test_cached_maps_equal_fresh_maps_and_the_key_tracks_data_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    write_fastmri_fixture(tmp_path / "vol.h5", slices=1)
    k = crop_kspace(read_slice(tmp_path / "vol.h5").kspace, 48)
    cached, info1 = coil_maps.ecalib_maps(k, "-m1")
    again, info2 = coil_maps.ecalib_maps(k, "-m1")
    fresh, info3 = coil_maps.ecalib_maps(k, "-m1", use_cache=False)
    assert (info1["cache"], info2["cache"], info3["cache"]) == ("miss", "hit", "off")
    assert cached.shape == (4, 48, 48) and cached.dtype == np.complex64
    np.testing.assert_array_equal(again, cached)
    np.testing.assert_allclose(fresh, cached, rtol=0, atol=1e-6)
    version = bart_io.bart_version()
    keys = {coil_maps.cache_key(k, "-m1", version), coil_maps.cache_key(k, "-m1 -k4", version),
            coil_maps.cache_key(k * 2, "-m1", version), coil_maps.cache_key(k, "-m1", "v0.0")}
    assert len(keys) == 4
    assert coil_maps.cache_key(k, "-m1", version) == coil_maps.cache_key(k.copy(), " -m1 ", version)


@requires_bart
def test_bart_maps_recover_the_simulated_maps(tmp_path, monkeypatch):
    """ecalib on simulated k-space finds the true coil subspace (checks the BART layout)."""
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    cfg = FastMRIKneeConfig(crop=48, coils=4, center_fraction=0.2, noise_std=0.0, coil_maps="bart")
    task = build_mri(cfg)
    truth = build_mri(dataclasses.replace(cfg, coil_maps="simulated")).physics.maps_complex()
    est = task.physics.maps_complex()
    inside = task.to_image(task.gt)[0, 0] > 0.2 * task.to_image(task.gt).max()
    overlap = (est.conj() * truth).sum(0).abs()  # |<S_est, S_true>| per pixel, 1 = same up to phase
    assert float(overlap[inside].mean()) > 0.95
    assert "BART ecalib -m1" in task.provenance


# -- real data: BART brain k-space ------------------------------------------------------------

def test_cfl_reader_on_the_real_brain_data_and_round_trip(tmp_path):
    folder = shared_data("mri")
    ksp = read_cfl(folder / "bart_brain_ksp.cfl")
    assert ksp.shape == (1, 180, 230, 8) and ksp.dtype == np.complex64
    sampled = np.abs(ksp[0]).sum(-1) > 0
    assert 0.10 < sampled.mean() < 0.15  # ~12.7 % as documented in the data README
    write_cfl(tmp_path / "copy", ksp[0, :20, :30])
    np.testing.assert_array_equal(read_cfl(tmp_path / "copy"), ksp[0, :20, :30])
    with pytest.raises(FileNotFoundError, match="nothing.hdr"):
        read_cfl(tmp_path / "nothing")


@requires_bart
def test_real_brain_task(tmp_path, monkeypatch):
    from datamodules.operators.mri import sense_least_squares

    folder = shared_data("mri")
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    task = build_mri(FastMRIKneeConfig(source="bart_brain", root=str(folder), crop=None))
    assert task.y.shape == (1, 8, 180, 230, 2) and task.gt.shape == (1, 2, 180, 230)
    assert task.info["acceleration"] > 4 and "real 8-coil brain" in task.provenance
    assert task.info["gt_scale_fit_residual"] < 0.1  # the reference image explains the measured samples
    cg = sense_least_squares(task.physics, task.y, iterations=10)
    assert task.psnr(cg) > task.psnr(task.degraded) + 3
    with pytest.raises(ValueError, match="already undersampled"):
        build_mri(FastMRIKneeConfig(source="bart_brain", root=str(folder), crop=64))
