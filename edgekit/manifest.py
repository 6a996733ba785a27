"""Run directories and manifest.json: atomic writes, hashes and tool versions."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import re
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edgekit.errors import ArtefactChangedError, NotStoredError, OutputExistsError, UsageError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".manifest.lock"  # beside manifest.json: held by every read-modify-write (``update``)
STAGE_MARK = ".edgekit-staging"  # in a staging folder: the host and PID that own it
_STAGE_NAME = re.compile(r"\.(?P<name>.+)\.partial-(?P<pid>[0-9]+)")
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


@contextlib.contextmanager
def staging_dir(final: Path, report: Callable[[str], None] | None = None) -> Iterator[Path]:
    """A temporary sibling directory that becomes ``final`` only if the block completes.

    An interrupted or crashed run removes its staging directory; ``final`` is never half-written
    and an existing ``final`` is never touched. ``report`` gets a warning naming the staging
    folders of killed runs beside ``final`` (``edgekit clean`` removes them).
    """
    final = Path(final)
    if final.exists():
        raise OutputExistsError(
            f"output directory {final} already exists; choose another --out or remove it"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    stale = stale_stages(final.parent)
    if stale and report is not None:
        report(f"warning: {stale_summary(stale)}; remove with `edgekit clean {final.parent}`")
    stage = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    mark = stage / STAGE_MARK
    mark.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}) + "\n")
    try:
        yield stage
        if final.exists():  # appeared while we were working
            raise OutputExistsError(f"output directory {final} appeared during the run; "
                                    f"nothing was written there")
        mark.unlink()
        os.replace(stage, final)
    except BaseException as exc:  # KeyboardInterrupt, SIGTERM (edgekit.errors.Terminated): name `final`
        exc.untouched = final
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@dataclass(frozen=True)
class Stage:
    """The staging folder of an edgekit run whose process no longer exists."""

    path: Path
    pid: int
    bytes: int


def stale_stages(folder: Path) -> list[Stage]:
    """Staging folders in ``folder`` left by killed runs: named exactly ``.<name>.partial-<pid>``, a
    real directory (not a symlink) of this user, staged on this host (its mark), its PID gone."""
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return []
    found = []
    for path in entries:
        m = _STAGE_NAME.fullmatch(path.name)
        if m and _abandoned(path, int(m["pid"])):
            found.append(Stage(path, int(m["pid"]), _size(path)))
    return found


def _abandoned(path: Path, pid: int) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    import stat

    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return False
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no mark: an older edgekit's
        if json.loads((path / STAGE_MARK).read_text()).get("host") != socket.gethostname():
            return False  # another machine's run (a shared folder): its PIDs mean nothing here
    return not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists; anything unsure counts as alive (its folder is kept)."""
    if os.name == "nt" or pid <= 0 or pid == os.getpid():  # Windows: os.kill(pid, 0) would signal it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):  # PermissionError: alive, another user's
        return True
    return True


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):  # does not follow symlinks
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


def human_bytes(n: float) -> str:
    if n < 1000:
        return f"{int(n)} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
    raise AssertionError  # pragma: no cover


def stale_summary(stale: list[Stage]) -> str:
    """found 1 stale staging folder of a killed run: .run.partial-1234 (220 MB)"""
    names = ", ".join(f"{s.path.name} ({human_bytes(s.bytes)})" for s in stale)
    what = "folder of a killed run" if len(stale) == 1 else "folders of killed runs"
    return f"found {len(stale)} stale staging {what}: {names}"


def remove_stale(folder: Path) -> list[Stage]:
    """Remove the staging folders of killed runs in ``folder`` (``stale_stages``); returns them."""
    removed = []
    for stage in stale_stages(folder):
        if _abandoned(stage.path, stage.pid):  # checked again just before: never a live run's folder
            shutil.rmtree(stage.path)
            removed.append(stage)
    return removed


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
