"""TFLite fp32: litert-torch's conversion of the PyTorch module."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import ExportError, MissingDependencyError
from edgekit.formats.tflite.runtime import quiet_environment

if TYPE_CHECKING:

    pass


CONVERTER = "litert-torch"


def export_fp32(model, path: Path, job=None) -> Path:
    """litert-torch's conversion of the PyTorch module, written atomically."""
    litert_torch = _import_litert_torch()
    with _quiet():
        edge = _convert(litert_torch, model.module.eval(), model.example_inputs())
    return _write(edge, Path(path))


def _convert(litert_torch: Any, module: Any, examples: tuple, **kwargs: Any) -> Any:
    """litert-torch's conversion of ``module(*examples)``: its signature takes the inputs in order."""
    try:
        return litert_torch.convert(module, examples, **kwargs)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(f"litert-torch could not convert the model: {type(exc).__name__}: {first}") from exc


def _write(edge: Any, path: Path) -> Path:
    """Write the flatbuffer to a temporary name beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        edge.export(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _import_litert_torch() -> Any:
    quiet_environment()
    try:
        import litert_torch
    except ImportError as exc:
        raise MissingDependencyError(CONVERTER, "tflite") from exc
    return litert_torch


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the converters' deprecation chatter; errors still propagate."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*were assigned during export.*")
        warnings.filterwarnings("ignore", message=".*is an Enum subclass.*")
        yield
