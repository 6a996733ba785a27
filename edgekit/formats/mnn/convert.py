"""MNN fp32: the model's ONNX export (or the ONNX file given as the model), converted by MNN's own
converter (MNNConvert).

MNN's tools are the wheel's C extension ``_tools``, run in a child process: a converter that
crashes takes only the child with it, and the wheel's Python wrappers (``MNN.tools.*``, the
``mnnconvert``/``mnnquant`` scripts) are never imported, because at import they pip-install a
logging SDK and send usage telemetry. ``_tools`` returns True whether it succeeded or not, so
success is read from its log and from a fresh, non-empty output file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekit.errors import ExportError
from edgekit.formats.base import ExportJob

TOOL = "import sys, _tools; _tools.{fn}(sys.argv)"
BIZ_CODE = "edgekit"


def run_tool(fn: str, args: list[str], timeout: float = 1800, cwd: str | None = None) -> tuple[int, str]:
    """``_tools.<fn>(argv)`` in a child Python: (its exit status, what it printed)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        done = subprocess.run([sys.executable, "-c", TOOL.format(fn=fn), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", timeout=timeout,
                              env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise ExportError(f"MNN's {fn} did not finish within {timeout:.0f} s") from None
    return done.returncode, done.stdout


def failure(what: str, code: int, log: str) -> ExportError:
    """One line: what failed, how the tool ended and its last words."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    why = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    return ExportError(f"{what} ({why}): {lines[-1][:200] if lines else 'no output'}")


def from_onnx(onnx_path: Path, path: Path, fp16: bool = False) -> str:
    """MNNConvert ``onnx_path`` -> ``path`` (``fp16``: weights stored as half floats); its log."""
    from edgekit.runs.manifest import write_atomic

    with tempfile.TemporaryDirectory(prefix="edgekit-mnn-") as tmp:
        out = Path(tmp) / "model.mnn"
        args = ["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(out), "--bizCode", BIZ_CODE]
        # cwd: MNNConvert leaves a .__convert_external_data.bin in its working folder
        code, log = run_tool("mnnconvert", args + (["--fp16"] if fp16 else []), cwd=tmp)
        done = "Converted Success!" in log and out.is_file() and out.stat().st_size > 0
        if code not in (0, 1) or not done:
            raise failure("MNN's converter could not convert the ONNX export", code, log)
        write_atomic(path, out.read_bytes())
    return log


def export_fp32(model, path: Path, job: ExportJob) -> Path:
    """The ONNX export (edgekit's ONNX format, with the job's dynamic batch), then MNNConvert."""
    from edgekit.formats.onnx.convert import export_fp32 as onnx_fp32

    source = getattr(model.module, "onnx_path", None)  # an ONNX file as the model
    with tempfile.TemporaryDirectory(prefix="edgekit-mnn-") as tmp:
        onnx_path = Path(source) if source is not None else onnx_fp32(model, Path(tmp) / "model.onnx", job)
        from_onnx(onnx_path, path)
    return path
