"""Declared preprocessing: overrides from the command line, a recipe or a ``--preprocess`` TOML file.

The same keys everywhere (CLI option names with dashes, or underscores in files):
``input-size``, ``resize`` (crop | squash | pad | none), ``crop-fraction``, ``interpolation``,
``scale``, ``mean``, ``std``, ``grayscale`` (true = grey, false = RGB), ``layout`` (NCHW | NHWC),
``pad-value``. A file holds them at its top level or under ``[preprocess]``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import DataError, UsageError
from edgekit.tomlfile import read_toml

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel, Preprocessing

# key -> (type check, how to write it)
KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "input_size": ((int, list, tuple), "an integer, or [height, width]"),
    "resize": (str, "crop, squash, pad or none"),
    "crop_fraction": ((int, float), "a number in (0, 1], e.g. 0.875"),
    "interpolation": (str, "nearest, bilinear, bicubic, lanczos, box or hamming"),
    "scale": ((int, float), "a positive number, e.g. 0.00392156862745098 (1/255)"),
    "mean": ((int, float, list, tuple), "a number or a list of numbers per channel"),
    "std": ((int, float, list, tuple), "a number or a list of numbers per channel"),
    "grayscale": (bool, "true (grey) or false (RGB)"),
    "layout": (str, "NCHW or NHWC"),
    "pad_value": (int, "an integer 0..255"),
}


def normalise_keys(values: dict, where: str) -> dict:
    """``values`` with dashed keys as underscores, type-checked; None values dropped."""
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in KEYS:
            raise UsageError(f"{where}: unknown preprocessing key {key!r}; known: "
                             + ", ".join(k.replace("_", "-") for k in KEYS))
        if value is None:
            continue
        kinds, how = KEYS[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and name != "grayscale"):
            raise UsageError(f"{where}: {key} = {value!r} is not {how}")
        out[name] = value
    return out


def read_preprocess_file(path: str | Path) -> dict:
    """The overrides in a ``--preprocess`` TOML file."""
    path = Path(path)
    data = read_toml(path, "--preprocess file")
    table = data.get("preprocess", data)
    if not isinstance(table, dict):
        raise UsageError(f"--preprocess file {path}: [preprocess] must be a table")
    return normalise_keys(table, str(path))


def merge_overrides(file: str | Path | None, **given) -> dict:
    """A file's overrides, then the options given (None = not given) on top."""
    merged = read_preprocess_file(file) if file else {}
    merged.update(normalise_keys(given, "options"))
    return merged


def _floats(value) -> tuple[float, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise UsageError(f"mean/std {value!r} must be numbers, e.g. 0.5 or 0.485,0.456,0.406") from None


def override_preprocessing(pre: Preprocessing, **overrides) -> Preprocessing:
    """``pre`` with the given values replaced (None keeps the model's); any value makes a record
    that declared nothing ("none", "sequence") an "image" one ("values" once fitted to an input that
    is not an image: only scale, mean and std apply, see ``edgekit.data.values``).

    Keys as in ``KEYS``; ``input_size`` sets the image size. Invalid values raise UsageError.
    """
    changes = normalise_keys(overrides, "preprocessing")
    if "input_size" in changes:
        size = changes.pop("input_size")
        size = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
        if len(size) != 2 or min(size) < 1:
            raise UsageError(f"--input-size must be a positive size, got {size}")
        changes["size"] = size
    for key in ("mean", "std"):
        if key in changes:
            changes[key] = _floats(changes[key])
    if "crop_fraction" in changes:
        changes["crop_fraction"] = float(changes["crop_fraction"])
    if "scale" in changes:
        changes["scale"] = float(changes["scale"])
    if "layout" in changes:
        changes["layout"] = changes["layout"].upper()
    if changes and pre.kind in ("none", "sequence"):
        changes["kind"] = "image"  # fit_to_input makes it "values" for an input that is not an image
    return dataclasses.replace(pre, **changes)


def fit_to_input(pre: Preprocessing, spec, model_name: str, declared: dict | None = None) -> Preprocessing:
    """``pre`` made to agree with the model's image input (size, grey/RGB, layout); a declared
    value that contradicts the input is a UsageError, raised before any work is done."""
    from edgekit.data.arrays import image_dims

    dims = image_dims(spec)
    declared = normalise_keys(declared or {}, "preprocessing")
    if dims is None and pre.kind == "image" and declared:  # declared for numbers that are not pictures
        return dataclasses.replace(pre, kind="values", size=None)
    if dims is None or pre.kind == "sequence":
        return pre
    channels, height, width = dims
    if "input_size" in declared and pre.size is not None and tuple(pre.size) != (height, width):
        raise UsageError(f"preprocessing resizes to {pre.size[0]}x{pre.size[1]} but {model_name} takes "
                         f"{height}x{width} inputs; drop input-size (the model's input decides it) "
                         "or match it")
    if "grayscale" in declared and bool(declared["grayscale"]) != (channels == 1):
        option = "--grayscale" if declared["grayscale"] else "--rgb"
        raise UsageError(f"{option}, but {model_name} takes {channels}-channel inputs; drop {option}")
    if "layout" in declared and str(declared["layout"]).upper() != spec.layout:
        raise UsageError(f"--layout {str(declared['layout']).upper()}, but {model_name} takes {spec.layout} "
                         "inputs; drop --layout")
    return dataclasses.replace(pre, kind="image", size=(height, width), grayscale=channels == 1,
                               layout=spec.layout)


def image_preprocessing(model: LoadedModel) -> Preprocessing:
    """The model's preprocessing made consistent with its image input (size, grey/RGB, layout)."""
    from edgekit.data.arrays import image_dims

    spec = model.input_spec
    dims = image_dims(spec)
    if dims is None:
        raise DataError(
            f"{model.name} takes {spec.layout} inputs of shape {tuple(spec.shape)}, not images; "
            f"pass --calib FILE.npy holding (N, {', '.join(map(str, spec.sample_shape))}) samples"
        )
    return fit_to_input(model.preprocessing, spec, model.name)
