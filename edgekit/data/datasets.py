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
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data import builtin, idx, reber, shapes
from edgekit.data.arrays import ARRAY_SUFFIXES, array_to_inputs, image_dims, is_image_input
from edgekit.data.calibration import array_sha256, image_preprocessing
from edgekit.data.images import list_image_folder, no_usable_message, read_image
from edgekit.errors import DataError, UnknownNameError, UsageError
from edgekit.registry import Registry

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel, Preprocessing

SPLIT_NAMES = ("train", "val", "test", "all")
USER_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}  # a single set of the user's
VAL_FROM_TRAIN = {"train": 0.9, "val": 0.1, "test": 0.0}  # a split source without a val part
_SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
HOW_TO_PASS = (
    "pass a built-in name, a folder with one sub-folder per class, IDX files, or a .npz with x and y"
)


@dataclass
class LabelledSet:
    x: np.ndarray  # float32 (N, *model.input_spec.shape[1:]), preprocessed for the model
    y: np.ndarray  # int64 (N,) class labels; sequences: (N, T) next-symbol targets, -100 = ignore
    name: str  # "digits", "shapes", "reber", "folder:/abs", "idx:/abs", "npz:/abs"
    split: str  # "train" | "val" | "test" | "all"
    classes: list[str]  # class names; labels index into it
    sha256: str  # of x and y (shapes, dtypes and bytes)
    extra: dict = field(default_factory=dict)  # see load_dataset

    def __len__(self) -> int:
        return len(self.x)

    def to_dict(self) -> dict:
        """What the manifest records about the evaluation data."""
        return {
            "name": self.name,
            "split": self.split,
            "samples": int(len(self.x)),
            "classes": len(self.classes),
            "sha256": self.sha256,
        }


def labelled_sha256(x: np.ndarray, y: np.ndarray) -> str:
    return hashlib.sha256(f"{array_sha256(x)}|{array_sha256(y)}".encode()).hexdigest()


def _image_pre(model: LoadedModel, pre: Preprocessing | None, what: str) -> Preprocessing:
    """The preprocessing for image data: ``pre`` (else the model's), sized to the model's input."""
    spec = model.input_spec
    dims = image_dims(spec)
    if dims is None:
        raise DataError(
            f"{what} holds images, but {model.name} takes {spec.layout} inputs of shape "
            f"{tuple(spec.shape)}, not images; pass a .npz with x of shape (N, "
            f"{', '.join(map(str, spec.shape[1:]))}) and y"
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


def _pick(positions: np.ndarray, n: int | None, seed: int) -> np.ndarray:
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
    if labels is None or labels.ndim != 1:
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
    that comes split) or None (a single set, split 80/10/10)."""
    if split == "all":
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


def _split_or_fail(labels, rank, origin, split: str, where: str, n: int | None, seed: int) -> np.ndarray:
    """``choose_split`` then ``n`` of those chosen by ``seed``; an empty split is an error."""
    pos = choose_split(labels, rank, origin, split, where)
    if len(pos) == 0:
        raise DataError(
            f"the {split} split of {where} is empty ({len(rank)} samples in all; classes with fewer "
            "than 3 samples stay in train); add data or ask for split 'all'"
        )
    return _pick(pos, n, seed)


def _check_labels(y: np.ndarray, model: LoadedModel, where: str) -> np.ndarray:
    """Integer labels in range for the model's outputs (and -100 for ignored steps of sequences)."""
    if not (np.issubdtype(y.dtype, np.integer) or (y.dtype.kind == "f" and np.all(y == np.round(y)))):
        raise DataError(f"labels in {where} are {y.dtype}; save integer class indices")
    y = y.astype(np.int64)
    sequence = model.task == "sequence"
    if y.ndim != (2 if sequence else 1):
        want = "(N, T) per-step targets" if sequence else "(N,) one label per sample"
        raise DataError(f"labels in {where} have shape {tuple(y.shape)}; {model.name} needs {want}")
    real = y[y != reber.IGNORE_INDEX] if sequence else y
    if real.size and (real.min() < 0 or real.max() >= model.num_classes):
        raise DataError(
            f"labels in {where} run {real.min()}..{real.max()} but {model.name} has "
            f"{model.num_classes} outputs; build it with --num-classes {real.max() + 1} or fix the labels"
        )
    return y


def _finish(x, y, model, name, split, classes, extra=None) -> LabelledSet:
    y = _check_labels(np.asarray(y), model, name)
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} samples but {len(y)} labels; they must match one to one")
    x = np.ascontiguousarray(x, np.float32)
    return LabelledSet(x, y, name, split, list(classes), labelled_sha256(x, y), extra or {})


def _check_split(split: str) -> None:
    if split not in SPLIT_NAMES:
        raise UsageError(f"unknown split {split!r}; known: {', '.join(SPLIT_NAMES)}")


# ---------------------------------------------------------------- built-ins

# A built-in: (model, preprocessing or None, split, n, seed) -> LabelledSet
BuiltinDataset = Callable[["LoadedModel", "Preprocessing | None", str, "int | None", int], LabelledSet]
BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("dataset")
_BUILTIN_SPLITS = ("train", "val", "test")


def _split_parts(sizes: dict[str, int], split: str, n: int | None, seed: int) -> dict[str, np.ndarray]:
    """Indices into each built-in split for ``split`` ("all": the three together), subset by n."""
    names = _BUILTIN_SPLITS if split == "all" else (split,)
    offsets = np.cumsum([0] + [sizes[s] for s in names])
    chosen = _pick(np.arange(offsets[-1]), n, seed)
    return {s: chosen[(chosen >= lo) & (chosen < hi)] - lo for s, lo, hi in zip(names, offsets, offsets[1:])}


@BUILTIN_DATASETS.register("digits")
def _digits(model: LoadedModel, pre: Preprocessing | None, split: str, n: int | None, seed: int):
    image_pre = _image_pre(model, pre, "digits")
    by_split = {s: builtin.digit_indices(s) for s in _BUILTIN_SPLITS}
    parts = _split_parts({s: len(v) for s, v in by_split.items()}, split, n, seed)
    rows = np.sort(np.concatenate([by_split[s][i] for s, i in parts.items()]))
    x, y = builtin.digit_inputs(rows, image_pre)
    return _finish(x, y, model, "digits", split, [str(d) for d in range(10)])


@BUILTIN_DATASETS.register("shapes")
def _shapes(model: LoadedModel, pre: Preprocessing | None, split: str, n: int | None, seed: int):
    image_pre = _image_pre(model, pre, "shapes")
    recipe = shapes.load_shapes_recipe()
    parts = _split_parts({s: shapes.split_size(recipe, s) for s in _BUILTIN_SPLITS}, split, n, seed)
    xs, ys, hard = [], [], []
    for s, indices in parts.items():
        x, y, _, h = shapes.shapes_arrays(image_pre, s, indices)
        xs.append(x)
        ys.append(y)
        hard.append(h)
    x, y = np.concatenate(xs), np.concatenate(ys)
    return _finish(x, y, model, "shapes", split, recipe.classes, {"hard": np.concatenate(hard)})


def reber_split_strings(split: str, seq_len: int) -> list[str]:
    """All strings of one reber split: each split draws from its own seed, per the recipe."""
    recipe: builtin.ReberRecipe = builtin.load_recipe("reber", builtin.ReberRecipe)
    code = {"train": 1, "val": 2, "test": 3}[split]
    rng_seed = int(np.random.default_rng([recipe.seed, 7, code]).integers(2**63))
    max_len = min(recipe.max_len, seq_len)
    return reber.generate_strings(int(getattr(recipe, split)), rng_seed, max_len, recipe.branch_p)


@BUILTIN_DATASETS.register("reber")
def _reber(model: LoadedModel, pre: Preprocessing | None, split: str, n: int | None, seed: int):
    shape = tuple(model.input_spec.shape)
    if len(shape) != 3 or shape[2] != len(reber.SYMBOLS) or shape[1] < 9:
        raise DataError(
            f"reber feeds (N, T, {len(reber.SYMBOLS)}) one-hot sequences with T >= 9, "
            f"but {model.name} takes {shape}; {HOW_TO_PASS}"
        )
    recipe: builtin.ReberRecipe = builtin.load_recipe("reber", builtin.ReberRecipe)
    parts = _split_parts({s: int(getattr(recipe, s)) for s in _BUILTIN_SPLITS}, split, n, seed)
    strings = []
    for s, indices in parts.items():
        pool = reber_split_strings(s, shape[1])
        strings += [pool[i] for i in indices]
    batch = reber.encode(strings, shape[1])
    extra = {"valid": batch.valid, "deterministic": batch.deterministic, "lengths": batch.lengths}
    return _finish(batch.x, batch.y, model, "reber", split, list(reber.SYMBOLS), extra)


DATASETS: tuple[str, ...] = tuple(BUILTIN_DATASETS.names())


# ---------------------------------------------------------------- users' data


def _path_rank(paths: list[str]) -> np.ndarray:
    """A fixed pseudo-random rank per relative path, so a file keeps its split as others come."""
    return np.array([int.from_bytes(hashlib.sha1(p.encode()).digest()[:8], "big") for p in paths], np.uint64)


def _array_rank(n: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n)


