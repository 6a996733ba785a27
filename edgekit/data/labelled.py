"""Labelled samples and their splits, shared by the built-in and the user-data loaders.

``LabelledSet`` is what ``load_dataset`` returns; ``choose_split`` decides which samples of a
user's source belong to train, val or test (see ``edgekit.data.datasets``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.arrays import array_sha256, image_dims
from edgekit.data.preprocess import image_preprocessing
from edgekit.data.reber import IGNORE_INDEX
from edgekit.errors import DataError, UsageError

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel, Preprocessing

SPLIT_NAMES = ("train", "val", "test", "all")
USER_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}  # a single set of the user's
VAL_FROM_TRAIN = {"train": 0.9, "val": 0.1, "test": 0.0}  # a split source without a val part
HOW_TO_PASS = (
    "pass a built-in name, a folder with one sub-folder per class, IDX files, or a .npz with x and y"
)


@dataclass
class LabelledSet:
    x: np.ndarray  # float32 (N, *model.input_spec.sample_shape), preprocessed for the model
    # int64 (N,) class labels (binary: 0/1); sequences: (N, T) next-symbol targets, -100 = ignore;
    # regression: float32 targets, (N,) or (N, *output)
    y: np.ndarray
    name: str  # "digits", "shapes", "reber", "folder:/abs", "idx:/abs", "npz:/abs"
    split: str  # "train" | "val" | "test" | "all"
    classes: list[str]  # class names; labels index into it
    sha256: str  # of x and y (shapes, dtypes and bytes)
    extra: dict = field(default_factory=dict)  # see load_dataset
    # the task of the model it was loaded for ("": what the shapes imply, edgekit.measure.metrics)
    task: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def to_dict(self) -> dict:
        """What the manifest records about the evaluation data."""
        return {
            "name": self.name,
            "split": self.split,
            "samples": int(len(self.y)),
            "classes": len(self.classes),
            "sha256": self.sha256,
        }


def labelled_sha256(x: np.ndarray, y: np.ndarray) -> str:
    from edgekit.data.multi import samples_sha256

    return hashlib.sha256(f"{samples_sha256(x)}|{array_sha256(y)}".encode()).hexdigest()


def image_pre_for(model: LoadedModel, pre: Preprocessing | None, what: str) -> Preprocessing:
    """The preprocessing for image data: ``pre`` (else the model's), sized to the model's input."""
    spec = model.input_spec
    dims = image_dims(spec)
    if dims is None:
        raise DataError(
            f"{what} holds images, but {model.name} takes {spec.layout} inputs of shape "
            f"{tuple(spec.shape)}, not images; pass a .npz with x of shape (N, "
            f"{', '.join(map(str, spec.sample_shape))}) and y"
        )
    channels, height, width = dims
    if pre is not None:
        if pre.size is not None and tuple(pre.size) != (height, width):
            raise DataError(
                f"preprocessing resizes to {pre.size[0]}x{pre.size[1]} but {model.name} takes "
                f"{height}x{width} inputs; drop --input-size or match it"
            )
        if pre.grayscale and channels != 1:
            raise DataError(f"--grayscale, but {model.name} takes {channels}-channel inputs")
        model = dataclasses.replace(model, preprocessing=pre)
    return image_preprocessing(model)


def pick(positions: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Up to ``n`` of ``positions``, chosen by ``seed``, kept in order."""
    if n is not None and n < 1:
        raise UsageError(f"the number of samples must be at least 1, got {n}")
    if n is None or len(positions) <= n:
        return positions
    return positions[np.sort(np.random.default_rng(seed).permutation(len(positions))[:n])]


def split_positions(labels: np.ndarray | None, rank: np.ndarray, fractions: dict) -> dict[str, np.ndarray]:
    """Disjoint sorted positions per split. Within each class (one group when ``labels`` is None
    or per-step), the lowest ``rank`` go to test, the next to val, the rest to train; test and val
    get at least one item of every class that has three or more."""
    n = len(rank)
    if labels is None or labels.ndim != 1 or labels.dtype.kind == "f":  # per-step or real-valued
        groups = [np.arange(n)]
    else:
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    parts: dict[str, list[np.ndarray]] = {s: [np.zeros(0, np.int64)] for s in ("train", "val", "test")}
    for g in groups:
        g = g[np.argsort(rank[g], kind="stable")]
        k = len(g) if len(g) >= 3 else 0
        n_test, n_val = math.ceil(k * fractions["test"]), math.ceil(k * fractions["val"])
        parts["test"].append(g[:n_test])
        parts["val"].append(g[n_test : n_test + n_val])
        parts["train"].append(g[n_test + n_val :])
    return {s: np.sort(np.concatenate(p)).astype(np.int64) for s, p in parts.items()}


def choose_split(
    labels: np.ndarray, rank: np.ndarray, origin: np.ndarray | None, split: str, where: str
) -> np.ndarray:
    """Positions of ``split`` in a pool of samples. ``origin``: each sample's own split (a source
    that comes split) or None (a single set, split 80/10/10). ``all`` is everything, except where the
    source has its own train part beside others: scoring that would count the training samples
    (a folder with train/ and test/, MNIST's train- and t10k- files), so it is refused, naming the
    held-out part to ask for."""
    if split == "all":
        parts = sorted(set(origin.tolist())) if origin is not None else []
        if "train" in parts and len(parts) > 1:
            sizes = ", ".join(f"{p} {int(np.sum(origin == p)):,}" for p in parts)
            held = "test" if "test" in parts else "val"
            raise UsageError(f"{where} has its own parts ({sizes} samples), so split 'all' would score its "
                             f"training samples too; pass --split {held} to score its {held} part in full")
        return np.arange(len(rank))
    if origin is not None and len(set(origin.tolist())) == 1:
        origin = None  # one part only (MNIST's t10k files, a lone test/ folder): a single set
    if origin is None:
        return split_positions(labels, rank, USER_FRACTIONS)[split]
    present = sorted(set(origin.tolist()))
    base = "train" if split in ("train", "val") and "val" not in present else split
    if base not in present:
        raise DataError(
            f"{where} has no {split} split (it has {', '.join(present)}); add one, or ask for split 'all'"
        )
    pos = np.flatnonzero(origin == base)
    if split in ("train", "val") and "val" not in present:  # carve val out of train
        pos = pos[split_positions(labels[pos], rank[pos], VAL_FROM_TRAIN)[split]]
    return pos


def split_or_fail(labels, rank, origin, split: str, where: str, n: int | None, seed: int) -> np.ndarray:
    """``choose_split`` then ``n`` of those chosen by ``seed``; an empty split is an error."""
    pos = choose_split(labels, rank, origin, split, where)
    if len(pos) == 0:
        raise DataError(
            f"the {split} split of {where} is empty ({len(rank)} samples in all; classes with fewer "
            "than 3 samples stay in train); add data or ask for split 'all'"
        )
    return pick(pos, n, seed)


def check_labels(y: np.ndarray, model: LoadedModel, where: str) -> np.ndarray:
    """Integer labels in range for the model's outputs (and -100 for ignored steps of sequences);
    0/1 for a binary classifier; real-valued targets for regression."""
    if model.task == "regression":
        return _targets(y, model, where)
    if not (np.issubdtype(y.dtype, np.integer) or (y.dtype.kind == "f" and np.all(y == np.round(y)))):
        raise DataError(f"labels in {where} are {y.dtype}; save integer class indices "
                        "(real-valued targets: --task regress)")
    y = y.astype(np.int64)
    if model.task == "binary":
        return _binary_labels(y, model, where)
    sequence = model.task == "sequence"
    if y.ndim != (2 if sequence else 1):
        want = "(N, T) per-step targets" if sequence else "(N,) one label per sample"
        raise DataError(f"labels in {where} have shape {tuple(y.shape)}; {model.name} needs {want}")
    real = y[y != IGNORE_INDEX] if sequence else y
    if real.size and real.min() < 0:  # no --num-classes can fix a negative label: name it and where
        bad = int(real.min())
        at = tuple(int(i) for i in np.argwhere(y == bad)[0])
        at = f"sample {at[0]}" + (f", step {at[1]}" if len(at) > 1 else "")
        top = model.num_classes - 1
        raise DataError(
            f"labels in {where} must be class indices 0..{top} ({model.name} has {model.num_classes} "
            f"outputs), but it holds label {bad} ({at}); map the labels to 0..{top}"
            + (f" ({IGNORE_INDEX} marks a step to ignore)" if sequence else "")
        )
    if real.size and real.max() >= model.num_classes:
        fix = (f"build it with --num-classes {real.max() + 1}" if ":" not in model.name
               and not model.name.lower().endswith(".onnx") else "give the model more outputs")
        raise DataError(
            f"labels in {where} run {real.min()}..{real.max()} but {model.name} has "
            f"{model.num_classes} outputs; {fix} or fix the labels"
        )
    return y


def _binary_labels(y: np.ndarray, model: LoadedModel, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"labels in {where} have shape {tuple(y.shape)}; {model.name} is a binary "
                        "classifier (one logit) and needs (N,) labels of 0 or 1")
    if y.size and not np.isin(y, (0, 1)).all():
        raise DataError(f"labels in {where} run {y.min()}..{y.max()}, but {model.name} is a binary "
                        "classifier (one logit, sigmoid >= 0.5) and needs labels 0 or 1; map them to "
                        "0/1, or pass --task regress for real-valued targets")
    return y


def _targets(y: np.ndarray, model: LoadedModel, where: str) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise DataError(f"targets in {where} are {y.dtype}; regression needs numbers")
    y = y.astype(np.float32)
    if y.ndim == 2 and y.shape[1] == 1 and model.num_classes == 1:
        y = y[:, 0]
    if y.ndim < 1 or not np.isfinite(y).all():
        raise DataError(f"targets in {where} must be finite numbers, one row per sample")
    return y


def make_set(x, y, model, name, split, classes, extra=None) -> LabelledSet:
    from edgekit.layout import count

    y = check_labels(np.asarray(y), model, name)
    if count(x) != len(y):
        raise DataError(f"{name}: {count(x)} samples but {len(y)} labels; they must match one to one")
    x = tuple(np.ascontiguousarray(a, np.float32) for a in x) if isinstance(x, tuple) else \
        np.ascontiguousarray(x, np.float32)
    return LabelledSet(x, y, name, split, list(classes), labelled_sha256(x, y), extra or {}, model.task)


def check_split(split: str) -> None:
    if split not in SPLIT_NAMES:
        raise UsageError(f"unknown split {split!r}; known: {', '.join(SPLIT_NAMES)}")
