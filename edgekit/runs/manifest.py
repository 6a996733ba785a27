"""Run directories and manifest.json: atomic writes, hashes and tool versions."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edgekit.errors import ArtefactChangedError, NotStoredError, UsageError
from edgekit.runs.staging import (  # noqa: F401  (here too: callers name them manifest.staging_dir, ...)
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
    except OSError as exc:
        if exc.filename is None:  # a failed write names no file: name it (a full disk's line names the disk)
            exc.filename = str(path)
        raise
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
    path = Path(run_dir) / LOCK
    try:
        f = open(path, "a")
    except OSError as exc:  # another user's lock file, a read-only folder: flock needs no write access
        if exc.errno not in _NOT_WRITABLE or not path.is_file():
            raise
        f = open(path)  # the manifest's own write then says whether the folder takes the results
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def update(run_dir: Path, change: Callable[[dict], None]) -> dict:
    """Read the run's manifest, let ``change`` edit it in place, write it back atomically; returns it.

    Every command that adds to an existing manifest (bench, eval, inspect, gate) goes through here:
    the read, the change and the write happen under one lock, so two commands writing the same run
    at once both keep their records (``keep_record``: a record never replaces another's). Keep
    ``change`` short: others wait for it. A run directory that cannot take the write (read-only, another
    user's, a full disk) raises ``NotStoredError``, whose line says so: the caller has its results,
    prints them, then that line (``not_stored``).
    """
    try:
        with _locked(run_dir):
            manifest = read_manifest(run_dir)
            change(manifest)
            write_json_atomic(Path(run_dir) / MANIFEST, manifest)
    except OSError as exc:
        if exc.errno in _NOT_WRITABLE or exc.errno in _FULL:
            raise _not_stored(Path(run_dir), exc) from None
        raise
    return manifest


def file_entry(path: Path, root: Path) -> dict:
    return {
        "path": str(path.relative_to(root)),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


# ---------------------------------------------------------------- records that are never lost

HISTORY = "history"  # the records that a newer one of the same command (and target) took the place of
_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _not_stored(run_dir: Path, exc: OSError) -> NotStoredError:
    why = os.strerror(exc.errno)
    if exc.errno in _FULL:
        error = NotStoredError(f"results not stored: no room left for them in {run_dir} ({why}); "
                               "free some space and run the command again")
    else:
        error = NotStoredError(f"results not stored: {run_dir} is not writable ({why}); "
                               "make it writable or copy the run")
    error.reason = why
    return error


@contextlib.contextmanager
def storing(run_dir: Path) -> Iterator[None]:
    """Around a write into a run directory: one that the folder refuses (read-only, another user's,
    full) becomes ``NotStoredError`` (as in ``update``); other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _NOT_WRITABLE or exc.errno in _FULL:
            raise _not_stored(Path(run_dir), exc) from None
        raise


def update_or_note(run_dir: Path, change: Callable[[dict], None], result: dict) -> bool:
    """``update``; where the run directory cannot take it, ``result["not_stored"]`` says why (the
    command prints its results, then that line, and exits 2: ``edgekit.cli.measure.stored``).
    Returns whether the manifest took the change."""
    try:
        update(run_dir, change)
    except NotStoredError as exc:
        result["not_stored"] = exc.message
        return False
    return True


def keep_record(manifest: dict, command: str, record: dict, key: str | None = None) -> dict:
    """Put a command's ``record`` where readers find its latest: ``manifest[command]``, or for a record
    per target ``manifest[command][key]``. The record it takes the place of (an earlier run of the
    same command, or one that ran at the same time and was stored first) moves to
    ``manifest["history"]``, so none is ever lost. Call it inside ``update``'s change (under the lock).
    The record gets an ``id`` (command, UTC time, PID); returns it."""
    record.setdefault("id", f"{command}-{utc_stamp()}-{os.getpid()}")
    holder, slot = (manifest, command) if key is None else (manifest.setdefault(command, {}), key)
    previous = holder.get(slot)
    if previous:
        manifest.setdefault(HISTORY, []).append(
            {"command": command, **({"key": key} if key is not None else {}), "replaced": utc_now(),
             "record": previous})
    holder[slot] = record
    return record


def records(manifest: dict, command: str, key: str | None = None) -> list[dict]:
    """Every record of ``command`` (for ``key``) the manifest holds, oldest first: those in its history,
    then the latest (old manifests have no history: just the latest)."""
    old = [h["record"] for h in manifest.get(HISTORY, [])
           if h.get("command") == command and h.get("key") == key]
    latest = manifest.get(command) if key is None else (manifest.get(command) or {}).get(key)
    return old + ([latest] if latest else [])


# ---------------------------------------------------------------- artefacts as exported


@dataclass(frozen=True)
class FileCheck:
    """What became of an artefact's files since the export: ``status`` ok, missing or changed;
    ``path``: the file missing or changed (under the run directory as given); ``sha256``: a changed
    file's now; ``recorded``: the manifest's."""

    status: str
    path: Path | None = None
    sha256: str | None = None
    recorded: str | None = None

    def changed_line(self, more: str = "") -> str:
        return (f"{self.path} changed since export (sha256 {self.sha256[:12]}, exported as "
                f"{str(self.recorded)[:12]}){more}; re-export or pass --accept-changed")

    def row(self, root: Path) -> dict:
        """What a command's result row records: a missing file's status and line, an accepted
        changed file's old and new sha256; nothing for an unchanged one."""
        if self.status == "missing":
            rel = self.path.relative_to(root).as_posix()
            return {"status": "missing", "missing": rel, "error": f"{rel} is missing from the run directory"}
        if self.status == "changed":
            return {"accepted_changed": {"path": self.path.relative_to(root).as_posix(),
                                         "sha256": self.sha256, "exported_sha256": self.recorded}}
        return {}


def check_artefact(run_dir: Path, art: dict) -> FileCheck:
    """Each file of the manifest entry ``art`` against the sha256 recorded at export."""
    root = Path(run_dir)
    changed = None
    for entry in art.get("files") or [{"path": art["path"], "sha256": art.get("sha256")}]:
        path = root / entry["path"]
        if not path.is_file():
            return FileCheck("missing", path, None, entry.get("sha256"))
        if changed is None and entry.get("sha256"):
            now = sha256_file(path)
            if now != entry["sha256"]:
                changed = FileCheck("changed", path, now, entry["sha256"])
    return changed or FileCheck("ok")


def check_artefacts(run_dir: Path, arts: list[dict], accept_changed: bool = False) -> list[FileCheck]:
    """``check_artefact`` of each of ``arts``, in order. Every command that opens a run's artefacts
    calls this first: a changed one raises ``ArtefactChangedError`` (exit 2) naming it, unless
    ``accept_changed`` (the caller then records ``FileCheck.row``); a missing one is for the caller
    to report as one row while it uses the others."""
    found = [check_artefact(run_dir, a) for a in arts]
    changed = [c for c in found if c.status == "changed"]
    if changed and not accept_changed:
        more = f" (and {len(changed) - 1} more changed)" if len(changed) > 1 else ""
        raise ArtefactChangedError(changed[0].changed_line(more))
    return found