def _split_dirs(root: Path) -> dict[str, Path]:
    """{"train": root/train, ...} when every visible sub-folder of ``root`` names a split."""
    subs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not subs or any(p.name.lower() not in _SPLIT_DIRS for p in subs):
        return {}
    return {_SPLIT_DIRS[p.name.lower()]: p for p in sorted(subs)}


def _folder_pool(root: Path) -> tuple[list[Path], np.ndarray, np.ndarray | None, list[str]]:
    """(files, labels, origin split per file or None, class names) of a class-per-folder tree."""
    parts = _split_dirs(root) or {None: root}
    listed = {s: list_image_folder(d) for s, d in parts.items()}
    for s, (files, _, classes) in listed.items():
        if classes is None:
            where = root if s is None else parts[s]
            what = "no images" if not files else "images outside class sub-folders"
            raise DataError(
                f"{where} has {what}; a dataset folder needs one sub-folder per class "
                f"({where}/CLASS/image.jpg), optionally under train/ val/ test/"
            )
    class_names = sorted({c for _, _, classes in listed.values() for c in classes})
    index = {c: i for i, c in enumerate(class_names)}
    files, labels, origin = [], [], []
    for s, (found, _, _) in listed.items():
        base = parts[s]
        files += found
        labels += [index[f.relative_to(base).parts[0]] for f in found]
        origin += [s] * len(found)
    return files, np.array(labels, np.int64), None if None in parts else np.array(origin), class_names


def _read_files(root: Path, files: list[Path], pre: Preprocessing) -> tuple[list, list[int], list[str]]:
    """The readable ``files`` as inputs, their positions in ``files``, and the skipped ones."""
    xs, kept, skipped = [], [], []
    for i, path in enumerate(files):
        arr = read_image(path, pre)
        if arr is None:
            skipped.append(path.relative_to(root).as_posix())
        else:
            xs.append(arr)
            kept.append(i)
    if not xs:
        raise DataError(no_usable_message(root, skipped))
    return xs, kept, skipped


def _folder(root: Path, model, pre, split, n, seed) -> LabelledSet:
    image_pre = _image_pre(model, pre, str(root))
    files, labels, origin, classes = _folder_pool(root)
    rank = _path_rank([f.relative_to(root).as_posix() for f in files])
    chosen = _split_or_fail(labels, rank, origin, split, str(root), n, seed)
    xs, kept, skipped = _read_files(root, [files[i] for i in chosen], image_pre)
    extra = {"skipped": skipped} if skipped else {}
    y = labels[chosen][kept]
    return _finish(np.stack(xs), y, model, f"folder:{root}", split, classes, extra)


def split_inputs(
    source: str | Path, model: LoadedModel, split: str, n: int | None, seed: int = 0
) -> tuple[np.ndarray, str, list[str]]:
    """(inputs, name, skipped files) of one split of a labelled source, for calibration: the
    labels only choose the split (a folder's classes need not match the model's outputs)."""
    kind, where = resolve_dataset(source)
    if kind != "folder":
        data = load_dataset(source, model, split, n, seed)
        return data.x, data.name, data.extra.get("skipped", [])
    root = Path(where)
    image_pre = _image_pre(model, None, str(root))
    files, labels, origin, _ = _folder_pool(root)
    rank = _path_rank([f.relative_to(root).as_posix() for f in files])
    chosen = _split_or_fail(labels, rank, origin, split, str(root), n, seed)
    xs, _, skipped = _read_files(root, [files[i] for i in chosen], image_pre)
    return np.stack(xs), f"folder:{root}", skipped


def _user_inputs(x: np.ndarray, model: LoadedModel, pre: Preprocessing | None, name: str) -> np.ndarray:
    spec = model.input_spec
    image_pre = _image_pre(model, pre, name) if is_image_input(spec) else (pre or model.preprocessing)
    return array_to_inputs(x, model.input_spec, image_pre, name)


def _class_names(model: LoadedModel) -> list[str]:
    return [str(i) for i in range(model.num_classes)]


def _idx(path: Path, model, pre, split, n, seed) -> LabelledSet:
    pairs = idx.find_idx_pairs(path)
    if not pairs:
        raise DataError(
            f"no IDX files at {path}; expected PREFIX-images-idx3-ubyte[.gz] "
            "with PREFIX-labels-idx1-ubyte[.gz]"
        )
    splits = [idx.split_of(p.prefix) for p in pairs]
    names = ", ".join(p.images.name for p in pairs)
    if len(pairs) > 1 and (None in splits or len(set(splits)) < len(splits)):
        raise DataError(
            f"cannot tell which split each IDX pair at {path} is ({names}); name them train-/t10k-/val- "
            "or pass the path prefix of one pair, e.g. data/train"
        )
    loaded = [idx.read_pair(p) for p in pairs]
    shapes_ = {im.shape[1:] for im, _ in loaded}
    if len(shapes_) > 1:
        raise DataError(f"IDX images at {path} differ in shape ({names}); pass the prefix of one pair")
    images = np.concatenate([im for im, _ in loaded])
    labels = np.concatenate([lb for _, lb in loaded])
    origin = None if splits == [None] else np.repeat(splits, [len(lb) for _, lb in loaded])
    chosen = _split_or_fail(labels, _array_rank(len(labels)), origin, split, str(path), n, seed)
    name = f"idx:{path}"
    x = _user_inputs(images[chosen], model, pre, pairs[0].images.name)
    return _finish(x, labels[chosen], model, name, split, _class_names(model))


