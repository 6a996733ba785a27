"""Built-in data that needs no download, each driven by its recipe in calibration/NAME.toml.

- digits: scikit-learn's real handwritten digits (1,797 8x8 images), split train/val/test.
- photos: random crops of the two photos scikit-learn ships (china.jpg, flower.jpg).
- reber: Embedded Reber grammar strings (see reber.py).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.images import image_to_array, normalize
from edgekit.data.reber import encode, generate_strings
from edgekit.errors import DataError, UsageError
from edgekit.tomlfile import tomllib

if TYPE_CHECKING:
    from edgekit.models.spec import Preprocessing

RECIPE_DIR_ENV = "EDGEKIT_CALIBRATION_DIR"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DigitsRecipe:
    description: str
    split_seed: int  # fixes the train/val/test split for good; changing it mixes test into train
    train: float
    val: float
    test: float
    calibration_split: str  # which split calibration samples come from
    max_value: float  # raw pixel values run 0..max_value


@dataclass(frozen=True)
class PhotosRecipe:
    description: str
    seed: int  # mixed with the caller's seed
    area: tuple[float, float]  # crop area as a fraction of the photo's area
    aspect: tuple[float, float]  # crop width / height, drawn log-uniformly
    flip: float  # probability of a horizontal flip
    warning: str


@dataclass(frozen=True)
class ReberRecipe:
    description: str
    seed: int  # mixed with the caller's seed
    branch_p: float  # probability of taking a node's first edge
    max_len: int  # longest string drawn; the model's sequence length caps it further
    train: int = 2000  # strings per split of the reber dataset (datasets.py), each from its own seed
    val: int = 500
    test: int = 1000


def calibration_dir() -> Path:
    """The recipes: $EDGEKIT_CALIBRATION_DIR, else edgekit/_calibration (in a checkout a link to the
    top-level calibration/ folder; in an installed wheel a copy of it)."""
    env = os.environ.get(RECIPE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "_calibration"


def load_recipe(name: str, cls: type):
    """Read calibration/NAME.toml into the recipe dataclass ``cls``."""
    path = calibration_dir() / f"{name}.toml"
    if not path.is_file():
        raise DataError(
            f"calibration recipe {path} is missing",
            hint=f"set {RECIPE_DIR_ENV} to the folder holding digits.toml, photos.toml, reber.toml",
        )
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"cannot read calibration recipe {path}: {exc}") from None
    fields = {f.name for f in dataclasses.fields(cls)}
    if set(table) != fields:
        missing, extra = sorted(fields - set(table)), sorted(set(table) - fields)
        raise DataError(f"calibration recipe {path}: missing keys {missing}, unknown keys {extra}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})


# ---------------------------------------------------------------- digits


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def digit_split_indices(recipe: DigitsRecipe, seed: int) -> dict[str, np.ndarray]:
    """Stratified, disjoint train/val/test indices into the 1,797 digits (each sorted)."""
    if abs(recipe.train + recipe.val + recipe.test - 1.0) > 1e-6:
        raise DataError("digits recipe: train + val + test fractions must add up to 1")
    _, y = _digits_raw()
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test, n_val = round(len(idx) * recipe.test), round(len(idx) * recipe.val)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if plane.shape == tuple(size):
        return plane
    img = Image.fromarray(plane.astype(np.float32))  # mode "F" keeps the values exact
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.float32)


def digit_indices(split: str = "train", seed: int | None = None) -> np.ndarray:
    """Indices into the 1,797 digits of one split: "train", "val", "test" or "calib".

    "calib" is the recipe's calibration split ("train"), so calibration never sees a test digit.
    ``seed`` overrides the recipe's split seed.
    """
    recipe: DigitsRecipe = load_recipe("digits", DigitsRecipe)
    if recipe.calibration_split not in ("train", "val"):
        raise DataError("digits recipe: calibration_split must be train or val, never test")
    split = recipe.calibration_split if split == "calib" else split
    if split not in SPLITS:
        raise UsageError(f"unknown digits split {split!r}; known: calib, {', '.join(SPLITS)}")
    return digit_split_indices(recipe, recipe.split_seed if seed is None else seed)[split]


def digit_inputs(idx: np.ndarray, pre: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Digits ``idx`` as model inputs (N, C, H, W) float32, and their labels (N,) int64."""
    recipe: DigitsRecipe = load_recipe("digits", DigitsRecipe)
    images, labels = _digits_raw()
    size = tuple(pre.size) if pre.size else images.shape[1:]
    channels = 1 if pre.grayscale else 3
    planes = np.stack([_resize_plane(im / recipe.max_value, size) for im in images[idx]])
    x = np.repeat(planes[:, None], channels, axis=1).clip(0.0, 1.0)
    factor = 255.0 * pre.scale  # digits come as 0..1; the declared scale applies to 8-bit pixels
    if abs(factor - 1.0) > 1e-9:
        x = x * np.float32(factor)
    return normalize(x.astype(np.float32), pre), labels[idx]


def digits_arrays(
    pre: Preprocessing, split: str = "train", seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All digits of one split (see ``digit_indices``) as model inputs and labels."""
    return digit_inputs(digit_indices(split, seed), pre)


def digits_samples(pre: Preprocessing, n: int, seed: int) -> np.ndarray:
    """``n`` calibration digits (fewer if the split is smaller), chosen by ``seed``."""
    idx = digit_indices("calib")
    pick = np.sort(np.random.default_rng(seed).permutation(len(idx))[:n])
    return digit_inputs(idx[pick], pre)[0]


# ---------------------------------------------------------------- photos


@functools.lru_cache(maxsize=1)
def _sample_photos() -> tuple:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    return tuple(Image.fromarray(a) for a in load_sample_images().images)


def _crop_box(rng: np.random.Generator, width: int, height: int, recipe: PhotosRecipe):
    """A random-resized-crop box (left, top, right, bottom), as torchvision draws it."""
    area = width * height
    log_lo, log_hi = np.log(recipe.aspect[0]), np.log(recipe.aspect[1])
    for _ in range(10):
        target = area * rng.uniform(*recipe.area)
        aspect = np.exp(rng.uniform(log_lo, log_hi))
        w, h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    side = min(width, height)  # fall back to the central square
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def photo_crops(pre: Preprocessing, n: int, seed: int) -> np.ndarray:
    """``n`` random crops of scikit-learn's sample photos as model inputs (N, C, H, W)."""
    from PIL import Image

    if pre.size is None:
        raise DataError("the model's preprocessing has no image size")
    recipe: PhotosRecipe = load_recipe("photos", PhotosRecipe)
    photos = _sample_photos()
    rng = np.random.default_rng([recipe.seed, seed])
    height, width = pre.size
    out = []
    for _ in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        crop = photo.crop(_crop_box(rng, photo.width, photo.height, recipe))
        crop = crop.resize((width, height), Image.Resampling.BILINEAR)
        if rng.random() < recipe.flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(image_to_array(crop, pre))
    return np.stack(out)


def photos_warning() -> str:
    return load_recipe("photos", PhotosRecipe).warning


# ---------------------------------------------------------------- reber


def reber_strings(n: int, seed: int, seq_len: int) -> list[str]:
    """``n`` embedded Reber strings that fit ``seq_len``, per the recipe."""
    recipe: ReberRecipe = load_recipe("reber", ReberRecipe)
    max_len = min(recipe.max_len, seq_len)
    rng_seed = int(np.random.default_rng([recipe.seed, seed]).integers(2**63))
    return generate_strings(n, rng_seed, max_len, recipe.branch_p)


def reber_samples(seq_len: int, n: int, seed: int) -> np.ndarray:
    """``n`` one-hot encoded strings (N, seq_len, 7) float32."""
    return encode(reber_strings(n, seed, seq_len), seq_len).x
