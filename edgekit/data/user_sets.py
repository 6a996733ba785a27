"""Labelled data of the user's: a class-per-folder image tree, MNIST-style IDX files, an .npz.

Each loader is (path, model, preprocessing or None, split, n, seed) -> ``LabelledSet``; add one to
``USER_LOADERS`` and teach ``edgekit.data.datasets.resolve_dataset`` its paths. How splits are
chosen is described in ``edgekit.data.datasets``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.arrays import array_inputs, is_image_input, npz_arrays
from edgekit.data.idx import find_idx_pairs, read_pair, split_of
from edgekit.data.images import list_image_folder, no_usable_message, read_image
from edgekit.data.labelled import LabelledSet, check_labels, image_pre_for, make_set, split_or_fail
from edgekit.data.values import pixel_reader, to_inputs
from edgekit.errors import DataError

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel, Preprocessing

_SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


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


def _read_files(root: Path, files: list[Path], read) -> tuple[list, list[int], list[str]]:
    """The readable ``files`` as ``read(path)`` gives them, their positions in ``files``, and the
    skipped ones."""
    xs, kept, skipped = [], [], []
    for i, path in enumerate(files):
        arr = read(path)
        if arr is None:
            skipped.append(path.relative_to(root).as_posix())
        else:
            xs.append(arr)
            kept.append(i)
    if not xs:
        raise DataError(no_usable_message(root, skipped))
    return xs, kept, skipped


def _folder_files(root: Path, model, pre, split, n, seed) -> tuple:
    """(inputs, labels, class names, skipped files, values record or None) of one split of a
    class-per-folder tree. For a model whose input is not an image the files' pixels are raw values
    (``edgekit.data.values``); otherwise they get the image preprocessing."""
    spec = model.input_spec
    if is_image_input(spec):
        image_pre = image_pre_for(model, pre, str(root))
        read = lambda path: read_image(path, image_pre)  # noqa: E731
    else:
        read = pixel_reader(spec)
    files, labels, origin, classes = _folder_pool(root)
    rank = _path_rank([f.relative_to(root).as_posix() for f in files])
    chosen = split_or_fail(labels, rank, origin, split, str(root), n, seed)
    xs, kept, skipped = _read_files(root, [files[i] for i in chosen], read)
    x, values = np.stack(xs), None
    if not is_image_input(spec):
        x, found = to_inputs(x, spec, pre or model.preprocessing, str(root))
        values = found.to_dict()
    return x, labels[chosen][kept], classes, skipped, values


def _extra(skipped: list[str], values: dict | None) -> dict:
    return {**({"skipped": skipped} if skipped else {}), **({"values": values} if values else {})}


def _folder(root: Path, model, pre, split, n, seed) -> LabelledSet:
    x, y, classes, skipped, values = _folder_files(root, model, pre, split, n, seed)
    return make_set(x, y, model, f"folder:{root}", split, classes, _extra(skipped, values))


def folder_inputs(root: Path, model: LoadedModel, split: str, n: int | None, seed: int) -> tuple:
    """(inputs, name, skipped files, values record or None) of one split of a class-per-folder
    tree, for calibration: the classes only choose the split (they need not match the model's outputs)."""
    x, _, _, skipped, values = _folder_files(root, model, None, split, n, seed)
    return x, f"folder:{root}", skipped, values


def _user_inputs(x: np.ndarray, model: LoadedModel, pre: Preprocessing | None, name: str) -> tuple:
    """(inputs, what was done to the values) of an array from a user's file (``array_inputs``)."""
    spec = model.input_spec
    image_pre = image_pre_for(model, pre, name) if is_image_input(spec) else (pre or model.preprocessing)
    x, values = array_inputs(x, model.input_spec, image_pre, name)
    return x, values.to_dict()


def _class_names(model: LoadedModel) -> list[str]:
    return [str(i) for i in range(model.num_classes)]


def _idx(path: Path, model, pre, split, n, seed) -> LabelledSet:
    pairs = find_idx_pairs(path)
    if not pairs:
        raise DataError(
            f"no IDX files at {path}; expected PREFIX-images-idx3-ubyte[.gz] "
            "with PREFIX-labels-idx1-ubyte[.gz]"
        )
    splits = [split_of(p.prefix) for p in pairs]
    names = ", ".join(p.images.name for p in pairs)
    if len(pairs) > 1 and (None in splits or len(set(splits)) < len(splits)):
        raise DataError(
            f"cannot tell which split each IDX pair at {path} is ({names}); name them train-/t10k-/val- "
            "or pass the path prefix of one pair, e.g. data/train"
        )
    loaded = [read_pair(p) for p in pairs]
    shapes_ = {im.shape[1:] for im, _ in loaded}
    if len(shapes_) > 1:
        raise DataError(f"IDX images at {path} differ in shape ({names}); pass the prefix of one pair")
    images = np.concatenate([im for im, _ in loaded])
    labels = np.concatenate([lb for _, lb in loaded])
    origin = None if splits == [None] else np.repeat(splits, [len(lb) for _, lb in loaded])
    chosen = split_or_fail(labels, _array_rank(len(labels)), origin, split, str(path), n, seed)
    name = f"idx:{path}"
    x, values = _user_inputs(images[chosen], model, pre, pairs[0].images.name)
    return make_set(x, labels[chosen], model, name, split, _class_names(model), _extra([], values))


def _npz_parts(path: Path) -> tuple[dict[str | None, tuple[np.ndarray, np.ndarray]], list[str] | None]:
    """{split or None: (x, y)} and the class names the file holds (key "classes"), if any."""
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path.name} holds no labels; save np.savez(path, x=inputs, y=labels)")
    arrays = npz_arrays(path)
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
    if len(model.inputs) > 1:
        return _npz_several(path, model, split, n, seed)
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
    ys = check_labels(ys, model, path.name)
    chosen = split_or_fail(ys, _array_rank(len(ys)), origin, split, path.name, n, seed)
    x, values = _user_inputs(xs[chosen], model, pre, path.name)
    if classes is not None and len(classes) < (int(ys.max()) + 1 if ys.size else 0):
        raise DataError(f"{path.name}: 'classes' names {len(classes)} classes but labels go up to {ys.max()}")
    return make_set(x, ys[chosen], model, f"npz:{path}", split, classes or _class_names(model),
                    _extra([], values))


def _npz_several(path: Path, model, split, n, seed) -> LabelledSet:
    """A dataset for a model with several inputs: one array per input and y (``edgekit.data.multi``)."""
    from edgekit.data.multi import how_to, read_npz

    xs, y = read_npz(path, model)
    if y is None:
        raise DataError(f"{path.name} holds no labels y; {how_to(model)}")
    ys = check_labels(np.asarray(y), model, path.name)
    chosen = split_or_fail(ys, _array_rank(len(ys)), None, split, path.name, n, seed)
    x = tuple(a[chosen] for a in xs)
    return make_set(x, ys[chosen], model, f"npz:{path}", split, _class_names(model))


UserLoader = Callable[..., LabelledSet]
USER_LOADERS: dict[str, UserLoader] = {"folder": _folder, "idx": _idx, "npz": _npz}
