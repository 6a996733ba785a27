"""Exporting an ONNX file given as the model: only the formats made from the file itself
(``Format.takes_onnx``) can be written; the others need the PyTorch model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.models.onnx_file import is_onnx_file


def check_plan(plan, report):
    """An export plan for an ONNX file: its own test data checked (when it has some), the default
    formats narrowed to onnx and openvino (saying so); a format or option that needs the PyTorch
    model is refused before any work."""
    if not is_onnx_file(plan.model):
        return plan
    from edgekit.models.onnx_testdata import check_test_data, test_data_line

    tested = check_test_data(Path(plan.model)) if Path(plan.model).is_file() else None
    if tested is not None:
        report(test_data_line(plan.model, tested))  # a mismatch raises: the file is broken
    if plan.prune is not None:
        raise UsageError("--prune needs the PyTorch model; an ONNX file exports as it is")
    others = [f for f in plan.formats if not _takes_onnx(f)]
    if not others:
        return plan
    if plan.formats_given:
        verb = "needs" if len(others) == 1 else "need"
        raise UsageError(f"{' and '.join(others)} {verb} the PyTorch model; an ONNX file exports to "
                         f"{_onnx_formats()}")
    report(f"note: {' and '.join(others)} skipped: they need the PyTorch model; an ONNX file exports to "
           f"{_onnx_formats()}")
    return dataclasses.replace(plan, formats=tuple(f for f in plan.formats if _takes_onnx(f)))


def _takes_onnx(fmt: str) -> bool:
    """Whether the format is made from the ONNX file itself (``Format.takes_onnx``); the others
    need the PyTorch model."""
    from edgekit.formats import format_class

    return format_class(fmt).takes_onnx


def _onnx_formats() -> str:
    from edgekit.formats import names

    return " and ".join(n for n in names() if _takes_onnx(n))
