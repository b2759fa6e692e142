"""A user's own measurement files (datamodules/tasks/measurement_*.py): every documented
layout is written to disk, read back into a task whose operator explains the data, and run
through the CLI; bad files fail before anything runs with an error naming the problem and
no run folder; on the real 8-coil brain k-space the DIP output is zero outside the coil
support."""
from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
import yaml
from conftest import shared_data

from benchmark.cli import main
from benchmark.config import ConfigError, resolve
from datamodules.operators.blur import gaussian_kernel
from datamodules.operators.ct import CTOperator, fan_geometry, parallel_geometry
from datamodules.registry import load_all
from datamodules.sources.bart_io import bart_executable, read_cfl, to_bart, write_cfl
from datamodules.sources.coil_maps import coil_support, simulated_maps
from datamodules.sources.measurement_files import MeasurementFileError

requires_bart = pytest.mark.skipif(bart_executable() is None, reason="BART not installed (apt-get install bart)")
TINY_NET = {"name": "unet", "scales": 3, "channels": 8, "skip_channels": [0, 4, 4]}
STEPS = 30
N = 32


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def build(name: str, **dataset):
    """Resolve (reads and checks the files) and build a measurement dataset."""
    run = resolve({"method": {"name": "degraded"}, "dataset": {"name": name, **dataset}})
    return load_all()[name].build(run.dataset_cfg), run


# -- writing the documented layouts --------------------------------------------------------------

PIXEL_MM = 0.5


def ct_phantom(n: int = N) -> np.ndarray:
    """Attenuation per mm of a water-like ellipse with a denser insert (inside the inscribed circle)."""
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    img = ((yy / (0.4 * n)) ** 2 + (xx / (0.3 * n)) ** 2 < 1) * 0.02
    img += ((yy - 0.1 * n) ** 2 + xx**2 < (0.1 * n) ** 2) * 0.01
    return img.astype(np.float32)


def parallel_ct(n_angles: int = 20):
    return parallel_geometry(N, np.linspace(0, np.pi, n_angles, endpoint=False), 48, "strip", detector_spacing=1.0)


def fan_ct(n_angles: int = 24):
    return fan_geometry(N, np.linspace(0, 2 * np.pi, n_angles, endpoint=False), 48, 80 / PIXEL_MM, 100 / PIXEL_MM,
                        "strip", detector_spacing=1.0 / PIXEL_MM)


def simulate_ct(geom, noise: float = 0.0) -> np.ndarray:
    op = CTOperator(geom, scale=PIXEL_MM)
    y = op.A(torch.from_numpy(ct_phantom())[None, None])[0, 0].numpy()
    return y + noise * np.random.default_rng(0).standard_normal(y.shape).astype(np.float32) * float(np.abs(y).mean())


PARALLEL_YAML = {"geometry": "parallel", "image_size": N, "pixel_size": PIXEL_MM, "detector_spacing": PIXEL_MM, "gt": "gt.npy"}
FAN_KEYS = {"geometry": "fan", "image_size": N, "pixel_size": PIXEL_MM, "detector_spacing": 1.0, "source_origin": 80.0,
            "origin_detector": 100.0, "n_detectors": 48}


