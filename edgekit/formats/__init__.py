"""Export formats. Each entry is a factory so that listing or validating names imports no runtime."""

from __future__ import annotations

from collections.abc import Callable

from edgekit.errors import UsageError
from edgekit.formats.base import Format
from edgekit.registry import Registry

FORMATS: Registry[Callable[[], Format]] = Registry("format")


@FORMATS.register("onnx")
def _onnx() -> Format:
    from edgekit.formats.onnx import OnnxFormat

    return OnnxFormat()


@FORMATS.register("tflite")
def _tflite() -> Format:
    from edgekit.formats.tflite import TFLiteFormat

    return TFLiteFormat()


@FORMATS.register("openvino")
def _openvino() -> Format:
    from edgekit.formats.openvino import OpenVinoFormat

    return OpenVinoFormat()


SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}


def get_format(name: str) -> Format:
    return FORMATS.get(name)()


def parse_formats(value: str) -> tuple[str, ...]:
    """Parse ``--to onnx,tflite`` into known names, in the order given, without duplicates."""
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not names:
        raise UsageError(f"--to needs at least one format; known formats: {', '.join(FORMATS)}")
    for n in names:
        FORMATS.get(n)  # raises with the known names and the closest match
    return tuple(dict.fromkeys(names))


def format_for_file(path) -> str:
    from pathlib import Path

    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(
            f"cannot tell the format of {path}: expected one of {', '.join(SUFFIXES)}"
        )
    return SUFFIXES[suffix]
