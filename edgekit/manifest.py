"""Run directories and manifest.json: atomic writes, hashes and tool versions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from edgekit.errors import OutputExistsError, UsageError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TOOLS = ("torch", "numpy", "torch-pruning")  # and each registered format's own tools


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_stamp() -> str:
    """``utc_now()`` fit for a file name: 20261127T151402Z."""
    return utc_now().replace(":", "").replace("-", "")


def tool_versions() -> dict[str, str]:
    """edgekit's own and its core tools' versions; each format adds its own (``Format.tool_versions``)."""
    import importlib.metadata

    from edgekit import __version__

    found = {}
    for name in TOOLS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    found["edgekit"] = __version__
    found["python"] = platform.python_version()
    return found


def environment() -> dict[str, str]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": str(os.cpu_count()),
        "python": sys.version.split()[0],
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return "inf" if obj > 0 else ("-inf" if obj < 0 else "nan")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write to a temporary file beside ``path`` and rename it into place; returns ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def read_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise UsageError(f"{run_dir} is not an edgekit run directory (no {MANIFEST}); "
                         "pass a directory written by 'edgekit export'")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary sibling directory that becomes ``final`` only if the block completes.

    An interrupted or crashed run removes its staging directory; ``final`` is never half-written
    and an existing ``final`` is never touched.
    """
    final = Path(final)
    if final.exists():
        raise OutputExistsError(
            f"output directory {final} already exists; choose another --out or remove it"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        if final.exists():  # appeared while we were working
            raise OutputExistsError(f"output directory {final} appeared during the run; "
                                    f"nothing was written there")
        os.replace(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def file_entry(path: Path, root: Path) -> dict:
    return {
        "path": str(path.relative_to(root)),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }
