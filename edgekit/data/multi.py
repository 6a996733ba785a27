"""Data for a model with several inputs: one ``.npz`` holding one array per input, named after the
inputs (``forward``'s parameter names, as ``edgekit export`` prints them; or x0, x1, ... in order),
each (N, *that input's sample shape), plus ``y`` (N,) labels where the file is a dataset:

    np.savez("data.npz", image=images, side=features, y=labels)

Samples are then a tuple of float32 arrays, one per input, in the model's input order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.arrays import array_sha256, npz_arrays
from edgekit.errors import DataError

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel


def how_to(model: LoadedModel) -> str:
    arrays = ", ".join(f"{s.name}=(N, {', '.join(map(str, s.sample_shape))})" for s in model.inputs)
    return f"{model.name} takes {len(model.inputs)} inputs: pass a .npz with {arrays} (and y=labels for eval)"


def read_npz(path: str | Path, model: LoadedModel) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
    """(one float32 array per input, labels or None) from ``path``; a DataError line for what does not fit."""
    path = Path(path).expanduser().resolve()
    if path.suffix.lower() != ".npz" or not path.is_file():
        raise DataError(f"{path.name} is not a .npz file; {how_to(model)}")
    arrays = npz_arrays(path)
    xs = []
    for i, spec in enumerate(model.inputs):
        arr = arrays.get(spec.name, arrays.get(f"x{i}"))
        if arr is None:
            held = ", ".join(arrays) or "no arrays"
            raise DataError(f"{path.name} holds {held}, no array named {spec.name} (or x{i}); "
                            f"{how_to(model)}")
        if tuple(arr.shape[1:]) != spec.sample_shape:
            raise DataError(f"{path.name}: {spec.name} has shape {tuple(arr.shape)}; {model.name} takes "
                            f"(N, {', '.join(map(str, spec.sample_shape))})")
        if not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"{path.name}: {spec.name} holds {arr.dtype} values; save numbers (float32)")
        xs.append(np.ascontiguousarray(arr, np.float32))
    counts = {len(a) for a in xs}
    y = arrays.get("y")
    if y is not None:
        counts.add(len(y))
    if len(counts) != 1:
        raise DataError(f"{path.name}: its arrays hold different numbers of samples ({sorted(counts)}); "
                        "one row per sample in each")
    if not all(np.isfinite(a).all() for a in xs):
        raise DataError(f"{path.name} contains NaN or infinite values")
    return tuple(xs), y


def pick(xs: tuple[np.ndarray, ...], n: int | None, seed: int) -> tuple[np.ndarray, ...]:
    """Up to ``n`` samples (the same rows of every input), chosen by ``seed``, kept in file order."""
    if n is None or len(xs[0]) <= n:
        return xs
    rows = np.sort(np.random.default_rng(seed).permutation(len(xs[0]))[:n])
    return tuple(a[rows] for a in xs)


def samples_sha256(x) -> str:
    """sha256 of an array, or of each array of a tuple in order."""
    if not isinstance(x, tuple):
        return array_sha256(x)
    import hashlib

    return hashlib.sha256("|".join(array_sha256(a) for a in x).encode()).hexdigest()
