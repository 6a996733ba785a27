"""Users' own architectures: ``path/to/file.py:ClassName``.

The file is imported, the class built with no arguments (or ``model_args`` as keyword arguments)
and run once on a random input of the given shape to learn the task and the number of classes.
Every mistake (no file, no class, a failing constructor or forward pass) is one UsageError line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import UsageError
from edgekit.models.spec import InputSpec, Preprocessing

if TYPE_CHECKING:
    import torch.nn as nn

LAYOUTS = {2: "NC", 3: "NTC", 4: "NCHW", 5: "NCDHW"}


def is_user_model(name: str) -> bool:
    """True for ``something.py:ClassName`` (the zoo's names have no colon)."""
    path, sep, _ = name.rpartition(":")
    return bool(sep) and path.endswith(".py")


def parse_reference(name: str) -> tuple[Path, str]:
    path, _, class_name = name.rpartition(":")
    if not class_name.isidentifier():
        raise UsageError(f"{name!r}: expected path/to/file.py:ClassName")
    return Path(path), class_name


def import_class(path: Path, class_name: str) -> type:
    """Import the file as a fresh module and return its ``class_name`` (an nn.Module subclass)."""
    import torch.nn as nn

    if not path.is_file():
        raise UsageError(f"model file {path} not found")
    tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    module_name = f"edgekit_user_{path.stem}_{tag}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up here
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise UsageError(f"cannot import {path}: {_describe(exc)}") from None
    finally:
        sys.path.remove(folder)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        found = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module_name
        )
        known = f"; nn.Module classes in it: {', '.join(found)}" if found else ""
        what = "is not an nn.Module subclass" if cls is not None else "not found"
        raise UsageError(f"class {class_name} {what} in {path}{known}")
    return cls


def build_user_model(name: str, model_args: dict | None = None) -> nn.Module:
    path, class_name = parse_reference(name)
    cls = import_class(path, class_name)
    args = model_args or {}
    if not isinstance(args, dict):
        raise UsageError("--model-args must be a JSON object, e.g. '{\"num_classes\": 10}'")
    try:
        return cls(**args)
    except Exception as exc:
        call = f"{class_name}(**{args})" if args else f"{class_name}()"
        raise UsageError(f"{call} failed: {_describe(exc)}", hint="check --model-args") from None


def describe_user_model(
    module: nn.Module, input_shape: tuple[int, ...], name: str
) -> tuple[str, InputSpec, Preprocessing, int]:
    """Run ``module`` once on ``input_shape``; return (task, input spec, preprocessing, classes)."""
    import torch

    shape = tuple(input_shape)
    if len(shape) not in LAYOUTS or shape[0] != 1 or any(d < 1 for d in shape):
        raise UsageError(
            f"--input-shape {','.join(map(str, shape))}: expected 2 to 5 positive sizes "
            "starting with the batch size 1, e.g. 1,1,28,28"
        )
    x = torch.rand(shape)
    try:
        with torch.no_grad():
            y = module.eval()(x)
    except Exception as exc:
        raise UsageError(
            f"{name} fails on an input of shape {shape}: {_describe(exc)}",
            hint="check --input-shape",
        ) from None
    if not isinstance(y, torch.Tensor) or y.dim() not in (2, 3) or y.shape[0] != 1:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UsageError(
            f"{name} returns {got}; edgekit needs one tensor of shape (batch, classes) "
            "or (batch, time, classes)"
        )
    task = "classification" if y.dim() == 2 else "sequence"
    spec = InputSpec(shape=shape, layout=LAYOUTS[len(shape)])
    return task, spec, _preprocessing(shape), int(y.shape[-1])


def _preprocessing(input_shape: tuple[int, ...]) -> Preprocessing:
    if len(input_shape) != 4:
        return Preprocessing(kind="none")
    channels, height, width = input_shape[1:]
    return Preprocessing(  # NCHW as described; declare_preprocessing refits it for NHWC inputs
        kind="image",
        size=(height, width),
        grayscale=channels == 1,
        mean=(0.0,),
        std=(1.0,),
    )


def _describe(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
