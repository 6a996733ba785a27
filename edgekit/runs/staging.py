"""Staging folders and output paths: a run is written beside its ``--out`` in a staging folder
that edgekit marks before anything else goes in, renamed into place when it completes; ``clean``
removes only the marked folders of dead runs; ``check_out`` refuses an output path that cannot be
written, before any work."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import OutputExistsError, UsageError

STAGE_MARK = ".edgekit-staging"  # in a staging folder, first thing in it: host, PID and final name
_STAGE_NAME = re.compile(r"\.(?P<name>.+)\.partial-(?P<pid>[0-9]+)")  # name: shortened when too long


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
    stage.mkdir()
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
            found.append(Stage(path, pid, folder_bytes(path), marked=_marked(path, pid)))
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


def folder_bytes(path: Path) -> int:
    """The bytes of the files under ``path`` (symlinks not followed)."""
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
