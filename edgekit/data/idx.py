"""MNIST-style IDX files: ``PREFIX-images-idx3-ubyte[.gz]`` with ``PREFIX-labels-idx1-ubyte[.gz]``.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values, big-endian, in C order. Files may be gzipped.
The prefix names the split: ``train`` -> train, ``t10k``/``test`` -> test, ``val``/``valid`` -> val.
Both ``train-images-idx3-ubyte`` and ``train-images.idx3-ubyte`` spellings are found.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgekit.errors import DataError

# IDX type code -> numpy dtype (big-endian)
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("=").str: k for k, v in _TYPES.items()}
_FILE = re.compile(r"^(?P<prefix>.+?)[-.](?P<kind>images|labels)[-.]idx(?P<ndim>\d)[-.]ubyte(?:\.gz)?$")
_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "t10k": "test",
    "test": "test",
    "testing": "test",
    "val": "val",
    "valid": "val",
    "validation": "val",
}


class IdxPair(NamedTuple):
    prefix: Path  # folder / prefix, e.g. /data/mnist/train
    images: Path
    labels: Path


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file (gzipped if it ends in .gz), in native byte order."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise DataError(f"{path.name} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = np.dtype(_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path.name}: IDX header is cut short")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(
            f"{path.name}: header says shape {shape} ({count * dtype.itemsize} bytes of data) "
            f"but the file holds {len(raw) - header}; the file is truncated or not IDX"
        )
    return np.frombuffer(raw, dtype, count, header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, arr: np.ndarray) -> Path:
    """Write ``arr`` as an IDX file (gzipped if ``path`` ends in .gz)."""
    path = Path(path)
    code = _CODES.get(arr.dtype.newbyteorder("=").str)
    if code is None:
        raise DataError(f"IDX cannot hold {arr.dtype}; use uint8, int8, int16, int32, float32 or float64")
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    data = head + np.ascontiguousarray(arr, _TYPES[code]).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def split_of(prefix: Path) -> str | None:
    """ "train" / "val" / "test" from a prefix's words (``emnist-digits-train``), else None."""
    words = re.split(r"[-_.]", prefix.name.lower())
    found = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
    return found.pop() if len(found) == 1 else None


def is_idx_file(path: Path) -> bool:
    return bool(_FILE.match(path.name))


def _pairs_in(files: list[Path]) -> tuple[list[IdxPair], list[str]]:
    """Matched image/label pairs, and the names of image or label files left without a partner."""
    found: dict[tuple[Path, str], Path] = {}
    for f in files:
        m = _FILE.match(f.name)
        if m and f.is_file():
            found.setdefault((f.parent / m["prefix"], m["kind"]), f)
    pairs, lone = [], []
    for (prefix, kind), f in sorted(found.items()):
        if kind == "images" and (prefix, "labels") in found:
            pairs.append(IdxPair(prefix, f, found[(prefix, "labels")]))
        elif (prefix, "images" if kind == "labels" else "labels") not in found:
            lone.append(f.name)
    return pairs, lone


def find_idx_pairs(path: str | Path) -> list[IdxPair]:
    """The IDX pairs in a folder, or the one pair of a prefix (``data/train``) or of either file.

    Returns [] when ``path`` holds no IDX file at all; raises DataError for an images file with no
    labels file (or the reverse).
    """
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        candidates = sorted(path.iterdir())
    else:
        m = _FILE.match(path.name)
        prefix = path.parent / m["prefix"] if m else path
        candidates = sorted(prefix.parent.glob(f"{prefix.name}[-.]*")) if prefix.parent.is_dir() else []
        candidates = [c for c in candidates if (mm := _FILE.match(c.name)) and mm["prefix"] == prefix.name]
    pairs, lone = _pairs_in(candidates)
    if lone:
        where = path if path.is_dir() else path.parent
        raise DataError(
            f"IDX file{'s' if len(lone) > 1 else ''} {', '.join(lone)} in {where} lack a partner; "
            "put PREFIX-images-idx3-ubyte[.gz] next to PREFIX-labels-idx1-ubyte[.gz]"
        )
    return pairs


def read_pair(pair: IdxPair) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, H, W) or (N, H, W, C), labels (N,) int64), checked against each other."""
    images, labels = read_idx(pair.images), read_idx(pair.labels)
    if images.ndim not in (3, 4):
        raise DataError(f"{pair.images.name} holds shape {images.shape}; expected (N, rows, cols) images")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{pair.labels.name} holds {labels.dtype} {labels.shape}; expected (N,) integers")
    if len(images) != len(labels):
        raise DataError(
            f"{pair.images.name} holds {len(images)} images but {pair.labels.name} {len(labels)} labels; "
            "pair the files of the same set"
        )
    return images, labels.astype(np.int64)
