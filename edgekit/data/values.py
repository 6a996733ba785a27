"""Numbers that are not pictures of the model's input: the one rule for what reaches a model whose
input is not an image (a sequence, rows, features), from IDX files, .npy/.npz arrays and image files.

The rule, by the source's value type:

- integer values (uint8 IDX files, integer arrays, pixels of image files) are raw: the declared
  preprocessing applies, ``x * scale``, then ``(x - mean) / std`` (one value, or one per entry of
  the sample's last axis). Declared means given with ``--scale``/``--mean``/``--std`` (or
  ``--preprocess FILE``, a recipe) at export, recorded as kind "values", and reused by eval; once
  anything is declared, an unset scale is 1/255 as for images (``--scale 1`` keeps the values). A
  model that declares nothing takes them as they are (with a warning when they exceed 0..1).
- float values are taken as model inputs already preprocessed: they pass unchanged, whatever is
  declared.

``to_inputs`` applies it and says what it did (``Values``, recorded in the manifest); a source
whose values contradict the declared preprocessing (0..255 into a model that declares nothing,
integers 0..1 scaled by 1/255, whole-number floats beyond 1 with a scale declared) gets one line
of warning naming the option. Samples are fitted to the model's per-sample shape: the same sizes,
ignoring axes of size 1 ((N, 28, 28) rows into a (28, 1, 28) seq-first input or a (1, 28, 28) one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import DataError

if TYPE_CHECKING:
    from edgekit.models.spec import InputSpec, Preprocessing

ONE_255 = "0.00392156862745098"  # 1/255, as --scale takes it


@dataclass(frozen=True)
class Values:
    """What a source's values were and what was done to them on the way into the model."""

    dtype: str  # the source's value type, e.g. "uint8"
    low: float  # smallest and largest value in the source
    high: float
    applied: dict | None  # {"scale", "mean", "std"} applied; None: passed unchanged
    rule: str  # why, in words
    warning: str | None = None

    def to_dict(self) -> dict:
        d = {"source_dtype": self.dtype, "source_range": [self.low, self.high], "applied": self.applied,
             "rule": self.rule}
        return {**d, "warning": self.warning} if self.warning else d


def declared(pre: Preprocessing, spec: InputSpec) -> bool:
    """Whether ``pre`` declares scale/mean/std for raw values: "values" (what declared preprocessing
    becomes for an input that is not an image), or "image" for an image input."""

    return pre.kind == ("image" if is_image_input(spec) else "values")


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(int(d) for d in shape if d != 1)


def fit_samples(arr: np.ndarray, spec: InputSpec, name: str) -> np.ndarray:
    """``arr`` as (N, *spec.sample_shape): the same sizes, axes of size 1 aside; else one DataError."""
    sample = tuple(spec.sample_shape)
    if arr.shape == sample:
        arr = arr[None]
    if arr.ndim >= 1 and tuple(arr.shape[1:]) == sample:
        return arr
    if arr.ndim >= 1 and _squeezed(arr.shape[1:]) == _squeezed(sample):
        return arr.reshape((len(arr), *sample))
    where = f"input {tuple(spec.shape)}" + (f", batch at axis {spec.batch_axis}" if spec.batch_axis else "")
    raise DataError(
        f"{name} holds an array of shape {tuple(arr.shape)} ({arr.dtype}), but the model takes samples of "
        f"shape {sample} ({where}); save an array (N, {', '.join(map(str, sample))})"
    )


def _transform(pre: Preprocessing, sample: tuple[int, ...]) -> tuple[float, np.ndarray, np.ndarray]:
    mean, std = np.asarray(pre.mean, np.float32), np.asarray(pre.std, np.float32)
    last = sample[-1] if sample else 1
    for what, v in (("--mean", mean), ("--std", std)):
        if v.size not in (1, last):
            raise DataError(f"preprocessing has {v.size} {what} values, but the model's samples {sample} are "
                            f"not images: pass one {what} value, or {last} (one per entry of the last axis)")
    return pre.scale, mean, std


def _scaled(x: np.ndarray, scale: float) -> np.ndarray:
    from edgekit.data.images import scale_pixels

    return x if scale == 1 else scale_pixels(x, scale)


def to_inputs(arr: np.ndarray, spec: InputSpec, pre: Preprocessing, name: str) -> tuple[np.ndarray, Values]:
    """Model inputs (N, *spec.sample_shape) float32 from raw or preprocessed values, per the rule
    above, and what was done. ``arr`` is one sample or a batch, any layout with the same sizes."""
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{name} holds {arr.dtype} values; save numbers (float32, or uint8 raw values)")
    arr = fit_samples(arr, spec, name)
    if len(arr) == 0:
        raise DataError(f"{name} holds no samples (shape {tuple(arr.shape)})")
    low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    raw = arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)
    x = arr.astype(np.float32)
    if raw and declared(pre, spec):
        scale, mean, std = _transform(pre, tuple(spec.sample_shape))
        x = (_scaled(x, scale) - mean) / std
        applied = {"scale": scale, "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
        rule = "integer values are raw: the declared scale, mean and std applied"
    elif raw:
        applied, rule = None, "integer values, no preprocessing declared: passed as they are"
    else:
        applied, rule = None, "float values are taken as preprocessed: passed unchanged"
    values = Values(str(arr.dtype), low, high, applied, rule)
    return np.ascontiguousarray(x, np.float32), _with_warning(values, arr, pre, spec, name)


def _with_warning(values: Values, arr: np.ndarray, pre: Preprocessing, spec: InputSpec, name: str) -> Values:
    import dataclasses

    warning = range_warning(values, arr, declared(pre, spec) and pre.scale, name)
    return dataclasses.replace(values, warning=warning) if warning else values


def range_warning(values: Values, arr: np.ndarray, scale: float | None, name: str) -> str | None:
    """One line when the source's values contradict the declared preprocessing (``scale``, None or
    False where nothing is declared), naming the option."""
    span = f"{values.low:g}..{values.high:g}"
    raw = values.dtype == "bool" or np.issubdtype(np.dtype(values.dtype), np.integer)
    if raw and values.applied is None and values.high > 1:
        scale = ONE_255 if values.high <= 255 else f"{1 / values.high:.6g}"
        return (f"{name} holds {values.dtype} values {span} and the model declares no preprocessing, so they "
                f"reach it unscaled; pass --scale {scale} if it was trained on 0..1 (--scale 1 keeps them "
                "and silences this)")
    if raw and values.applied is not None and values.high <= 1 and scale < 1 and values.high > values.low:
        return (f"{name} holds {values.dtype} values {span}, scaled by --scale {scale:.6g} to "
                f"0..{values.high * scale:.3g}; pass --scale 1 if they are already 0..1")
    if not raw and scale and scale != 1 and values.high > 1 and np.all(arr == np.round(arr)):
        return (f"{name} holds whole-number {values.dtype} values {span}: float arrays count as already "
                f"preprocessed, so --scale {scale:.6g} is not applied to them; save the raw values as "
                "uint8 (or divide them yourself)")
    return None


def pixel_reader(spec: InputSpec):
    """``read(path) -> uint8 pixels fitted to (1, *spec.sample_shape), or None if unreadable``: image
    files as raw values for a model whose input is not an image (grey, or RGB where the sample has an
    axis of 3 first or last), no resize; a picture of another size is a DataError naming it."""
    from PIL import Image

    from edgekit.data.images import as_mode, decode_image

    sizes = _squeezed(spec.sample_shape)
    rgb = len(sizes) == 3 and 3 in (sizes[0], sizes[-1])

    def read(path) -> np.ndarray | None:
        try:
            img = decode_image(path)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
            return None
        pixels = np.asarray(as_mode(img, "RGB" if rgb else "L"), np.uint8)
        if rgb and sizes[0] == 3 and sizes[-1] != 3:
            pixels = pixels.transpose(2, 0, 1)
        return fit_samples(pixels[None], spec, str(path))[0]

    return read


def image_dims(spec: InputSpec) -> tuple[int, int, int] | None:
    """(channels, height, width) of an image input (NCHW or NHWC, 1 or 3 channels), else None."""
    if len(spec.shape) != 4:
        return None
    if spec.layout == "NCHW" and spec.shape[1] in (1, 3):
        return spec.shape[1], spec.shape[2], spec.shape[3]
    if spec.layout == "NHWC" and spec.shape[3] in (1, 3):
        return spec.shape[3], spec.shape[1], spec.shape[2]
    return None


def is_image_input(spec: InputSpec) -> bool:
    return image_dims(spec) is not None