def _npz_parts(path: Path) -> tuple[dict[str | None, tuple[np.ndarray, np.ndarray]], list[str] | None]:
    """{split or None: (x, y)} and the class names the file holds (key "classes"), if any."""
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path.name} holds no labels; save np.savez(path, x=inputs, y=labels)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else None
    if "x" in arrays and "y" in arrays:
        return {None: (arrays["x"], arrays["y"])}, classes
    parts = {}
    for key, s in (("train", "train"), ("val", "val"), ("valid", "val"), ("test", "test")):
        if f"x_{key}" in arrays and f"y_{key}" in arrays:
            parts[s] = (arrays[f"x_{key}"], arrays[f"y_{key}"])
    if not parts:
        raise DataError(
            f"{path.name} holds {', '.join(arrays) or 'no arrays'}; a dataset needs x and y "
            "(np.savez(path, x=inputs, y=labels)) or x_train/y_train and x_test/y_test"
        )
    return parts, classes


def _npz(path: Path, model, pre, split, n, seed) -> LabelledSet:
    parts, classes = _npz_parts(path)
    for s, (x, y) in parts.items():
        if len(x) != len(y):
            key = "x/y" if s is None else f"x_{s}/y_{s}"
            raise DataError(f"{path.name}: {key} hold {len(x)} samples but {len(y)} labels; they must match")
    if len({x.shape[1:] for x, _ in parts.values()}) > 1 or len({x.dtype for x, _ in parts.values()}) > 1:
        raise DataError(f"{path.name}: the x arrays of its splits differ in shape or dtype")
    xs = np.concatenate([x for x, _ in parts.values()])
    ys = np.concatenate([np.asarray(y) for _, y in parts.values()])
    origin = None if None in parts else np.repeat(list(parts), [len(y) for _, y in parts.values()])
    ys = _check_labels(ys, model, path.name)
    chosen = _split_or_fail(ys, _array_rank(len(ys)), origin, split, path.name, n, seed)
    x = _user_inputs(xs[chosen], model, pre, path.name)
    if classes is not None and len(classes) < (int(ys.max()) + 1 if ys.size else 0):
        raise DataError(f"{path.name}: 'classes' names {len(classes)} classes but labels go up to {ys.max()}")
    return _finish(x, ys[chosen], model, f"npz:{path}", split, classes or _class_names(model))


# ---------------------------------------------------------------- entry point

UserLoader = Callable[..., LabelledSet]


def resolve_dataset(source: str | Path) -> tuple[str, str | Path]:
    """("builtin", name) | ("folder" | "idx" | "npz", absolute path); raises for what cannot be used."""
    text = str(source)
    if text.startswith("builtin:") or text in BUILTIN_DATASETS:
        name = text.removeprefix("builtin:")
        BUILTIN_DATASETS.get(name)  # raises UnknownNameError listing the known ones
        return "builtin", name
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        return ("idx" if idx.find_idx_pairs(path) else "folder"), path
    if path.is_file():
        if path.suffix.lower() in ARRAY_SUFFIXES:
            return "npz", path
        if idx.is_idx_file(path):
            return "idx", path
        raise DataError(f"{path} is not a dataset; {HOW_TO_PASS}")
    if idx.find_idx_pairs(path):
        return "idx", path
    if "/" not in text and "\\" not in text and not Path(text).suffix:
        raise UnknownNameError(
            BUILTIN_DATASETS.unknown_message(text), hint="or pass a folder, IDX files or a .npz file"
        )
    raise DataError(f"dataset {path} does not exist; {HOW_TO_PASS}")


_USER_LOADERS: dict[str, UserLoader] = {"folder": _folder, "idx": _idx, "npz": _npz}


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
    _check_split(split)
    kind, where = resolve_dataset(source)
    if kind == "builtin":
        return BUILTIN_DATASETS.get(str(where))(model, preprocessing, split, n, seed)
    return _USER_LOADERS[kind](Path(where), model, preprocessing, split, n, seed)
