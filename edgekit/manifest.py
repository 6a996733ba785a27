"""Run directories and manifest.json: atomic writes, hashes and tool versions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.staging import (  # noqa: F401  (here too: callers name them manifest.staging_dir, ...)
    STAGE_MARK,
    check_out,
    human_bytes,
    name_max,
    pid_alive,
    remove_stale,
    staging_dir,
    stale_stages,
    stale_summary,
)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".manifest.lock"  # beside manifest.json: held by every read-modify-write (``update``)
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
def _locked(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on the run's manifest, released when the block ends (or the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows has no fcntl; edgekit targets Linux and macOS hosts, so no lock there
        yield
        return
    with open(Path(run_dir) / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def update(run_dir: Path, change: Callable[[dict], None]) -> dict:
    """Read the run's manifest, let ``change`` edit it in place, write it back atomically; returns it.

    Every command that adds to an existing manifest (bench, eval, inspect, gate) goes through here:
    the read, the change and the write happen under one lock, so two commands writing the same run
    at once both keep their records. Keep ``change`` short: others wait for it.
    """
    with _locked(run_dir):
        manifest = read_manifest(run_dir)
        change(manifest)
        write_json_atomic(Path(run_dir) / MANIFEST, manifest)
    return manifest


def file_entry(path: Path, root: Path) -> dict:
    return {
        "path": str(path.relative_to(root)),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }
