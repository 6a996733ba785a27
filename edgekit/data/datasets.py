"""Labelled datasets for training and evaluation: ``load_dataset(source, model, split, n, seed)``.

Sources:
- built-ins (nothing downloaded): ``digits`` (scikit-learn's handwritten digits), ``shapes``
  (generated images, see shapes.py) and ``reber`` (Embedded Reber strings); "builtin:NAME" works
  too. Their train/val/test splits are fixed by their recipes in calibration/.
- a folder of images with one sub-folder per class (``DIR/cat/1.jpg``);
- MNIST-style IDX files: a folder holding ``PREFIX-images-idx3-ubyte[.gz]`` with
  ``PREFIX-labels-idx1-ubyte[.gz]``, a path prefix (``data/t10k``) or either file of a pair;
- an ``.npz`` with ``x`` and ``y`` (or ``x_train``/``y_train``, ``x_val``/``y_val``,
  ``x_test``/``y_test`` as Keras' mnist.npz has them). ``x`` is raw uint8 images or
  preprocessed floats, as for calibration files.

Splits of users' data: a source that comes split (a folder with ``train/``, ``val/``, ``test/``
sub-folders, each with class sub-folders; IDX prefixes ``train``/``t10k``/``val``; npz
``x_train``/``x_test``) gives each split from its own part; without a val part, val is 10% of
train (and train the other 90%). A source with one part only (MNIST's ``t10k`` files alone, a
lone ``test/`` folder) is a single set. A single set is split 80/10/10 within each class, by a hash of
each file's path (folders) or by a fixed permutation (arrays), so the split never depends on the
seed or on file order. ``split="all"`` returns everything. ``n`` takes a subset of the split,
chosen by ``seed`` and kept in order; ``seed`` never changes a split's contents.

The built-ins live in builtin_sets.py, the loaders of users' data in user_sets.py, ``LabelledSet``
and the split rules in labelled.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.arrays import ARRAY_SUFFIXES
from edgekit.data.builtin_sets import BUILTIN_DATASETS, DATASETS, reber_split_strings
from edgekit.data.idx import find_idx_pairs, is_idx_file
from edgekit.data.labelled import (
    HOW_TO_PASS,
    SPLIT_NAMES,
    LabelledSet,
    check_split,
    choose_split,
    labelled_sha256,
    split_positions,
)
from edgekit.data.user_sets import USER_LOADERS, folder_inputs
from edgekit.errors import DataError, UnknownNameError

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel, Preprocessing

# The public names of the data sets API, wherever they live
__all__ = [
    "BUILTIN_DATASETS",
    "DATASETS",
    "SPLIT_NAMES",
    "LabelledSet",
    "choose_split",
    "labelled_sha256",
    "load_dataset",
    "reber_split_strings",
    "resolve_dataset",
    "split_inputs",
    "split_positions",
]


def resolve_dataset(source: str | Path) -> tuple[str, str | Path]:
    """("builtin", name) | ("folder" | "idx" | "npz", absolute path); raises for what cannot be used."""
    text = str(source)
    if text.startswith("builtin:") or text in BUILTIN_DATASETS:
        name = text.removeprefix("builtin:")
        BUILTIN_DATASETS.get(name)  # raises UnknownNameError listing the known ones
        return "builtin", name
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        return ("idx" if find_idx_pairs(path) else "folder"), path
    if path.is_file():
        if path.suffix.lower() in ARRAY_SUFFIXES:
            return "npz", path
        if is_idx_file(path):
            return "idx", path
        raise DataError(f"{path} is not a dataset; {HOW_TO_PASS}")
    if find_idx_pairs(path):
        return "idx", path
    if "/" not in text and "\\" not in text and not Path(text).suffix:
        raise UnknownNameError(
            BUILTIN_DATASETS.unknown_message(text), hint="or pass a folder, IDX files or a .npz file"
        )
    raise DataError(f"dataset {path} does not exist; {HOW_TO_PASS}")


def load_dataset(
    source: str | Path,
    model: LoadedModel,
    split: str = "test",
    n: int | None = None,
    seed: int = 0,
    preprocessing: Preprocessing | None = None,
) -> LabelledSet:
    """Labelled samples of ``split`` from ``source``, preprocessed for ``model`` (see module doc).

    ``n`` takes up to n samples of the split, chosen by ``seed``; ``preprocessing`` replaces the
    model's (see ``edgekit.data.preprocess``). ``extra`` holds, for reber: "valid" (N, T, 7) bool
    allowed successors, "deterministic" (N, T) bool steps with one successor, "lengths" (N,);
    for shapes: "hard" (N,) bool, the tiny faint images; for folders: "skipped" unreadable files.
    """
    check_split(split)
    kind, where = resolve_dataset(source)
    if kind == "builtin":
        return BUILTIN_DATASETS.get(str(where))(model, preprocessing, split, n, seed)
    return USER_LOADERS[kind](Path(where), model, preprocessing, split, n, seed)


def split_inputs(
    source: str | Path, model: LoadedModel, split: str, n: int | None, seed: int = 0
) -> tuple[np.ndarray, str, list[str], dict | None]:
    """(inputs, name, skipped files, what was done to the values or None) of one split of a
    labelled source, for calibration: the labels only choose the split (a folder's classes need
    not match the model's outputs)."""
    kind, where = resolve_dataset(source)
    if kind != "folder":
        data = load_dataset(source, model, split, n, seed)
        return data.x, data.name, data.extra.get("skipped", []), data.extra.get("values")
    return folder_inputs(Path(where), model, split, n, seed)
