"""Users' own architectures: ``path/to/file.py:NAME`` or ``package.module:NAME``.

NAME is an ``nn.Module`` class, or any callable that returns an ``nn.Module`` (a factory function
such as torchvision's ``resnet18``, a ``functools.partial``), called with no arguments or with
``model_args`` as keyword arguments; or an ``nn.Module`` instance the module builds itself. A file
is imported as a fresh module (its folder on ``sys.path`` meanwhile, so it can import its
neighbours); a module path is imported from the installed packages or the current folder. The
model is then run once on a random input of the given shape to learn the task and the number of
classes. Every mistake (no file, no module, no NAME, a failing constructor or factory, a factory
that returns something else, a failing forward pass) is one UsageError line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from edgekit.errors import UsageError
from edgekit.models.spec import Preprocessing

if TYPE_CHECKING:
    import torch.nn as nn

LAYOUTS = {2: "NC", 3: "NTC", 4: "NCHW", 5: "NCDHW"}
FORMS = "path/to/file.py:NAME or package.module:NAME"


def refuse_notebook(name: str) -> None:
    """A Jupyter notebook (``Untitled.ipynb`` or ``Untitled.ipynb:Net``) cannot be imported: one line
    that says a .py file is needed and how to get one."""
    source = name.rpartition(":")[0] if name.rpartition(":")[2].isidentifier() else name
    if source.lower().endswith(".ipynb"):
        script = source[: -len(".ipynb")] + ".py"
        attr = name.rpartition(":")[2] if source != name else "NAME"
        raise UsageError(f"{source} is a Jupyter notebook, which edgekit cannot import; it needs a .py "
                         f"file: `jupyter nbconvert --to script {source}` writes {script}, then pass "
                         f"{script}:{attr}")


def is_user_model(name: str) -> bool:
    """True for ``something.py:NAME`` and ``dotted.module:NAME`` (the zoo's names have no colon)."""
    source, sep, _ = name.rpartition(":")
    return bool(sep) and (source.endswith(".py") or _is_module_path(source))


def _is_module_path(source: str) -> bool:
    return bool(source) and all(part.isidentifier() for part in source.split("."))


def parse_reference(name: str) -> tuple[Path | str, str]:
    """(the file as a Path, or the module's dotted name as a str; the attribute name)."""
    source, _, attr = name.rpartition(":")
    if not attr.isidentifier():
        raise UsageError(f"{name!r}: expected {FORMS}")
    return (Path(source) if source.endswith(".py") else source), attr


def import_source(source: Path | str) -> ModuleType:
    """Import a user's file (as a fresh module) or an installed/local module by its dotted name."""
    if isinstance(source, str):
        return _import_module(source)
    if not source.is_file():
        raise UsageError(f"model file {source} not found")
    tag = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:8]
    module_name = f"edgekit_user_{source.stem}_{tag}"
    spec = importlib.util.spec_from_file_location(module_name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up here
    folder = str(source.parent.resolve())
    sys.path.insert(0, folder)  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise UsageError(f"cannot import {source}: {_describe(exc)}") from None
    finally:
        sys.path.remove(folder)
    return module


def _import_module(dotted: str) -> ModuleType:
    here = os.getcwd()
    sys.path.insert(0, here)  # like `python -m`: a package in the current folder is found too
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name and f"{dotted}.".startswith(f"{exc.name}."):  # the module itself, not its imports
            raise UsageError(f"no module named {exc.name} (from {dotted}); install the package into this "
                             "Python, run edgekit from the folder that holds it, or name the file: "
                             "path/to/file.py:NAME") from None
        raise UsageError(f"cannot import {dotted}: {_describe(exc)}") from None
    except Exception as exc:
        raise UsageError(f"cannot import {dotted}: {_describe(exc)}") from None
    finally:
        sys.path.remove(here)


def import_builder(source: Path | str, attr: str) -> tuple[object, dict]:
    """``attr`` of the file or module (an nn.Module class, a callable returning one, or a built
    module) and the code record of the file that holds it."""
    import torch.nn as nn

    module = import_source(source)
    where = source if isinstance(source, Path) else f"module {source}"
    obj = getattr(module, attr, None)
    usable = isinstance(obj, nn.Module) or (isinstance(obj, type) and issubclass(obj, nn.Module))
    if usable or (callable(obj) and not isinstance(obj, type)):
        return obj, _code_record(module)
    known = _candidates(module)
    what = "not found" if obj is None else (
        "is a class that is not an nn.Module subclass" if isinstance(obj, type)
        else f"is a {type(obj).__name__}, not an nn.Module class or a function returning one")
    raise UsageError(f"{attr} {what} in {where}" + (f"; models in it: {', '.join(known)}" if known else ""))


def _code_record(module: ModuleType) -> dict:
    """The file that was imported and its sha256 (for a package: the module's own file only)."""
    path = getattr(module, "__file__", None)
    if not path or not Path(path).is_file():
        return {"module": module.__name__}
    return {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def _candidates(module: ModuleType) -> list[str]:
    """The nn.Module classes and the functions a module defines itself (a factory is one of them)."""
    import torch.nn as nn

    found = []
    for n, v in vars(module).items():
        own = getattr(v, "__module__", None) == module.__name__ and not n.startswith("_")
        if own and isinstance(v, type) and issubclass(v, nn.Module):
            found.append(n)
        elif own and inspect.isfunction(v):
            found.append(f"{n}()")
    return sorted(found)


def build_user_model(name: str, model_args: dict | None = None) -> tuple[nn.Module, dict]:
    """(the module, where its code came from: {"path", "sha256"} of the file that defines NAME)."""
    import torch.nn as nn

    source, attr = parse_reference(name)
    builder, code = import_builder(source, attr)
    args = model_args or {}
    if not isinstance(args, dict):
        raise UsageError("--model-args must be a JSON object, e.g. '{\"num_classes\": 10}'")
    if isinstance(builder, nn.Module):
        if args:
            raise UsageError(f"{attr} is a model already built; --model-args needs its class or a factory "
                             "function to call")
        return builder, code
    call = f"{attr}(**{args})" if args else f"{attr}()"
    try:
        module = builder(**args)
    except Exception as exc:
        raise UsageError(f"{call} failed: {_describe(exc)}", hint="check --model-args") from None
    if not isinstance(module, nn.Module):
        raise UsageError(f"{call} returned {type(module).__name__}, not an nn.Module; name a class or a "
                         "function that returns the model")
    return module, code


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
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