def write_ct_parallel(folder: Path, name: str = "sino.npy", settings: dict | None = None) -> Path:
    """The CT layout: sinogram (angles × detectors) + geometry YAML beside it (+ ground truth)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "gt.npy", ct_phantom())
    sino = simulate_ct(parallel_ct(), noise=0.01)
    path = folder / name
    _save(path, sino, "sinogram")
    (folder / (path.stem + ".yaml")).write_text(yaml.safe_dump(PARALLEL_YAML if settings is None else settings))
    return path


def _save(path: Path, array: np.ndarray, name: str) -> None:
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, array)
    elif suffix == ".npz":
        np.savez(path, **{name: array, "angles_deg": np.arange(array.shape[0], dtype=float)})
    elif suffix == ".h5":
        with h5py.File(path, "w") as f:
            f.create_dataset(name, data=array)
            f.create_dataset("notes/other", data=np.zeros(3))
    elif suffix == ".tif":
        tifffile.imwrite(path, array.astype(np.float32))
    else:
        raise ValueError(suffix)


def fft2c(x):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def mri_phantom(n: int = N) -> np.ndarray:
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    img = ((xx**2 / 0.5 + yy**2 / 0.7) < 1) * (1.0 + 0.5 * ((xx**2 + (yy - 0.2) ** 2) < 0.05))
    return (img * np.exp(0.5j * xx)).astype(np.complex64)


def mri_columns(n: int = N) -> np.ndarray:
    cols = np.zeros(n, bool)
    cols[::2] = True
    cols[n // 2 - 5: n // 2 + 5] = True  # fully sampled centre (ecalib's calibration region)
    return cols


def mri_data(coils: int = 4):
    """Undersampled k-space (coils, H, W) of the phantom with smooth maps, the mask, the maps."""
    maps = simulated_maps(coils, N, N)
    mask = np.broadcast_to(mri_columns(), (N, N))
    k = (fft2c(maps * mri_phantom()) * mask).astype(np.complex64)
    return k, mask, maps


def write_mri(folder: Path, layout: str) -> dict:
    """The MRI layouts; returns the dataset keys."""
    folder.mkdir(parents=True, exist_ok=True)
    k, mask, maps = mri_data()
    np.save(folder / "gt.npy", mri_phantom())
    np.save(folder / "maps.npy", maps)
    if layout == "h5":  # fastMRI layout: kspace [slices, coils, H, W] and a column mask (W,)
        with h5py.File(folder / "vol.h5", "w") as f:
            f.create_dataset("kspace", data=np.stack([0 * k, k, 2 * k]))
            f.create_dataset("mask", data=mri_columns().astype(np.float32))
            f.attrs["acquisition"] = "fixture"
        return {"file": str(folder / "vol.h5"), "slice": 1, "maps": str(folder / "maps.npy"), "gt": str(folder / "gt.npy")}
    if layout == "npy":  # (coils, H, W) complex + a PNG mask + given maps
        import imageio.v3 as iio

        np.save(folder / "ksp.npy", k)
        iio.imwrite(folder / "mask.png", (mask * 255).astype(np.uint8))
        return {"file": str(folder / "ksp.npy"), "mask": str(folder / "mask.png"), "maps": str(folder / "maps.npy"),
                "gt": str(folder / "gt.npy")}
    if layout == "cfl":  # BART [H, W, 1, coils] + a BART pattern; maps by ecalib (settings in a YAML beside it)
        write_cfl(folder / "ksp", to_bart(k))
        write_cfl(folder / "pattern", mask.astype(np.complex64)[:, :, None])
        (folder / "ksp.yaml").write_text(yaml.safe_dump({"mask": "pattern.cfl", "gt": "gt.npy"}))
        return {"file": str(folder / "ksp.cfl")}
    raise ValueError(layout)


def image_phantom(channels: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[:N, :N] / N
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.3 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1)])
    return img[:channels].astype(np.float32)


def write_image(folder: Path, forward: str) -> dict:
    """Image layouts: denoising (noisy PNG), inpainting (TIFF + mask PNG), blur (NPY + kernel NPY)."""
    import imageio.v3 as iio

    from datamodules.operators.blur import BlurOperator

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if forward == "denoising":
        gt = image_phantom(3)
        noisy = np.clip(gt + 25 / 255 * rng.standard_normal(gt.shape), 0, 1)
        iio.imwrite(folder / "noisy.png", np.round(np.moveaxis(noisy, 0, -1) * 255).astype(np.uint8))
        iio.imwrite(folder / "gt.png", np.round(np.moveaxis(gt, 0, -1) * 255).astype(np.uint8))
        return {"file": str(folder / "noisy.png"), "forward": "denoising", "sigma": 25.0, "gt": str(folder / "gt.png")}
    if forward == "inpainting":
        gt = image_phantom(3)
        mask = rng.random((N, N)) > 0.3
        tifffile.imwrite(folder / "masked.tif", np.moveaxis(gt * mask, 0, -1).astype(np.float32))
        iio.imwrite(folder / "mask.png", (mask * 255).astype(np.uint8))
        np.save(folder / "gt.npy", gt)
        return {"file": str(folder / "masked.tif"), "forward": "inpainting", "mask": str(folder / "mask.png"),
                "gt": str(folder / "gt.npy")}
    if forward == "blur":
        gt = image_phantom(1)
        kernel = gaussian_kernel(5, 1.5)[0, 0].numpy()
        blurred = BlurOperator(torch.from_numpy(kernel), gt.shape).A(torch.from_numpy(gt)[None])[0].numpy()
        np.save(folder / "blurred.npy", blurred[0] + 0.01 * rng.standard_normal(blurred.shape[1:]).astype(np.float32))
        np.save(folder / "kernel.npy", 3.0 * kernel)  # any positive scale: normalised to sum 1
        tifffile.imwrite(folder / "gt.tif", gt[0])
        return {"file": str(folder / "blurred.npy"), "forward": "blur", "kernel": str(folder / "kernel.npy"),
                "gt": str(folder / "gt.tif")}
    raise ValueError(forward)


# -- each layout builds a consistent task -----------------------------------------------------------

@pytest.mark.parametrize("fmt", [".npy", ".npz", ".h5", ".tif"])
def test_ct_sinogram_formats_give_the_same_task(tmp_path, fmt):
    path = write_ct_parallel(tmp_path, "sino" + fmt)
    task, run = build("measurement_ct", file=str(path))
    reference, _ = build("measurement_ct", file=str(write_ct_parallel(tmp_path / "ref")))
    assert torch.allclose(task.y, reference.y, rtol=1e-6, atol=0)
    assert run.dataset_cfg.geometry == "parallel" and run.dataset_cfg.settings.endswith("sino.yaml")
    assert task.gt.shape == (1, 1, N, N) and task.degraded.shape == task.gt.shape
    scale = task.info["x_scale"]
    # the operator explains the data: y = A x_GT up to the 1 % noise, in the same (normalised) units
    residual = (task.physics.A(task.gt) - task.y).norm() / task.y.norm()
    assert float(residual) < 0.03
    assert float(task.gt.max()) == pytest.approx(0.03 * scale, rel=1e-5)
    assert "user-supplied sinogram sino" in task.provenance and run.dataset_cfg.sha256 in task.provenance


def test_ct_fan_beam_from_dataset_keys_and_transposed_file(tmp_path):
    geom = fan_ct()
    sino = simulate_ct(geom)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f.create_dataset("data/projections", data=sino.T)  # detectors × angles
    np.save(tmp_path / "gt.npy", ct_phantom())
    task, run = build("measurement_ct", file=str(tmp_path / "scan.h5#data/projections"), transpose=True,
                      gt=str(tmp_path / "gt.npy"), **FAN_KEYS)
    assert task.physics.geometry.kind == "fan" and task.physics.geometry.n_angles == 24
    assert task.physics.geometry.detector_spacing == pytest.approx(1.0 / PIXEL_MM)
    assert float((task.physics.A(task.gt) - task.y).norm() / task.y.norm()) < 1e-5  # noiseless: exactly y = A x
    assert "LSQR" in task.info["fbp_method"] and task.psnr(task.degraded) > 15


def test_a_users_ct_sinogram_gets_the_ct_familys_sigmoid_output_unless_it_cannot_hold(tmp_path):
    """Issue 18: the CT family's convention (x in [0, 1], sigmoid output) for a normalised user sinogram,
    as on the built-in CT tasks; signed where [0, 1] cannot hold; the choice and its reason are in the task."""
    path = write_ct_parallel(tmp_path)
    task, _ = build("measurement_ct", file=str(path))
    assert float(task.gt.max()) <= 1 and task.x_range == "unit" and "CT family" in task.info["x_range_why"]
    assert build("measurement_ct", file=str(path), normalise=False)[0].x_range == "signed"
    assert build("measurement_ct", file=str(path), x_range="signed")[0].x_range == "signed"
    np.save(tmp_path / "gt.npy", ct_phantom() * 3.0)  # a ground truth above the FBP-type image's peak
    task, _ = build("measurement_ct", file=str(path))
    assert task.x_range == "signed" and "ground truth peaks at" in task.info["x_range_why"]


def test_ct_without_ground_truth(tmp_path):
    path = write_ct_parallel(tmp_path, settings={k: v for k, v in PARALLEL_YAML.items() if k != "gt"})
    task, _ = build("measurement_ct", file=str(path))
    assert task.gt is None and not task.has_ground_truth
    assert task.x_shape == (1, N, N) and "no ground truth" in task.provenance
    assert task.measurement().x_shape == (1, N, N)


@pytest.mark.parametrize("layout", ["h5", "npy", pytest.param("cfl", marks=requires_bart)])
def test_mri_kspace_layouts(tmp_path, layout):
    keys = write_mri(tmp_path, layout)
    task, run = build("measurement_mri", **keys)
    k, mask, _ = mri_data()
    assert task.y.shape == (1, 4, N, N, 2) and task.gt.shape == (1, 2, N, N)
    assert torch.equal(task.extras["mask"][0, 0], torch.from_numpy(mask.astype(np.float32)))
    scale = task.info["scale"]
    assert torch.allclose(task.y, torch.view_as_real(torch.from_numpy(k))[None] * scale, atol=1e-6)
    assert "support" in task.extras and task.metric.mask is not None  # on by default for measured data
    if layout != "cfl":  # the true maps: the reference explains the data exactly
        assert task.info["gt_scale"] == pytest.approx(1.0, rel=1e-4)
        assert float((task.physics.A(task.gt) - task.y).norm() / task.y.norm()) < 1e-4
        assert task.psnr(task.gt) == float("inf")
    else:
        assert task.info["coil_maps"] == "bart" and run.dataset_cfg.mask.endswith("pattern.cfl")
        assert 20 < task.psnr(task.gt * 0.95) < 40  # |gt| matches up to the 5 % error put in
    assert task.info["slice"] == (1 if layout == "h5" else None)


@pytest.mark.parametrize("forward", ["denoising", "inpainting", "blur"])
def test_degraded_image_layouts(tmp_path, forward):
    keys = write_image(tmp_path, forward)
    task, _ = build("measurement_image", **keys)
    channels = 1 if forward == "blur" else 3
    assert task.gt.shape == (1, channels, N, N) == task.degraded.shape
    residual = float((task.physics.A(task.gt) - task.y).abs().max())
    assert residual < {"denoising": 0.5, "inpainting": 1e-6, "blur": 0.06}[forward]
    if forward == "denoising":
        assert task.info["sigma"] == pytest.approx(25 / 255)
        assert task.psnr(task.degraded) == pytest.approx(20.3, abs=1.0)  # σ = 25/255 noise, clipped, 8-bit
    if forward == "inpainting":
        assert task.extras["mask"].shape == (1, 1, N, N) and 0.2 < task.physics.hole_ratio < 0.4
    if forward == "blur":
        assert float(task.extras["kernel"].sum()) == pytest.approx(1.0)


# -- through the CLI ----------------------------------------------------------------------------------

def write_suite(path: Path, datasets: list[dict], steps: int = STEPS) -> Path:
    suite = {"name": "own_data", "methods": [{"name": "vanilla_dip", "net": TINY_NET}], "datasets": datasets,
             "seeds": [0], "set": {"run.max_steps": steps, "run.trace_every": 5, "run.ssim_every": 2,
                                   "run.stopping": {"running_variance": {"window": 5, "patience": 10}}}}
    path.write_text(yaml.safe_dump(suite))
    return path


def run_folders(results: Path) -> list[Path]:
    return [p for p in results.rglob("*") if p.is_dir() and (p / "metrics.json").exists()] if results.exists() else []


def test_every_layout_runs_through_the_cli(tmp_path, capsys):
    datasets = [
        {"name": "measurement_ct", "file": str(write_ct_parallel(tmp_path / "ct_parallel"))},
        {"name": "measurement_image", **write_image(tmp_path / "den", "denoising")},
        {"name": "measurement_image", **write_image(tmp_path / "inp", "inpainting")},
        {"name": "measurement_image", **write_image(tmp_path / "blur", "blur")},
        {"name": "measurement_mri", **write_mri(tmp_path / "mri_h5", "h5")},
        {"name": "measurement_mri", **write_mri(tmp_path / "mri_npy", "npy")},
    ]
    (tmp_path / "ct_fan").mkdir()
    sino = simulate_ct(fan_ct(), noise=0.01)
    with h5py.File(tmp_path / "ct_fan" / "scan.h5", "w") as f:
        f.create_dataset("sinogram", data=sino)
    np.save(tmp_path / "ct_fan" / "gt.npy", ct_phantom())
    datasets.append({"name": "measurement_ct", "file": str(tmp_path / "ct_fan" / "scan.h5"),
                     "gt": str(tmp_path / "ct_fan" / "gt.npy"), **FAN_KEYS})
    if bart_executable() is not None:
        datasets.append({"name": "measurement_mri", **write_mri(tmp_path / "mri_cfl", "cfl")})
    results = tmp_path / "results"
    code = main(["run", str(write_suite(tmp_path / "suite.yaml", datasets)), "--results", str(results)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    runs = run_folders(results)
    assert len(runs) == len(datasets)
    for folder in runs:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "finished", metrics.get("traceback")
        assert metrics["final_step"] == STEPS and np.isfinite(metrics["final_psnr"]) and np.isfinite(metrics["peak_psnr"])
        assert "user-supplied" in metrics["provenance"]
        config = json.loads((folder / "config.json").read_text())
        assert config["dataset"]["sha256"] and Path(config["dataset"]["file"].split("#")[0]).is_file()
        images = np.load(folder / "images.npz")
        assert images["final"].shape == images["gt"].shape


def test_sha256_follows_the_file_contents(tmp_path):
    path = write_ct_parallel(tmp_path)
    _, first = build("measurement_ct", file=str(path))
    np.save(path, 2 * np.load(path))
    _, second = build("measurement_ct", file=str(path))
    assert first.dataset_cfg.sha256 != second.dataset_cfg.sha256 and first.run_id != second.run_id
    with pytest.raises(ConfigError, match="files changed"):  # rerunning a stored config of the old contents
        resolve({"method": {"name": "degraded"}, "dataset": first.to_dict()["dataset"]})


# -- bad files: one clear error, nothing stored ---------------------------------------------------------

def _ct_case(tmp_path, mutate):
    """The parallel-beam CT layout, then ``mutate(folder, sinogram path)`` breaks one thing."""
    path = write_ct_parallel(tmp_path)
    mutate(tmp_path, path)
    return {"name": "measurement_ct", "file": str(path)}


def _yaml(path: Path, **changes) -> None:
    settings = {**PARALLEL_YAML, **changes}
    path.with_suffix(".yaml").write_text(yaml.safe_dump({k: v for k, v in settings.items() if v is not None}))


BAD = {
    "3-D sinogram": (lambda t: _ct_case(t, lambda d, p: np.save(p, np.zeros((2, 20, 48), np.float32))),
                     r"sino\.npy: the sinogram has shape \(2, 20, 48\); expected 2-D"),
    "corrupt file": (lambda t: _ct_case(t, lambda d, p: p.write_bytes(b"\x93NUMPY garbage")),
                     r"sino\.npy: cannot read the sinogram \(\.npy file\)"),
    "missing file": (lambda t: {"name": "measurement_ct", "file": str(t / "nowhere.npy"), **FAN_KEYS},
                     r"sinogram file .*nowhere\.npy not found"),
    "missing array name": (lambda t: {"name": "measurement_ct", "file": f"{write_ct_parallel(t, 's.h5')}#projections"},
                           r"s\.h5: no array 'projections' for the sinogram; the file holds: notes/other, sinogram"),
    "ambiguous npz": (lambda t: (np.savez(t / "two.npz", a=np.zeros((20, 48)), b=np.zeros(3)),
                                 (t / "two.yaml").write_text(yaml.safe_dump(PARALLEL_YAML)),
                                 {"name": "measurement_ct", "file": str(t / "two.npz")})[-1],
                      r"two\.npz: which array is the sinogram\? the file holds a, b"),
    "missing geometry key": (lambda t: _ct_case(t, lambda d, p: _yaml(p, detector_spacing=None)),
                             r"dataset\.detector_spacing is not set: give the detector bin width"),
    "detector count mismatch": (lambda t: _ct_case(t, lambda d, p: _yaml(p, n_detectors=64)),
                                r"has 20 angles × 48 detectors but the geometry says n_detectors = 64"),
    "angles mismatch": (lambda t: _ct_case(t, lambda d, p: _yaml(p, angles=[0.0, 9.0, 18.0])),
                        r"dataset\.angles has 3 entries but the sinogram has 20 rows"),
    "geometry too small for the data": (lambda t: _ct_case(t, lambda d, p: _yaml(p, image_size=16)),
                                        r"have rays that miss the 16×16 image .* the geometry does not match the sinogram"),
    "source inside the image": (lambda t: _ct_case(t, lambda d, p: _yaml(p, geometry="fan", source_origin=5.0,
                                                                         origin_detector=10.0)),
                                r"source_origin = 5 puts the source inside the 32×32 image"),
    "wrong-shaped ground truth": (lambda t: _ct_case(t, lambda d, p: np.save(d / "gt.npy", np.zeros((30, 30)))),
                                  r"gt\.npy: the ground truth is 30×30 but image_size = 32"),
    "unknown YAML key": (lambda t: _ct_case(t, lambda d, p: _yaml(p, detector_pitch=1.0)),
                         r"sino\.yaml: unknown key 'detector_pitch'; valid keys: gt, geometry"),
    "YAML and --set disagree": (lambda t: {**_ct_case(t, lambda d, p: None), "image_size": 64},
                                r"dataset\.image_size = 64 but .*sino\.yaml says image_size: 32; remove one of them"),
    "real-valued k-space": (lambda t: (np.save(t / "k.npy", np.ones((4, N, N), np.float32)),
                                       {"name": "measurement_mri", "file": str(t / "k.npy")})[-1],
                            r"k\.npy: the k-space has dtype float32 and shape \(4, 32, 32\); expected complex"),
    "mask shape": (lambda t: {"name": "measurement_mri", **write_mri(t, "npy"),
                              "mask": (np.save(t / "m.npy", np.ones((N, N + 2))), str(t / "m.npy"))[1]},
                   r"m\.npy: the sampling mask has shape \(32, 34\), the k-space is 32×32"),
    "mask and k-space do not match": (lambda t: {"name": "measurement_mri", **write_mri(t, "npy"),
                                                 "mask": (np.save(t / "m.npy", np.broadcast_to(mri_columns(), (N, N)).T),
                                                          str(t / "m.npy"))[1]},
                                      r"mask and k-space do not match"),
    "maps shape": (lambda t: {"name": "measurement_mri", **write_mri(t, "npy"),
                              "maps": (np.save(t / "mp.npy", simulated_maps(3, N, N)), str(t / "mp.npy"))[1]},
                   r"mp\.npy: the coil maps have shape \(3, 32, 32\), the k-space \(4, 32, 32\)"),
    "slice out of range": (lambda t: {"name": "measurement_mri", **write_mri(t, "h5"), "slice": 7},
                           r"dataset\.slice = 7 is out of range: vol\.h5 has 3 slices"),
    "inpainting mask size": (lambda t: {"name": "measurement_image", **write_image(t, "inpainting"),
                                        "mask": (np.save(t / "m.npy", np.ones((N, N // 2))), str(t / "m.npy"))[1]},
                             r"m\.npy: the inpainting mask is 32×16 but the image is 32×32"),
    "non-binary mask": (lambda t: {"name": "measurement_image", **write_image(t, "inpainting"),
                                   "mask": (np.save(t / "m.npy", np.full((N, N), 0.5)), str(t / "m.npy"))[1]},
                        r"m\.npy: the inpainting mask must hold only 0 and 1"),
    "even blur kernel": (lambda t: {"name": "measurement_image", **write_image(t, "blur"),
                                    "kernel": (np.save(t / "k.npy", np.ones((4, 4))), str(t / "k.npy"))[1]},
                         r"k\.npy: the blur kernel is 4×4; its sides must be odd"),
    "image ground truth channels": (lambda t: {"name": "measurement_image", **write_image(t, "blur"),
                                               "gt": (np.save(t / "g.npy", image_phantom(3)), str(t / "g.npy"))[1]},
                                    r"g\.npy: the ground truth has shape \(C, H, W\) = \(3, 32, 32\), the degraded image "
                                    r"\(1, 32, 32\)"),
    "forward model missing": (lambda t: {k: v for k, v in {"name": "measurement_image",
                                                           **write_image(t, "denoising")}.items() if k != "forward"},
                              r"dataset\.forward is not set"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_fail_before_anything_runs(tmp_path, capsys, case):
    make, message = BAD[case]
    entry = make(tmp_path)
    results = tmp_path / "results"
    code = main(["run", str(write_suite(tmp_path / "suite.yaml", [entry])), "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err  # one line
    assert re.search(message, lines[0]), lines[0]
    assert run_folders(results) == []
    assert not results.exists() or not any(p.is_dir() for p in results.rglob("*"))  # not even a temporary folder


def test_measurement_errors_are_value_errors_and_need_a_file():
    from datamodules.sources.paths import MissingDataError
    from datamodules.tasks.measurement_ct import CTSinogramConfig, build_measurement_ct

    assert issubclass(MeasurementFileError, ValueError)
    with pytest.raises(MissingDataError, match="dataset.file is not set"):
        build_measurement_ct(CTSinogramConfig())


# -- MRI: the coil support ---------------------------------------------------------------------------

@requires_bart
def test_real_brain_dip_output_is_zero_outside_the_coil_support(tmp_path, capsys):
    """Real 8-coil brain k-space (BART workshop data) as a user's BART file: maps by ecalib,
    the measured sampling as the mask, BART's reference reconstruction (magnitude) as ground
    truth. The DIP output (every stored iterate) vanishes outside the coil support and the
    metric is computed inside it."""
    folder = shared_data("mri")
    reference = np.abs(read_cfl(folder / "bart_brain_img")[0, :, :, 0, 0])
    np.save(tmp_path / "reference.npy", reference)
    entry = {"name": "measurement_mri", "file": str(folder / "bart_brain_ksp.cfl"), "gt": str(tmp_path / "reference.npy")}
    task, _ = build(**entry)
    support = task.extras["support"][0, 0].bool()
    assert 0.5 < float(support.float().mean()) < 0.95  # a real, non-trivial support
    assert torch.equal(task.metric.mask[0, 0], support) and "inside the coil support" in task.metric.description
    maps_energy = task.physics.maps_complex().abs().pow(2).sum(0)
    assert float(maps_energy[~support].max()) == 0.0  # ESPIRiT maps vanish outside: y says nothing there
    results = tmp_path / "results"
    assert main(["run", str(write_suite(tmp_path / "suite.yaml", [entry], steps=20)), "--results", str(results)]) == 0
    (run,) = run_folders(results)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished", metrics.get("traceback")
    images = np.load(run / "images.npz")
    outside = ~support.numpy()
    for name in ("final", "peak"):
        assert images[name].shape == (2, 180, 230)
        assert np.abs(images[name][:, outside]).max() == 0.0, name
        assert np.abs(images[name][:, ~outside]).max() > 0.0, name


@requires_bart
def test_fastmri_knee_real_sources_restrict_to_the_coil_support_by_default(tmp_path, monkeypatch):
    from datamodules.tasks.mri import FastMRIKneeConfig, build_mri

    folder = shared_data("mri")
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path))
    task = build_mri(FastMRIKneeConfig(source="bart_brain", root=str(folder), crop=None))
    support = task.extras["support"][0, 0].bool()
    assert torch.equal(support, torch.from_numpy(coil_support(task.physics.maps_complex().numpy())))
    assert task.info["support"] == "coils" and 0.5 < task.info["support_fraction"] < 0.95
    off = build_mri(FastMRIKneeConfig(source="bart_brain", root=str(folder), crop=None, support="off"))
    assert "support" not in off.extras and off.metric.mask is None
    embedded = build_mri(FastMRIKneeConfig(crop=32, coils=4))  # simulated: no support restriction by default
    assert "support" not in embedded.extras


def test_dip_module_restricts_every_network_output_to_the_support():
    from datamodules.operators import Identity
    from datamodules.task import ImageMetric, Task
    from methods.registry import load_all as load_methods

    gt = torch.rand(1, 2, 16, 16)
    support = torch.zeros(1, 1, 16, 16)
    support[..., 4:12, 2:10] = 1
    task = Task("t", gt, gt, Identity((2, 16, 16)), gt, ImageMetric(data_range=None), "synthetic", x_range="signed",
                extras={"support": support})
    spec = load_methods()["vanilla_dip"]
    run = resolve({"method": {"name": "vanilla_dip", "net": TINY_NET}, "dataset": {"name": "denoising", "crop": 16}})
    module = spec.cls(run.method_cfg, task.measurement(), 0, 5)
    out = module.net(module.z)
    assert float(out[..., support[0, 0] == 0].abs().max()) == 0.0 and float(out.abs().max()) > 0


def test_the_readme_geometry_example_builds(tmp_path):
    """The CT settings YAML shown in the README is a working layout."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("# scan.yaml, beside scan.npy\n", 1)[1].split("```", 1)[0]
    settings = yaml.safe_load(block)
    (tmp_path / "scan.yaml").write_text(block)
    n, pixel = settings["image_size"], settings["pixel_size"]
    geom = fan_geometry(n, np.deg2rad(np.arange(60) * 6.0), settings["n_detectors"], settings["source_origin"] / pixel,
                        settings["origin_detector"] / pixel, settings["projector"],
                        detector_spacing=settings["detector_spacing"] / pixel)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    slice_ = (((yy / (0.4 * n)) ** 2 + (xx / (0.3 * n)) ** 2) < 1).astype(np.float32) * 0.05  # per mm
    np.save(tmp_path / settings["gt"], slice_)
    np.save(tmp_path / "scan.npy", CTOperator(geom, scale=pixel).A(torch.from_numpy(slice_)[None, None])[0, 0].numpy())
    task, run = build("measurement_ct", file=str(tmp_path / "scan.npy"))
    assert run.dataset_cfg.geometry == "fan" and task.physics.geometry == geom
    assert float((task.physics.A(task.gt) - task.y).norm() / task.y.norm()) < 1e-5
