"""The calibration set: one array of preprocessed samples shared by every format's int8 quantizer.

``load_samples(source, model, n, seed)`` accepts None (the model's built-in source), a built-in
name ("digits", "photos", "reber", or "builtin:NAME"), a folder of images, or a .npy/.npz file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.arrays import ARRAY_SUFFIXES, array_sha256, is_image_input, load_array_file
from edgekit.data.builtin import digits_samples, photo_crops, photos_warning, reber_samples
from edgekit.data.images import load_image_folder
from edgekit.data.preprocess import image_preprocessing
from edgekit.errors import DataError, UnknownNameError, UsageError
from edgekit.layout import count, split_counts
from edgekit.registry import Registry

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel

HOW_TO_PASS = "pass --calib FOLDER of images, --calib FILE.npy/.npz, or a built-in name"


@dataclass
class SampleSet:
    x: np.ndarray  # float32 (N, *input_spec.sample_shape), preprocessed; a tuple of them for several inputs
    source: str  # "builtin:digits", "folder:/abs/path", "file:/abs/x.npy"
    sha256: str  # of shape, dtype and bytes of x
    skipped: list[str]  # files skipped (not images / unreadable), relative to the folder
    warning: str | None  # e.g. built-in photos are not representative of the user's data
    split: str | None = None  # the split of a labelled source the samples come from ("train")
    values: dict | None = None  # what was done to the source's values (edgekit.data.values.Values)

    def to_dict(self) -> dict:
        """What the manifest records about the calibration set."""
        return {
            "source": self.source,
            "samples": count(self.x),
            "shape": [list(a.shape) for a in self.x] if isinstance(self.x, tuple) else list(self.x.shape),
            "sha256": self.sha256,
            "skipped": len(self.skipped),
            **({"split": self.split} if self.split else {}),
            **({"values": self.values} if self.values else {}),
        }


# A built-in source: (model, n, seed) -> (samples, warning or None)
BuiltinLoader = Callable[["LoadedModel", int, int], "tuple[np.ndarray, str | None]"]
BUILTIN_SOURCES: Registry[BuiltinLoader] = Registry("calibration source")


@BUILTIN_SOURCES.register("digits")
def _digits(model: LoadedModel, n: int, seed: int) -> tuple[np.ndarray, str | None]:
    return digits_samples(image_preprocessing(model), n, seed), None


@BUILTIN_SOURCES.register("photos")
def _photos(model: LoadedModel, n: int, seed: int) -> tuple[np.ndarray, str | None]:
    return photo_crops(image_preprocessing(model), n, seed), photos_warning()


@BUILTIN_SOURCES.register("reber")
def _reber(model: LoadedModel, n: int, seed: int) -> tuple[np.ndarray, str | None]:
    from edgekit.data.reber import SYMBOLS

    shape = tuple(model.input_spec.shape)
    if len(shape) != 3 or shape[2] != len(SYMBOLS) or shape[1] < 9:
        raise DataError(
            f"the reber source feeds (N, T, {len(SYMBOLS)}) one-hot sequences with T >= 9, "
            f"but {model.name} takes {shape}; {HOW_TO_PASS}"
        )
    return reber_samples(shape[1], n, seed), None


@BUILTIN_SOURCES.register("shapes")
def _shapes(model: LoadedModel, n: int, seed: int) -> tuple[np.ndarray, str | None]:
    from edgekit.data.datasets import load_dataset

    # The train split only: calibration never sees an image that eval scores.
    return load_dataset("shapes", model, "train", n, seed, image_preprocessing(model)).x, None


BUILTINS: tuple[str, ...] = tuple(BUILTIN_SOURCES.names())


def default_source(model: LoadedModel) -> str:
    """The model's built-in source; photos for a user's image model; else ask for a file."""
    if model.builtin_calibration:
        return model.builtin_calibration
    if is_image_input(model.input_spec):
        return "photos"
    shape = tuple(model.input_spec.shape)
    raise DataError(
        f"no built-in calibration data fits {model.name}'s input {shape}; "
        f"pass --calib FILE.npy holding (N, {', '.join(map(str, model.input_spec.sample_shape))}) "
        "float32 samples"
    )


def _is_labelled(path: Path) -> bool:
    """A dataset rather than loose samples: IDX files, a class-per-folder image tree (maybe
    under train/ val/ test/), or an .npz holding labels."""
    from edgekit.data.idx import find_idx_pairs
    from edgekit.data.images import list_image_folder

    if find_idx_pairs(path):
        return True
    if path.is_dir():
        return list_image_folder(path)[2] is not None
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return "y" in z.files or any(k.startswith("y_") for k in z.files)
    return False


def resolve_source(source: str | Path | None, model: LoadedModel) -> tuple[str, str | Path]:
    """("builtin", name) | ("dataset" | "folder" | "file", path); raises for what cannot be used.

    "dataset" is a labelled source (IDX, a class-per-folder tree, an .npz with labels): the same
    sources ``--eval`` takes. Calibration draws from its train split only, so it never sees a
    sample that evaluation scores.
    """
    if source is None:
        return "builtin", default_source(model)
    text = str(source)
    if text.startswith("builtin:") or text in BUILTIN_SOURCES:
        name = text.removeprefix("builtin:")
        BUILTIN_SOURCES.get(name)  # raises UnknownNameError listing the known ones
        return "builtin", name
    path = Path(text).expanduser().resolve()
    if path.exists() or path.parent.is_dir():
        try:
            if _is_labelled(path):
                return "dataset", path
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read calibration data {path}: {exc}") from None
    if path.is_dir():
        return "folder", path
    if path.is_file():
        if path.suffix.lower() not in ARRAY_SUFFIXES:
            raise DataError(f"calibration file {path} is not .npy/.npz or IDX; {HOW_TO_PASS}")
        return "file", path
    if "/" not in text and "\\" not in text and not Path(text).suffix:
        raise UnknownNameError(
            BUILTIN_SOURCES.unknown_message(text), hint="or pass a folder, IDX files or a .npy/.npz file"
        )
    raise DataError(f"calibration source {path} does not exist; {HOW_TO_PASS}")


def load_samples(source: str | Path | None, model: LoadedModel, n: int, seed: int = 0, *,
                 calib_size: int | None = None) -> SampleSet:
    """Up to ``n`` preprocessed samples for ``model``, the same ones for the same seed.

    ``calib_size``: of the ``n``, how many calibrate (the rest verify, ``pipeline.split_samples``),
    so that a shortfall's warning says what was asked for and what each really gets."""
    if n < 1:
        raise UsageError(f"--calib-size must be at least 1, got {n}")
    if len(model.inputs) > 1:
        return _several_inputs(source, model, n, seed, calib_size)
    kind, where = resolve_source(source, model)
    skipped: list[str] = []
    warnings: list[str] = []
    values = None
    if kind == "builtin":
        x, warning = BUILTIN_SOURCES.get(str(where))(model, n, seed)
        warnings += [warning] if warning else []
    elif kind == "dataset":
        from edgekit.data.datasets import split_inputs

        x, _, skipped, values = split_inputs(where, model, "train", n, seed)
    elif kind == "folder" and is_image_input(model.input_spec):
        x, _, _, skipped = load_image_folder(where, image_preprocessing(model), n, seed)
    elif kind == "folder":
        from edgekit.data.values import pixel_reader, to_inputs

        pixels, _, _, skipped = load_image_folder(where, None, n, seed, read=pixel_reader(model.input_spec))
        x, found = to_inputs(pixels, model.input_spec, model.preprocessing, str(where))
        values = found.to_dict()
    else:
        pre = image_preprocessing(model) if is_image_input(model.input_spec) else model.preprocessing
        x, found = load_array_file(where, model.input_spec, pre, n, seed)
        values = found.to_dict()
    if values and values.get("warning"):
        warnings.append(values["warning"])
    if skipped:
        warnings.append(skipped_message(where, skipped))
    if len(x) < n:
        warnings.append(shortfall(len(x), n, calib_size, where))
    x = np.ascontiguousarray(x, dtype=np.float32)
    return SampleSet(
        x=x,
        source=f"{kind}:{where}",
        sha256=array_sha256(x),
        skipped=skipped,
        warning="; ".join(warnings) or None,
        split="train" if kind == "dataset" else None,
        values=values,
    )


