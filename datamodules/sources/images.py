"""Natural-image sources: photos embedded in the scikit-image wheel, and folders of
PNGs in the CBSD68 layout (``0000.png … 0067.png``). Images are float tensors in
[0, 1] of shape ``(C, H, W)``."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from datamodules.sources.paths import find_data_root

# Real photographs that ship inside the scikit-image wheel (no download needed).
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "immunohistochemistry", "motorcycle")

CBSD68_HOW_TO_GET = (
    "Get CBSD68 with `make data-cbsd68` (clones github.com/clausmichele/CBSD68-dataset and "
    "copies its original_png/ folder to data/cbsd68/)."
)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    img = np.asarray(img)
    scale = 255.0 if img.dtype == np.uint8 else 1.0
    t = torch.from_numpy(img.astype(np.float32) / scale)
    if t.ndim == 2:
        t = t[None]
    else:
        t = t[..., :3].permute(2, 0, 1)
    return t.contiguous()


def skimage_photo(name: str) -> torch.Tensor:
    """One of the real photos bundled with scikit-image."""
    import skimage.data

    if name == "motorcycle":
        return _to_tensor(skimage.data.stereo_motorcycle()[0])
    if name not in SKIMAGE_PHOTOS:
        raise KeyError(f"unknown scikit-image photo {name!r}; valid: {', '.join(SKIMAGE_PHOTOS)}")
    return _to_tensor(getattr(skimage.data, name)())


@functools.cache
def skimage_shape(name: str) -> tuple[int, int]:
    """(H, W) of an embedded photo; ``ValueError`` naming the valid photos for an unknown name."""
    try:
        return tuple(skimage_photo(name).shape[-2:])
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def png_folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise FileNotFoundError(f"no .png files in {folder}")
    return files


def png_from_folder(folder: Path, image: str | int) -> tuple[torch.Tensor, str]:
    """Pick an image of a PNG folder by index (``3``) or file stem (``"0003"``)."""
    import imageio.v3 as iio

    files = png_folder_files(folder)
    if isinstance(image, int) or (isinstance(image, str) and image.isdigit() and not (folder / f"{image}.png").exists()):
        index = int(image)
        if not 0 <= index < len(files):
            raise IndexError(f"image index {index} out of range: {folder} has {len(files)} images")
        path = files[index]
    else:
        path = folder / f"{image}.png"
        if not path.exists():
            stems = ", ".join(p.stem for p in files[:8])
            raise KeyError(f"no image {image!r} in {folder} (files look like: {stems}, …)")
    return _to_tensor(iio.imread(path)), path.stem


def load_image(source: str, image: str | int, root: str | None = None) -> tuple[torch.Tensor, str]:
    """Ground-truth image and a label saying where it came from.

    source: ``"skimage"`` (embedded photos), ``"cbsd68"`` (the data set folder), or
    ``"folder"`` (any folder of PNGs given as ``root``).
    """
    if source == "skimage":
        return skimage_photo(str(image)), f"scikit-image '{image}' photo"
    if source == "cbsd68":
        folder = find_data_root("cbsd68", root, CBSD68_HOW_TO_GET)
        img, stem = png_from_folder(folder, image)
        return img, f"CBSD68 {stem}"
    if source == "folder":
        if not root:
            raise ValueError("source 'folder' needs dataset.root=/path/to/pngs")
        img, stem = png_from_folder(Path(root), image)
        return img, f"{Path(root).name}/{stem}.png"
    raise KeyError(f"unknown image source {source!r}; valid: skimage, cbsd68, folder")


def crop(img: torch.Tensor, size: int | list[int] | None, at: str | list[int] = "center") -> torch.Tensor:
    """Crop ``(C, H, W)`` to ``size`` (int = square) at ``"center"`` or ``[top, left]``."""
    if size is None:
        return img
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    H, W = img.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"crop {h}x{w} is larger than the image {H}x{W}")
    if at == "center":
        top, left = (H - h) // 2, (W - w) // 2
    else:
        top, left = at
        if top + h > H or left + w > W:
            raise ValueError(f"crop {h}x{w} at {at} leaves the image {H}x{W}")
    return img[..., top : top + h, left : left + w].contiguous()


def to_grayscale(img: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of an RGB image (1 channel)."""
    if img.shape[0] == 1:
        return img
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype).view(3, 1, 1)
    return (img * weights).sum(0, keepdim=True)
