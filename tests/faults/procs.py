"""Real `edgekit` processes watched from outside: their stderr lines as they come (with times), every
process of their tree (read from /proc, so nothing needs psutil), and whether any of it is still alive;
a tmpfs of a given size (root only); hashes of every file under a folder."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Skip(Exception):  # noqa: N818 - the case cannot run here (not root, no tmpfs): pytest skips it
    pass


# ---------------------------------------------------------------- process trees from /proc


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of ``pid``, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], fields[19]


def children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


def alive(pid: int, start: str) -> bool:
    """Whether the process seen as (``pid``, ``start``) still runs (a zombie has stopped running)."""
    st = _stat(pid)
    return st is not None and st[1] == start and st[0] not in ("Z", "X")


class Tree:
    """Every process seen in the tree of a root process (pid -> (start time, command line)), polled
    every 50 ms while the root runs and afterwards from the descendants already seen (a child whose
    parent died is re-parented and would otherwise be lost from view)."""

    def __init__(self, root: int):
        self.root = root
        self.seen: dict[int, tuple[str, str]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.poll()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            todo = [self.root] + [p for p, (s, _) in self.seen.items() if alive(p, s)]
            while todo:
                pid = todo.pop()
                for child in children(pid):
                    if child not in self.seen:
                        st = _stat(child)
                        if st is not None:
                            self.seen[child] = (st[1], cmdline(child))
                            todo.append(child)

    def descendants_alive(self) -> dict[int, str]:
        self.poll()
        with self._lock:
            return {p: cmd for p, (s, cmd) in self.seen.items() if alive(p, s)}

    def kill_all(self) -> None:
        for pid, (start, _) in list(self.seen.items()):
            if alive(pid, start):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self._stop.set()


# ---------------------------------------------------------------- one watched edgekit process


def env_for_edgekit(extra: dict | None = None) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("EDGEKIT_DEBUG", None)
    return env


class Edgekit:
    """``python -m edgekit ARGS`` in its own process group (a Ctrl-C goes to the group, as a
    terminal sends it), with its stderr lines timed as they arrive and its process tree watched."""

    def __init__(self, *args, cwd: Path | None = None, env: dict | None = None):
        self.args = [str(a) for a in args]
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit", *self.args], cwd=cwd or REPO, env=env_for_edgekit(env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.err_lines: list[tuple[float, str]] = []
        self.out_chunks: list[str] = []
        self.tree = Tree(self.pid)
        self._readers = [threading.Thread(target=self._read_err, daemon=True),
                         threading.Thread(target=self._read_out, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.err_lines.append((time.monotonic() - self.t0, line.rstrip("\n")))

    def _read_out(self) -> None:
        for chunk in self.proc.stdout:
            self.out_chunks.append(chunk)

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.err_lines)

    @property
    def stdout(self) -> str:
        return "".join(self.out_chunks)

    def last_line(self) -> str:
        lines = [line for _, line in self.err_lines if line.strip()]
        return lines[-1] if lines else ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int, group: bool = False) -> float:
        """Send ``sig`` (to the whole process group with ``group``); the time it was sent."""
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        return time.monotonic()

    def wait(self, timeout: float) -> int | None:
        try:
            code = self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None
        # A child that outlives this process holds its pipes open: the readers get no end of file,
        # so wait only a moment for the lines already written (finish() waits for the rest).
        for t in self._readers:
            t.join(timeout=0.5)
        return code

    def wait_tree_gone(self, deadline: float) -> dict[int, str]:
        """Wait until no process of the tree is alive or ``deadline`` (monotonic); what still runs."""
        while True:
            left = self.tree.descendants_alive()
            if self.running():
                left[self.pid] = "edgekit (the command itself)"
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    def finish(self) -> None:
        """Kill whatever of the tree is still alive (after the checks), and stop watching."""
        self.tree.kill_all()
        if self.running():
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.kill()
        self.wait(30)
        for t in self._readers:
            t.join(timeout=5)
        self.tree.stop()

    def describe(self) -> str:
        tail = "\n      ".join(line for _, line in self.err_lines[-6:])
        return (f"`edgekit {' '.join(self.args)}`: exit {self.proc.returncode}; stderr tail:\n      {tail}"
                f"\n    stdout tail: {self.stdout[-300:]!r}")


def run(*args, timeout: float = 300, cwd: Path | None = None, env: dict | None = None) -> Edgekit:
    """Run edgekit to its end (killed after ``timeout``); the watched process, its tree stopped."""
    p = Edgekit(*args, cwd=cwd, env=env)
    p.wait(timeout)
    p.finish()
    return p


def run_all(commands: list[tuple], jobs: int = 2, timeout: float = 300) -> list[Edgekit]:
    """Run each of ``commands`` (argument tuples) to its end, ``jobs`` at a time; in their order."""
    done: list[Edgekit] = []
    for i in range(0, len(commands), jobs):
        batch = [Edgekit(*args) for args in commands[i:i + jobs]]
        for p in batch:
            p.wait(timeout)
            p.finish()
        done += batch
    return done


# ---------------------------------------------------------------- files


def hashes(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder`` (symlinks by their target text)."""
    found = {}
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- a real tmpfs


class Tmpfs:
    """A tmpfs of ``size`` bytes mounted at ``where`` (root only); ``Skip`` where it cannot be."""

    def __init__(self, where: Path, size: int):
        if os.geteuid() != 0:
            raise Skip("mounting a tmpfs needs root (the fault cases run as root in CI)")
        if shutil.which("mount") is None:
            raise Skip("no mount command")
        self.where = Path(where)
        self.where.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.where)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        self.mounted = True

    def remount_ro(self) -> None:
        r = subprocess.run(["mount", "-o", "remount,ro", str(self.where)], capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip(f"cannot remount the tmpfs read-only: {r.stderr.strip()}")

    def free(self) -> int:
        st = os.statvfs(self.where)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> int:
        """Write a filler file so that about ``leave`` bytes stay free; the bytes left free."""
        size = self.free() - leave
        if size > 0:
            with open(self.where / "filler", "wb") as f:
                f.write(b"\1" * size)
        return self.free()

    def close(self) -> None:
        if self.mounted:
            r = subprocess.run(["umount", str(self.where)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(self.where)], capture_output=True)
            self.mounted = False

    def __enter__(self) -> Tmpfs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
