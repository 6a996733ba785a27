"""Run directories and manifest.json: atomic writes, hashes and tool versions."""

from __future__ import annotations

import contextlib
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

from edgekit.errors import OutputExistsError, UsageError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".manifest.lock"  # beside manifest.json: held by every read-modify-write (``update``)
STAGE_MARK = ".edgekit-staging"  # in a staging folder, first thing in it: host, PID and final name
_STAGE_NAME = re.compile(r"\.(?P<name>.+)\.partial-(?P<pid>[0-9]+)")  # name: shortened when too long
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


@contextlib.contextmanager
def staging_dir(final: Path, report: Callable[[str], None] | None = None) -> Iterator[Path]:
    """A temporary sibling directory that becomes ``final`` only if the block completes.

    An interrupted or crashed run removes its staging directory; ``final`` is never half-written
    and an existing ``final`` is never touched. ``report`` gets a warning naming the staging
    folders of killed runs beside ``final`` (``edgekit clean`` removes them).

    The staging folder (``.<name>.partial-<pid>``, the name shortened to fit the filesystem:
    ``_stage_name``) holds edgekit's mark (``STAGE_MARK``: host, PID, final name) before anything
    else: the mark is written right after ``mkdir``, before the folder is handed out. A crash
    between the two leaves an empty folder, which ``clean`` may remove (it holds nothing);
    ``clean`` never removes a folder with content and no mark.
    """
    final = Path(final)
    if os.path.lexists(final):
        raise OutputExistsError(
            f"output directory {final} already exists; choose another --out or remove it"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    stale = stale_stages(final.parent)
    if stale and report is not None:
        report(f"warning: {stale_summary(stale)}; remove with `edgekit clean {final.parent}`")
    stage = final.parent / _stage_name(final, os.getpid())
    if os.path.lexists(stage):  # left by a dead process that had our PID: removed only if it is ours
        if not _ours(stage, os.getpid()):
            raise OutputExistsError(f"{stage} exists and was not made by edgekit (no {STAGE_MARK} mark); "
                                    "edgekit stages --out there: remove or rename it")
        shutil.rmtree(stage)
    stage.mkdir(mode=0o700)
    mark = stage / STAGE_MARK
    try:
        mark.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                    "final": final.name}) + "\n")
        yield stage
        if os.path.lexists(final):  # appeared while we were working
            raise OutputExistsError(f"output directory {final} appeared during the run; "
                                    f"nothing was written there")
        mark.unlink()
        os.replace(stage, final)
    except BaseException as exc:  # KeyboardInterrupt, SIGTERM (edgekit.errors.Terminated): name `final`
        exc.untouched = final
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def name_max(folder: Path) -> int:
    """The longest file name (in bytes) the filesystem holding ``folder`` takes (255 when unsure)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # AttributeError: no pathconf (Windows)
        return 255


def _stage_name(final: Path, pid: int) -> str:
    """``.<name>.partial-<pid>``; when that is longer than the filesystem allows, the name is cut
    and a short hash of the whole name added (``.<cut>~<hash>.partial-<pid>``). The user's own
    name is never shortened: the mark records it."""
    name = f".{final.name}.partial-{pid}"
    limit = name_max(final.parent)
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha256(final.name.encode()).hexdigest()[:8]
    room = max(1, limit - len(f".~{digest}.partial-{pid}".encode()))
    cut = final.name.encode()[:room].decode(errors="ignore")
    return f".{cut}~{digest}.partial-{pid}"


def check_out(path: Path | None, *, file: bool = False, default_parent: Path | None = None,
              option: str = "--out") -> None:
    """Fail now, before any work, on an output path that cannot be written: an existing file or
    folder, a dangling symlink, a parent that is a file, read-only or not writable, a name longer
    than the filesystem takes. ``file``: the output is a file (a checkpoint), else a directory
    (staged, ``staging_dir``). ``path`` None: only ``default_parent`` must be writable (or creatable).
    Each problem is one ``UsageError`` naming it and the fix."""
    if path is None:
        if default_parent is not None:
            _check_writable(Path(default_parent), f"the default {option} folder {default_parent}", option)
        return
    path = Path(path)
    what = "checkpoint" if file else "output directory"
    limit = name_max(path.parent)  # first: an over-long name fails every other question with ENAMETOOLONG
    if len(path.name.encode()) > limit:
        raise UsageError(f"{option} {path}: the name is {len(path.name.encode())} bytes, more than the "
                         f"{limit} the filesystem takes; choose a shorter name")
    if path.is_symlink() and not path.exists():
        raise UsageError(f"{option} {path} is a symlink to {os.readlink(path)}, which does not exist; "
                         f"remove the link or choose another {option}")
    if path.exists():
        kind = "a folder" if path.is_dir() else "a file"
        raise OutputExistsError(f"{what} {path} already exists ({kind}); choose another {option} "
                                "or remove it")
    _check_writable(path.parent, f"{option} {path}", option)


def _check_writable(folder: Path, what: str, option: str) -> None:
    """``folder``, or the nearest folder above it that exists (edgekit creates the rest), takes a
    new file: asked of the mount (read-only?), of ``os.access``, and by really creating and removing
    one (root passes ``os.access`` whatever the permission bits say)."""
    import errno
    import tempfile

    here = folder
    while not os.path.lexists(here) and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise UsageError(f"{what}: {here} is not a folder; choose another {option}")
    read_only = False
    with contextlib.suppress(OSError, AttributeError):  # no statvfs (Windows): the probe tells
        read_only = bool(os.statvfs(here).f_flag & os.ST_RDONLY)
    problem = ("on a read-only filesystem" if read_only
               else None if os.access(here, os.W_OK | os.X_OK) else "not writable by this user")
    if problem is None:
        try:
            fd, probe = tempfile.mkstemp(prefix=".edgekit-probe-", dir=here)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            problem = ("on a read-only filesystem" if exc.errno == errno.EROFS
                       else "full" if exc.errno == errno.ENOSPC else f"not writable ({exc.strerror})")
    if problem:
        raise UsageError(f"{what}: cannot write in {here}, it is {problem}; choose an {option} "
                         "in a writable folder")


@dataclass(frozen=True)
class Stage:
    """The staging folder of an edgekit run whose process no longer exists."""

    path: Path
    pid: int
    bytes: int
    marked: bool = True  # False: an empty folder (a crash between mkdir and the mark), removable too


def stale_stages(folder: Path) -> list[Stage]:
    """Staging folders in ``folder`` left by killed runs: named ``.<name>.partial-<pid>``, a real
    directory (not a symlink) of this user, carrying edgekit's mark of this host and that PID (or
    empty), its PID gone. A folder with content and no mark is never one (``unmarked_stages``)."""
    found = []
    for path, pid in _named_like_stages(folder):
        if _abandoned(path, pid):
            found.append(Stage(path, pid, _size(path), marked=_marked(path, pid)))
    return found


def unmarked_stages(folder: Path) -> list[tuple[Path, str]]:
    """Folders named like a dead run's staging folder that ``clean`` keeps, each with why: content
    but no mark (the user's own, or an edgekit's from before marks), or another machine's mark."""
    kept = []
    for path, pid in _named_like_stages(folder):
        if not _plain_dir(path) or pid_alive(pid) or _ours(path, pid):
            continue
        try:
            host = json.loads((path / STAGE_MARK).read_text()).get("host")
        except (OSError, ValueError, AttributeError):
            host = None
        kept.append((path, f"its mark is of another machine ({host}), where the run may still be going"
                     if host and host != socket.gethostname() else
                     f"it has no {STAGE_MARK} mark of process {pid}, so edgekit did not make it"))
    return kept


