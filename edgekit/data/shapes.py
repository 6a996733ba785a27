"""The built-in ``shapes`` dataset: generated colour images of geometric shapes, one per image.

Each image is a pure function of (recipe, split, index, size): its own random generator draws a
background (two-colour gradient plus blotchy texture), clutter behind the shape, the shape (kind
from the balanced label list, random size, position, rotation and colour at a random contrast to
the background), occluders in front, and Gaussian noise. Shapes are drawn with Pillow at
``supersample`` times the size and averaged down, so edges are antialiased at any resolution.
Labels (balanced) and which images are "hard" (a ``recipe.hard`` fraction drawn tiny and faint,
which keeps any model below 100%) are drawn per split. The knobs live in calibration/shapes.toml.
Rendering takes about 1 ms per 64x64 image on one core.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.builtin import SPLITS, load_recipe
from edgekit.data.images import normalize, scale_pixels
from edgekit.errors import DataError, UsageError

if TYPE_CHECKING:
    from edgekit.models.spec import Preprocessing

_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}  # separate random streams per split


@dataclass(frozen=True)
class ShapesRecipe:
    description: str
    seed: int
    classes: tuple[str, ...]
    train: int
    val: int
    test: int
    radius: tuple[float, float]  # shape size (about its radius) as a fraction of the image side
    jitter: float  # the centre lies within +-jitter * side of the image centre
    rotation: float  # shapes turn by up to +-rotation degrees
    outside: float  # fraction of the radius a shape may reach past the border
    contrast: tuple[float, float]  # RGB distance shape/background, fraction of 255
    texture: tuple[float, float]  # background texture amplitude, fraction of 255
    noise: tuple[float, float]  # Gaussian noise std, fraction of 255
    clutter: tuple[int, int]  # items behind the shape
    occluders: tuple[int, int]  # items in front of it
    hard: float  # fraction of images drawn small and faint instead (the irreducible error)
    hard_radius: tuple[float, float]
    hard_contrast: tuple[float, float]
    supersample: int


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return _regular(2 * points) * radii[:, None]


def _cross(arm: float = 0.32) -> np.ndarray:
    a = arm
    return np.array(
        [
            (a, 1),
            (a, a),
            (1, a),
            (1, -a),
            (a, -a),
            (a, -1),
            (-a, -1),
            (-a, -a),
            (-1, -a),
            (-1, a),
            (-a, a),
            (-a, 1),
        ],
        float,
    )


# name -> (filled polygon, polygon cut out of it or None), radius about 1 before normalisation
_OUTLINES = {
    "circle": lambda: (_regular(64), None),
    "square": lambda: (_regular(4, np.pi / 4), None),
    "triangle": lambda: (_regular(3, np.pi / 2), None),
    "pentagon": lambda: (_regular(5, np.pi / 2), None),
    "hexagon": lambda: (_regular(6), None),
    "star": lambda: (_star(), None),
    "cross": lambda: (_cross(), None),
    "ring": lambda: (_regular(64), _regular(64) * 0.6),
    "crescent": lambda: (_regular(64), _regular(64) * 0.85 + (0.45, 0.0)),
}
SHAPE_KINDS = tuple(_OUTLINES)


def _area(outer: np.ndarray, hole: np.ndarray | None, res: int = 512) -> float:
    """Filled area of ``outer`` minus ``hole``, measured by drawing it (the hole may stick out)."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", (res, res), 0)
    draw = ImageDraw.Draw(mask)
    to_px = lambda poly: [tuple(p) for p in (poly / 2.5 + 0.5) * res]  # noqa: E731
    draw.polygon(to_px(outer), fill=1)
    if hole is not None:
        draw.polygon(to_px(hole), fill=0)
    return float(np.asarray(mask, np.float64).sum()) * (2.5 / res) ** 2


