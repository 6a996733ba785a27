"""Images to model inputs: robust Pillow decoding, then the model's declared preprocessing.

The transforms follow torchvision's semantics on PIL images (Resize, CenterCrop, ToTensor,
Normalize); ``tests/unit/test_preprocess.py`` checks each resize mode against a reference
written directly on Pillow and numpy.
"""

from __future__ import annotations

import math
import os
import warnings
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


class FolderImages(NamedTuple):
    x: np.ndarray  # (N, C, H, W) float32, preprocessed
    labels: np.ndarray | None  # (N,) int64 class index, when the folder has one sub-folder per class
    class_names: list[str] | None  # sorted sub-folder names; labels index into it
    skipped: list[str]  # paths relative to the folder: not images, or unreadable


def _resample(pre: Preprocessing):
    from PIL import Image

    return getattr(Image.Resampling, pre.interpolation.upper())


def resize_image(img: PILImage.Image, pre: Preprocessing) -> PILImage.Image:
    """Resize ``img`` to ``pre.size`` (height, width) per ``pre.resize`` (see Preprocessing)."""
    from PIL import Image

    if pre.size is None:
        raise DataError("the model's preprocessing has no image size; pass --input-size")
    h, w = (int(v) for v in pre.size)
    if pre.resize == "none":
        if img.size != (w, h):
            raise DataError(f"an image is {img.width}x{img.height} but the model takes {w}x{h} and "
                            "--resize none; pass --resize crop, squash or pad")
        return img
    if pre.resize == "squash":
        return img.resize((w, h), _resample(pre))
    if pre.resize == "pad":
        scale = min(h / img.height, w / img.width)
        new_w, new_h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        canvas = Image.new(img.mode, (w, h), _fill(img.mode, pre.pad_value))
        canvas.paste(img.resize((new_w, new_h), _resample(pre)), ((w - new_w) // 2, (h - new_h) // 2))
        return canvas
    # crop: torchvision Resize(size / crop_fraction) on the shorter side (timm's rule for a
    # non-square size: resize to exactly that), then CenterCrop(size).
    if h == w:
        short = math.floor(h / pre.crop_fraction)
        if img.width <= img.height:
            new_w, new_h = short, int(short * img.height / img.width)
        else:
            new_w, new_h = int(short * img.width / img.height), short
    else:
        new_w, new_h = math.floor(w / pre.crop_fraction), math.floor(h / pre.crop_fraction)
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), _resample(pre))
    left, top = int(round((new_w - w) / 2.0)), int(round((new_h - h) / 2.0))
    return img.crop((left, top, left + w, top + h))


def _fill(mode: str, value: int):
    return value if mode in ("L", "I", "F") else (value,) * len(mode)


def image_to_array(img: PILImage.Image, pre: Preprocessing) -> np.ndarray:
    """Grey or RGB per ``pre``, times ``pre.scale``, (x - mean) / std, laid out per ``pre.layout``
    ((C, H, W) or (H, W, C)) as float32."""
    img = as_mode(img, "L" if pre.grayscale else "RGB")
    arr = scale_pixels(np.asarray(img, dtype=np.float32), pre.scale)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return normalize(arr, pre)


def scale_pixels(arr: np.ndarray, scale: float) -> np.ndarray:
    """``arr * scale``, as a division when scale is 1/k (ToTensor divides by 255: bit-exact)."""
    divisor = 1.0 / scale
    if abs(divisor - round(divisor)) < 1e-6:
        return arr / np.float32(round(divisor))
    return arr * np.float32(scale)


def normalize(chw: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(x - mean) / std per channel of (..., C, H, W) scaled pixels; a single mean/std value
    applies to every channel. With ``pre.layout`` NHWC the channels move last."""
    mean = np.asarray(pre.mean, np.float32)
    std = np.asarray(pre.std, np.float32)
    channels = chw.shape[-3]
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise DataError(f"preprocessing has {mean.size} mean / {std.size} std values for {channels} "
                        f"channels; pass {channels} values to --mean and --std (or one for all)")
    shape = (-1, 1, 1)
    out = (chw - mean.reshape(shape)) / std.reshape(shape)
    if pre.layout == "NHWC":
        out = np.moveaxis(out, -3, -1)
    return np.ascontiguousarray(out, np.float32)


def as_mode(img: PILImage.Image, mode: str) -> PILImage.Image:
    """``img`` as 8-bit "L" or "RGB", whatever it was decoded as: palette images with a
    transparent colour, alpha (dropped, as torchvision's loader does), CMYK, and 16/32-bit or
    float grey (scaled to 8 bits instead of clipped, which is what Pillow's convert would do)."""
    from PIL import Image

    if img.mode == mode:
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max(initial=0))
        if img.mode.startswith("I;16") or (img.mode == "I" and peak > 255):
            top = 65535.0  # 16-bit samples (PNG stores them as I;16 or I)
        else:
            top = 1.0 if img.mode == "F" and peak <= 1.0 else 255.0
        img = Image.fromarray(np.clip(np.round(arr * 255.0 / top), 0, 255).astype(np.uint8), "L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGB" if img.mode.startswith(("RGB", "P")) else "L")
    return img if img.mode == mode else img.convert(mode)


def decode_image(path: Path) -> PILImage.Image:
    """Open and fully decode an image file, turned upright by its EXIF orientation.

    Raises OSError/ValueError (and Pillow's own errors) for files that are not readable images.
    """
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Palette images with Transparency expressed in bytes..."
        with Image.open(path) as img:
            img.load()
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # an animated GIF/WebP: its first frame
            upright = ImageOps.exif_transpose(img)
            return upright if upright is not img else img.copy()


def preprocess_image(img: PILImage.Image, pre: Preprocessing) -> np.ndarray:
    """A decoded image to one model input: resize per ``pre``, then scale and normalise."""
    img = as_mode(img, "L" if pre.grayscale else "RGB")
    return image_to_array(resize_image(img, pre), pre)


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


def _read(path: Path, pre: Preprocessing) -> np.ndarray | None:
    from PIL import Image

    try:
        img = decode_image(path)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None
    try:
        return preprocess_image(img, pre)
    except DataError as exc:  # e.g. a wrong size under --resize none: name the file
        raise DataError(f"{path}: {exc}") from None


def read_image(path: Path, pre: Preprocessing) -> np.ndarray | None:
    """One image file as a model input, or None if it cannot be read (a wrong size under
    ``--resize none`` is an error, not a skip)."""
    return _read(path, pre)


def load_image_folder(
    path: str | Path,
    pre: Preprocessing | None,
    n: int | None = None,
    seed: int = 0,
    read=None,
) -> FolderImages:
    """Up to ``n`` (all if None) images from a flat or class-per-sub-folder folder.

    Files are visited in an order shuffled by ``seed``, so the same seed picks the same images.
    Raises DataError if no file could be used, naming the skipped ones. ``read(path)`` replaces
    the reading and preprocessing of one file (None: unreadable), e.g. raw pixels for a model whose
    input is not an image (``edgekit.data.values.pixel_reader``).
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
        arr = _read(files[i], pre) if read is None else read(files[i])
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
