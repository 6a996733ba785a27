"""Samples from .npy / .npz files (and the arrays of IDX files).

Float arrays are taken as already preprocessed and must match the model's input shape, with or
without the batch dimension. For image models a uint8 array is taken as raw pixels, (N, H, W, C),
(N, H, W) or (N, C, H, W), and preprocessed like an image file (resize, grey/RGB, mean/std). For
other models integer arrays are raw values that get the declared scale, mean and std, and samples
may differ from the model's per-sample shape by axes of size 1 (``edgekit.data.values``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.images import preprocess_image
from edgekit.data.values import Values, fit_samples, image_dims, is_image_input, to_inputs  # noqa: F401
from edgekit.errors import DataError

if TYPE_CHECKING:
    from edgekit.models.spec import InputSpec, Preprocessing

ARRAY_SUFFIXES = (".npy", ".npz")


def array_sha256(x: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and bytes."""
    h = hashlib.sha256(f"{tuple(x.shape)}|{x.dtype.str}|".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def read_array(path: Path) -> np.ndarray:
    """The array in a .npy file, or key "x" (else the first array) of a .npz file."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                raise DataError(f"{path} holds no arrays; save one with np.savez(path, x=samples)")
            return archive["x" if "x" in archive.files else archive.files[0]]
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a .npz file by name (pickled objects refused); unreadable is one DataError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _shape_error(name: str, arr: np.ndarray, spec: InputSpec) -> DataError:
    sample = tuple(spec.sample_shape)
    batched = "(N, " + ", ".join(str(d) for d in sample) + ")"
    extra = " or uint8 images (N, H, W, C)" if is_image_input(spec) else ""
    return DataError(
        f"{name} holds an array of shape {tuple(arr.shape)} ({arr.dtype}); "
        f"the model takes {batched}, one sample {sample}{extra}"
    )


def _uint8_as_nhwc(arr: np.ndarray, spec: InputSpec) -> np.ndarray | None:
    """Raw pixel arrays in any common layout as (N, H, W, C); None if it is not one."""
    sample = tuple(spec.sample_shape)
    if arr.shape == sample:  # one (C, H, W) image
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[1:] == sample:  # the model's own layout
        return arr if spec.layout == "NHWC" else arr.transpose(0, 2, 3, 1)
    if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4):  # (N, H, W, C)
        return arr
    if arr.ndim == 3:  # (N, H, W) grey
        return arr[..., None]
    return None


def _pixels_to_inputs(nhwc: np.ndarray, pre: Preprocessing) -> np.ndarray:
    from PIL import Image

    out = []
    for hwc in nhwc:
        img = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc[..., :3])
        out.append(preprocess_image(img, pre))
    return np.stack(out)


def _pick(arr: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or len(arr) <= n:
        return arr
    return arr[np.sort(np.random.default_rng(seed).permutation(len(arr))[:n])]


def load_array_file(
    path: str | Path, spec: InputSpec, pre: Preprocessing, n: int | None = None, seed: int = 0
) -> tuple[np.ndarray, Values]:
    """Up to ``n`` model inputs (N, *spec.sample_shape) float32 from a .npy/.npz file, and what was
    done to its values. When the file holds more than ``n`` samples, ``seed`` picks which (kept in
    file order).
    """
    path = Path(path).expanduser().resolve()
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        raise DataError(f"{path.name}: expected a .npy or .npz file")
    return array_inputs(read_array(path), spec, pre, path.name, n, seed)


def array_to_inputs(
    arr: np.ndarray, spec: InputSpec, pre: Preprocessing, name: str, n: int | None = None, seed: int = 0
) -> np.ndarray:
    """Model inputs from an array as a file holds it (see ``array_inputs``)."""
    return array_inputs(arr, spec, pre, name, n, seed)[0]


def array_inputs(
    arr: np.ndarray, spec: InputSpec, pre: Preprocessing, name: str, n: int | None = None, seed: int = 0
) -> tuple[np.ndarray, Values]:
    """Model inputs from an array as a file holds it (see the module doc), and what was done to its
    values (``edgekit.data.values``); ``name`` is for errors. With more than ``n`` samples, ``seed``
    picks which (kept in order)."""
    if is_image_input(spec) and np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8 \
            and arr.size and 0 <= arr.min() and arr.max() <= 255:
        arr = arr.astype(np.uint8)  # pixels saved as wider integers
    if arr.dtype == np.uint8 and is_image_input(spec) and pre.kind == "image":
        nhwc = _uint8_as_nhwc(arr, spec)
        if nhwc is None:
            raise _shape_error(name, arr, spec)
        picked = _pick(nhwc, n, seed)
        x = _pixels_to_inputs(picked, pre)
        values = Values("uint8", float(picked.min(initial=0)), float(picked.max(initial=0)),
                        {"scale": pre.scale, "mean": list(pre.mean), "std": list(pre.std)},
                        "uint8 pixels: the declared image preprocessing (resize, scale, mean, std) applied")
    elif is_image_input(spec):
        if arr.shape == tuple(spec.sample_shape):
            arr = arr[None]
        if arr.ndim != len(spec.sample_shape) + 1 or tuple(arr.shape[1:]) != tuple(spec.sample_shape):
            raise _shape_error(name, arr, spec)
        x, values = to_inputs(_pick(arr, n, seed), spec, pre, name)
    else:
        x, values = to_inputs(_pick(fit_samples(arr, spec, name), n, seed), spec, pre, name)
    if len(x) == 0:
        raise DataError(f"{name} holds no samples (shape {tuple(arr.shape)})")
    if not np.isfinite(x).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(x), values