@functools.cache
def outline(kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Unit outline of ``kind``, centred on its bounding box, scaled so that its filled area
    lies between a unit circle's and its circumscribed size (the geometric mean of the two)."""
    outer, hole = _OUTLINES[kind]()
    centre = (outer.max(axis=0) + outer.min(axis=0)) / 2
    outer, hole = outer - centre, (hole - centre if hole is not None else None)
    scale = float(np.sqrt(np.sqrt(np.pi / _area(outer, hole)) / np.linalg.norm(outer, axis=1).max()))
    return outer * scale, (hole * scale if hole is not None else None)


def load_shapes_recipe() -> ShapesRecipe:
    recipe: ShapesRecipe = load_recipe("shapes", ShapesRecipe)
    unknown = sorted(set(recipe.classes) - set(SHAPE_KINDS))
    if unknown or len(set(recipe.classes)) != len(recipe.classes) or len(recipe.classes) < 2:
        raise DataError(
            f"shapes recipe: classes must be 2 or more distinct names from {', '.join(SHAPE_KINDS)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return recipe


def split_size(recipe: ShapesRecipe, split: str) -> int:
    if split not in SPLITS:
        raise UsageError(f"unknown shapes split {split!r}; known: {', '.join(SPLITS)}")
    return int(getattr(recipe, split))


def split_labels(recipe: ShapesRecipe, split: str) -> np.ndarray:
    """Labels of the whole split: balanced (counts differ by at most one), in shuffled order."""
    n = split_size(recipe, split)
    rng = np.random.default_rng([recipe.seed, _SPLIT_CODE[split]])
    return (rng.permutation(n) % len(recipe.classes)).astype(np.int64)


def split_hard(recipe: ShapesRecipe, split: str) -> np.ndarray:
    """Which images of the split are drawn tiny and faint (bool), a ``recipe.hard`` fraction."""
    rng = np.random.default_rng([recipe.seed, _SPLIT_CODE[split], 0])
    return rng.random(split_size(recipe, split)) < recipe.hard


# ---------------------------------------------------------------- drawing


def _background(rng: np.random.Generator, side: int, recipe: ShapesRecipe) -> np.ndarray:
    """(side, side, 3) float: a two-colour linear gradient plus bilinear blotches."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.linspace(-0.5, 0.5, side)
    c, s = np.cos(angle), np.sin(angle)
    ramp = (c * t[None, :] + s * t[:, None]) / (abs(c) + abs(s)) + 0.5  # 0..1
    img = c0 + (c1 - c0) * ramp[..., None]
    grid = rng.normal(0.0, 1.0, (5, 5, 3)) * rng.uniform(*recipe.texture) * 255
    pos = np.linspace(0, 4, side)
    lo = np.minimum(pos.astype(int), 3)
    w = (pos - lo)[:, None]
    interp = np.zeros((side, 5))
    interp[np.arange(side), lo] = 1 - w[:, 0]
    interp[np.arange(side), lo + 1] = w[:, 0]
    rows = np.tensordot(interp, grid, axes=(1, 0))  # (side, 5, 3)
    return img + np.tensordot(rows, interp, axes=(1, 1)).transpose(0, 2, 1)


def _draw_clutter(draw, rng: np.random.Generator, count: int, big: int, ss: int) -> None:
    """Random lines and small blobs in random colours."""
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            pts = [tuple(p) for p in rng.uniform(-0.1, 1.1, (2, 2)) * big]
            draw.line(pts, fill=colour, width=max(ss, int(rng.uniform(0.01, 0.03) * big)))
        else:
            cx, cy = rng.uniform(0, big, 2)
            rx, ry = rng.uniform(0.01, 0.04, 2) * big
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)


def _shape_colour(rng: np.random.Generator, local: np.ndarray, contrast: float) -> tuple:
    """A colour at RGB distance ``contrast`` * 255 from ``local``, kept inside 0..255 if possible."""
    best = None
    for _ in range(8):
        direction = rng.normal(size=3)
        colour = local + direction / np.linalg.norm(direction) * contrast * 255
        clipped = np.clip(colour, 0, 255)
        err = np.abs(colour - clipped).sum()
        if best is None or err < best[0]:
            best = (err, clipped)
        if err == 0:
            break
    return tuple(int(round(c)) for c in best[1])


def _draw_shape(img, rng, kind: str, bg: np.ndarray, recipe: ShapesRecipe, hard: bool) -> None:
    """The labelled shape: random size, position, rotation and colour, pasted through a mask;
    tiny and faint when ``hard``."""
    from PIL import Image, ImageDraw

    big = img.width
    outer, hole = outline(kind)
    r = rng.uniform(*(recipe.hard_radius if hard else recipe.radius)) * big
    reach = r * float(np.linalg.norm(outer, axis=1).max()) * (1 - recipe.outside)
    cx, cy = big / 2 + rng.uniform(-recipe.jitter, recipe.jitter, 2) * big
    cx, cy = (float(np.clip(c, min(reach, big / 2), max(big - reach, big / 2))) for c in (cx, cy))
    theta = np.radians(rng.uniform(-recipe.rotation, recipe.rotation))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    iy, ix = int(np.clip(cy, 0, big - 1)), int(np.clip(cx, 0, big - 1))
    contrast = rng.uniform(*(recipe.hard_contrast if hard else recipe.contrast))
    colour = _shape_colour(rng, bg[iy, ix], contrast)
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for poly, fill in ((outer, 255), (hole, 0)):
        if poly is not None:
            draw.polygon([tuple(p) for p in (poly @ rot.T) * r + (cx, cy)], fill=fill)
    img.paste(colour, (0, 0, big, big), mask)


def render_image(
    recipe: ShapesRecipe, split: str, index: int, label: int, size: int, hard: bool = False
) -> np.ndarray:
    """Image ``index`` of ``split`` as (size, size, 3) uint8."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([recipe.seed, _SPLIT_CODE[split], index])
    ss = max(1, int(recipe.supersample))
    big = size * ss
    bg = _background(rng, big, recipe)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    _draw_clutter(draw, rng, int(rng.integers(recipe.clutter[0], recipe.clutter[1] + 1)), big, ss)
    _draw_shape(img, rng, recipe.classes[label], bg, recipe, hard)
    _draw_clutter(draw, rng, int(rng.integers(recipe.occluders[0], recipe.occluders[1] + 1)), big, ss)
    if ss > 1:
        img = img.reduce(ss)
    arr = np.asarray(img, np.float32)
    arr = arr + rng.normal(0.0, 1.0, arr.shape).astype(np.float32) * (rng.uniform(*recipe.noise) * 255)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def render(recipe: ShapesRecipe, split: str, indices: np.ndarray, size: int) -> np.ndarray:
    """Images ``indices`` of ``split`` as (N, size, size, 3) uint8."""
    labels, hard = split_labels(recipe, split), split_hard(recipe, split)
    out = np.empty((len(indices), size, size, 3), np.uint8)
    for row, i in enumerate(indices):
        out[row] = render_image(recipe, split, int(i), int(labels[i]), size, bool(hard[i]))
    return out


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 to (...) uint8 luma, bit-exact with Pillow's convert("L")."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def pixels_to_inputs(nhwc: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(N, H, W, 3) uint8 to model inputs (N, C, H, W) float32, grey or RGB per ``pre``."""
    x = to_grey(nhwc)[:, None] if pre.grayscale else nhwc.transpose(0, 3, 1, 2)
    return normalize(scale_pixels(x.astype(np.float32), pre.scale), pre)


def shapes_arrays(
    pre: Preprocessing, split: str = "train", indices: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Images of one split (all, or ``indices`` into it) as model inputs, with their labels,
    the class names, and which images are the tiny faint ones (see ``split_hard``)."""
    if pre.size is None or pre.size[0] != pre.size[1]:
        raise DataError(f"shapes are square images; the model's input size is {pre.size}")
    recipe = load_shapes_recipe()
    labels = split_labels(recipe, split)
    idx = np.arange(len(labels)) if indices is None else np.asarray(indices, np.int64)
    x = pixels_to_inputs(render(recipe, split, idx, int(pre.size[0])), pre)
    return x, labels[idx], list(recipe.classes), split_hard(recipe, split)[idx]
