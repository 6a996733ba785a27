"""The built-in labelled datasets (nothing downloaded): ``digits``, ``shapes`` and ``reber``.

Their train/val/test splits are fixed by their recipes in calibration/. Register another with
``@BUILTIN_DATASETS.register("name")``: a function (model, preprocessing or None, split, n, seed)
-> ``LabelledSet``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.builtin import ReberRecipe, digit_indices, digit_inputs, load_recipe
from edgekit.data.labelled import HOW_TO_PASS, LabelledSet, image_pre_for, make_set, pick
from edgekit.data.reber import SYMBOLS, encode, generate_strings
from edgekit.data.shapes import load_shapes_recipe, shapes_arrays, split_size
from edgekit.errors import DataError
from edgekit.registry import Registry

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel, Preprocessing

# A built-in: (model, preprocessing or None, split, n, seed) -> LabelledSet
BuiltinDataset = Callable[["LoadedModel", "Preprocessing | None", str, "int | None", int], LabelledSet]
BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("dataset")
_BUILTIN_SPLITS = ("train", "val", "test")


def _split_parts(sizes: dict[str, int], split: str, n: int | None, seed: int) -> dict[str, np.ndarray]:
    """Indices into each built-in split for ``split`` ("all": the three together), subset by n."""
    names = _BUILTIN_SPLITS if split == "all" else (split,)
    offsets = np.cumsum([0] + [sizes[s] for s in names])
    chosen = pick(np.arange(offsets[-1]), n, seed)
    return {s: chosen[(chosen >= lo) & (chosen < hi)] - lo for s, lo, hi in zip(names, offsets, offsets[1:])}


@BUILTIN_DATASETS.register("digits")
def _digits(model: LoadedModel, pre: Preprocessing | None, split: str, n: int | None, seed: int):
    image_pre = image_pre_for(model, pre, "digits")
    by_split = {s: digit_indices(s) for s in _BUILTIN_SPLITS}
    parts = _split_parts({s: len(v) for s, v in by_split.items()}, split, n, seed)
    rows = np.sort(np.concatenate([by_split[s][i] for s, i in parts.items()]))
    x, y = digit_inputs(rows, image_pre)
    return make_set(x, y, model, "digits", split, [str(d) for d in range(10)])


@BUILTIN_DATASETS.register("shapes")
def _shapes(model: LoadedModel, pre: Preprocessing | None, split: str, n: int | None, seed: int):
    image_pre = image_pre_for(model, pre, "shapes")
    recipe = load_shapes_recipe()
    parts = _split_parts({s: split_size(recipe, s) for s in _BUILTIN_SPLITS}, split, n, seed)
    xs, ys, hard = [], [], []
    for s, indices in parts.items():
        x, y, _, h = shapes_arrays(image_pre, s, indices)
        xs.append(x)
        ys.append(y)
        hard.append(h)
    x, y = np.concatenate(xs), np.concatenate(ys)
    return make_set(x, y, model, "shapes", split, recipe.classes, {"hard": np.concatenate(hard)})


def reber_split_strings(split: str, seq_len: int) -> list[str]:
    """All strings of one reber split: each split draws from its own seed, per the recipe."""
    recipe: ReberRecipe = load_recipe("reber", ReberRecipe)
    code = {"train": 1, "val": 2, "test": 3}[split]
    rng_seed = int(np.random.default_rng([recipe.seed, 7, code]).integers(2**63))
    max_len = min(recipe.max_len, seq_len)
    return generate_strings(int(getattr(recipe, split)), rng_seed, max_len, recipe.branch_p)


@BUILTIN_DATASETS.register("reber")
def _reber(model: LoadedModel, pre: Preprocessing | None, split: str, n: int | None, seed: int):
    shape = tuple(model.input_spec.shape)
    if len(shape) != 3 or shape[2] != len(SYMBOLS) or shape[1] < 9:
        raise DataError(
            f"reber feeds (N, T, {len(SYMBOLS)}) one-hot sequences with T >= 9, "
            f"but {model.name} takes {shape}; {HOW_TO_PASS}"
        )
    recipe: ReberRecipe = load_recipe("reber", ReberRecipe)
    parts = _split_parts({s: int(getattr(recipe, s)) for s in _BUILTIN_SPLITS}, split, n, seed)
    strings = []
    for s, indices in parts.items():
        pool = reber_split_strings(s, shape[1])
        strings += [pool[i] for i in indices]
    batch = encode(strings, shape[1])
    extra = {"valid": batch.valid, "deterministic": batch.deterministic, "lengths": batch.lengths}
    return make_set(batch.x, batch.y, model, "reber", split, list(SYMBOLS), extra)


DATASETS: tuple[str, ...] = tuple(BUILTIN_DATASETS.names())
