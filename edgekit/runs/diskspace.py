"""A full disk as one line: which device, what is free, what the run needs (``DiskFull``)."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from edgekit.errors import DiskFull

# What converters say when their write fails for want of space, when they say it in words only
# (the TFLite converter's LLVM aborts the process with the second one).
_WORDS = ("no space left on device", "io failure on output stream", "disk quota exceeded")


def is_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a write that ran out of space."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(w in str(exc).lower() for w in _WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def says_full(text: str) -> bool:
    """Whether a crashed converter's last words are about a failed write for want of space."""
    return any(w in text.lower() for w in _WORDS)


def free_bytes(path: Path) -> int | None:
    path = _existing(Path(path))
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def nearly_full(path: Path, margin: int = 1 << 20) -> bool:
    """Less than ``margin`` bytes free where ``path`` lives."""
    free = free_bytes(path)
    return free is not None and free < margin


def device_of(path: Path) -> str:
    """``/dev/sda1 (mounted at /)`` or ``tmpfs (mounted at /tmp/x)`` for the file system of ``path``."""
    path = _existing(Path(path)).resolve()
    mount = path
    with contextlib.suppress(OSError):
        dev = mount.stat().st_dev
        while mount.parent != mount and mount.parent.stat().st_dev == dev:
            mount = mount.parent
    source = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1].replace("\\040", " ") == str(mount):
                source = fields[0]  # the last one mounted there wins
    return f"{source} (mounted at {mount})" if source else str(mount)


def disk_full(path: Path, needed: int | None = None) -> DiskFull:
    """The one-line error for a write under ``path`` that found no space; ``needed``: about how many
    bytes the whole write takes (what it had written plus what was left to write)."""
    free = free_bytes(path)
    have = f"{_mb(free)} free" if free is not None else "free space unknown"
    need = f", about {_mb(needed)} needed" if needed else ""
    return DiskFull(f"no space left on {device_of(path)}: {have}{need}; nothing was kept there",
                    hint="free some space or choose an --out on another disk")


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n < 10e6 else f"{n / 1e6:.0f} MB"