def _named_like_stages(folder: Path) -> list[tuple[Path, int]]:
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return []
    return [(path, int(m["pid"])) for path in entries if (m := _STAGE_NAME.fullmatch(path.name))]


def _plain_dir(path: Path) -> bool:
    """A real directory (not a symlink) of this user."""
    import stat

    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and not (hasattr(os, "getuid") and st.st_uid != os.getuid())


def _marked(path: Path, pid: int) -> bool:
    """The folder carries edgekit's mark, written on this host by process ``pid`` (when it names one)."""
    try:
        mark = json.loads((path / STAGE_MARK).read_text())
        return mark.get("host") == socket.gethostname() and mark.get("pid", pid) == pid
    except (OSError, ValueError, AttributeError):
        return False


def _ours(path: Path, pid: int) -> bool:
    """Marked by edgekit (``_marked``), or holding nothing but perhaps a torn mark: a crash between
    ``mkdir`` and the mark's write. Anything else in it may be the user's: never ours."""
    if _marked(path, pid):
        return True
    try:
        return {p.name for p in path.iterdir()} <= {STAGE_MARK}
    except OSError:
        return False


def _abandoned(path: Path, pid: int) -> bool:
    return _plain_dir(path) and _ours(path, pid) and not pid_alive(pid)


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
    """Remove the staging folders of killed runs in ``folder`` (``stale_stages``); returns them.
    A marked folder goes with its content; an empty one only while it is empty (``rmdir``)."""
    removed = []
    for stage in stale_stages(folder):
        if not _abandoned(stage.path, stage.pid):  # checked again just before: never a live run's folder
            continue
        if _marked(stage.path, stage.pid):
            shutil.rmtree(stage.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                (stage.path / STAGE_MARK).unlink()  # a torn mark, all it holds
            try:
                stage.path.rmdir()  # fails if anything arrived since: then it stays
            except OSError:
                continue
        removed.append(stage)
    return removed


def file_entry(path: Path, root: Path) -> dict:
    return {
        "path": str(path.relative_to(root)),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }
