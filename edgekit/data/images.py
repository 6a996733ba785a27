"""Images to model inputs: Pillow decoding, ImageNet-style resize + centre crop, mean/std."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from edgekit.errors import DataError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from edgekit.models.spec import Preprocessing

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
CROP_FRACTION = 0.875  # resize to size / 0.875 (256 for 224), then centre-crop: the ImageNet way


class FolderImages(NamedTuple):
    x: np.ndarray  # (N, C, H, W) float32, preprocessed
    labels: np.ndarray | None  # (N,) int64 class index, when the folder has one sub-folder per class
    class_names: list[str] | None  # sorted sub-folder names; labels index into it
    skipped: list[str]  # paths relative to the folder: not images, or unreadable


def resize_center_crop(
    img: PILImage.Image, size: tuple[int, int], crop: float = CROP_FRACTION
) -> PILImage.Image:
    """Scale so the image covers ``size / crop`` (keeping its aspect), then crop the centre.

    An image that already has the target size is left alone (it is taken as already prepared).
    """
    from PIL import Image

    h, w = size
    if img.size == (w, h):
        return img
    scale = max(h / crop / img.height, w / crop / img.width)
    new_w, new_h = max(w, int(img.width * scale + 0.5)), max(h, int(img.height * scale + 0.5))
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = int(round((new_w - w) / 2)), int(round((new_h - h) / 2))
    return img.crop((left, top, left + w, top + h))


def image_to_array(img: PILImage.Image, pre: Preprocessing) -> np.ndarray:
    """Grey or RGB per ``pre``, [0, 1], (x - mean) / std, as a (C, H, W) float32 array."""
    mode = "L" if pre.grayscale else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return normalize(arr, pre)


def normalize(chw: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(x - mean) / std per channel; a single mean/std value applies to every channel."""
    mean = np.asarray(pre.mean, np.float32)
    std = np.asarray(pre.std, np.float32)
    channels = chw.shape[-3]
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise DataError(f"preprocessing has {mean.size} mean / {std.size} std values for {channels} channels")
    shape = (-1, 1, 1)
    return np.ascontiguousarray((chw - mean.reshape(shape)) / std.reshape(shape), np.float32)


def preprocess_image(img: PILImage.Image, pre: Preprocessing, crop: float = CROP_FRACTION) -> np.ndarray:
    """A decoded image to one model input (C, H, W): resize + centre crop, then normalise."""
    if pre.size is None:
        raise DataError("the model's preprocessing has no image size")
    return image_to_array(resize_center_crop(img, tuple(pre.size), crop), pre)


def list_image_folder(root: Path) -> tuple[list[Path], list[str], list[str] | None]:
    """(image files, skipped non-image files, class names or None), all sorted.

    The folder is labelled (one sub-folder per class) when every image lies in a sub-folder.
    Hidden files and folders (".DS_Store", ".git") are ignored.
    """
    images: list[Path] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                skipped.append(path.relative_to(root).as_posix())
    tops = [p.relative_to(root).parts for p in images]
    labelled = bool(tops) and all(len(parts) > 1 for parts in tops)
    class_names = sorted({parts[0] for parts in tops}) if labelled else None
    return images, skipped, class_names


def _read(path: Path, pre: Preprocessing, crop: float) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return preprocess_image(img, pre, crop)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None


def read_image(path: Path, pre: Preprocessing, crop: float = CROP_FRACTION) -> np.ndarray | None:
    """One image file as a model input (C, H, W) float32, or None if it cannot be read."""
    return _read(path, pre, crop)


def load_image_folder(
    path: str | Path,
    pre: Preprocessing,
    n: int | None = None,
    seed: int = 0,
    crop: float = CROP_FRACTION,
) -> FolderImages:
    """Up to ``n`` (all if None) images from a flat or class-per-sub-folder folder.

    Files are visited in an order shuffled by ``seed``, so the same seed picks the same images.
    Raises DataError if no file could be used, naming the skipped ones.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    files, skipped, class_names = list_image_folder(root)
    order = np.random.default_rng(seed).permutation(len(files))
    class_index = {c: i for i, c in enumerate(class_names or [])}
    arrays, labels = [], []
    for i in order:
        if n is not None and len(arrays) >= n:
            break
        arr = _read(files[i], pre, crop)
        if arr is None:
            skipped.append(files[i].relative_to(root).as_posix())
            continue
        arrays.append(arr)
        if class_names is not None:
            labels.append(class_index[files[i].relative_to(root).parts[0]])
    if not arrays:
        raise DataError(no_usable_message(root, skipped))
    x = np.stack(arrays)
    y = np.asarray(labels, np.int64) if class_names is not None else None
    return FolderImages(x, y, class_names, skipped)


def no_usable_message(root: Path, skipped: list[str]) -> str:
    if not skipped:
        what = "the folder is empty"
    else:
        names = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        what = f"{len(skipped)} file{'s' if len(skipped) != 1 else ''} skipped: {names}"
    return f"no usable images in {root} ({what}); pass a folder of .jpg/.png images or a .npy file"
