"""Export formats: the registry. A format is one module with one ``Format`` subclass whose class
attributes are its facts (name, suffixes, companion files, default on/off, pip extra, tools,
runtimes, plot colour); registering it is one line below. Every list of formats elsewhere in
edgekit is derived from here.

Format modules import only the standard library and numpy at module level (their converters and
runtimes are imported inside the methods that need them), so listing formats stays cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.formats.base import ExportJob, Format
from edgekit.registry import Registry

FORMATS: Registry[type[Format]] = Registry("format")


def register(where: str) -> type[Format]:
    """Register the ``Format`` subclass at ``"package.module:ClassName"`` under its ``name``."""
    module, _, attr = where.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Format) and cls.name and cls.extension):
        raise TypeError(f"{where} is not a Format subclass with a name and an extension")
    return FORMATS.register(cls.name, cls)


# The registration lines: the order is the default order of `export --to`.
register("edgekit.formats.onnx:OnnxFormat")
register("edgekit.formats.tflite:TFLiteFormat")
register("edgekit.formats.openvino:OpenVinoFormat")
register("edgekit.formats.executorch:ExecuTorchFormat")
register("edgekit.formats.mnn:MnnFormat")


def get_format(name: str, job: ExportJob | None = None) -> Format:
    """The format ``name`` for one export (``job``: its per-run options; None: the defaults)."""
    return FORMATS.get(name)(job)


def format_class(name: str) -> type[Format]:
    return FORMATS.get(name)


def names() -> tuple[str, ...]:
    return tuple(FORMATS)


def default_names() -> tuple[str, ...]:
    """The formats `export` writes when --to is not given, in registration order."""
    return tuple(name for name, cls in FORMATS.items() if cls.default)


def export_order(selected) -> list[str]:
    """``selected`` in the order given, with the formats that must go last moved to the end."""
    return sorted(selected, key=lambda n: FORMATS.get(n).export_last)


def suffixes() -> dict[str, str]:
    """Main-file suffix -> format name (".onnx" -> "onnx")."""
    return {cls.extension: name for name, cls in FORMATS.items()}


def parse_formats(value: str) -> tuple[str, ...]:
    """Parse ``--to onnx,tflite`` into known names, in the order given, without duplicates."""
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not names:
        raise UsageError(f"--to needs at least one format; known formats: {', '.join(FORMATS)}")
    for n in names:
        FORMATS.get(n)  # raises with the known names and the closest match
    return tuple(dict.fromkeys(names))


def format_for_file(path) -> str:
    known = suffixes()
    suffix = Path(path).suffix.lower()
    if suffix not in known:
        raise UsageError(f"cannot tell the format of {path}: expected one of {', '.join(known)}")
    return known[suffix]