def shortfall(found: int, n: int, calib_size: int | None, where) -> str:
    """The warning for a source holding fewer than the ``n`` samples asked for: what each use really
    gets, split as the pipeline splits them (``split_counts``; ``calib_size`` None: not known here)."""
    if calib_size is None:
        return f"only {found} calibration sample{'s' if found != 1 else ''} in {where} ({n} asked for)"
    verify = n - calib_size
    if found < 2:  # split_samples refuses it with its own message
        return f"only {found} sample in {where}: {n} asked for"
    calib, held = split_counts(found, calib_size, verify)
    held_out = f"{held} held out for verification (--verify-samples {verify})"
    if not calib_size:
        return f"only {found} samples in {where}: {held_out}"
    return (f"only {found} samples in {where}: {calib} used for calibration (--calib-size {calib_size} "
            f"asked for), {held_out}; pass more data with --calib")


def _several_inputs(source, model: LoadedModel, n: int, seed: int,
                    calib_size: int | None = None) -> SampleSet:
    """Calibration samples of a model with several inputs: a tuple of arrays from one .npz."""
    from edgekit.data.multi import how_to, pick, read_npz, samples_sha256

    if source is None:
        raise DataError(f"no built-in calibration data fits a model with several inputs; {how_to(model)}")
    xs, _ = read_npz(source, model)
    x = pick(xs, n, seed)
    warning = shortfall(len(x[0]), n, calib_size, Path(source).name) if len(x[0]) < n else None
    return SampleSet(x=x, source=f"file:{Path(source).expanduser().resolve()}", sha256=samples_sha256(x),
                     skipped=[], warning=warning)


def skipped_message(where, skipped: list[str]) -> str:
    """One line naming the files that could not be read (the first five)."""
    names = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    plural = "s" if len(skipped) != 1 else ""
    return f"skipped {len(skipped)} unreadable or non-image file{plural} in {where}: {names}"
