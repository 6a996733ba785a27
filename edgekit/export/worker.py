"""One export worker process (``edgekit.export.jobs``): its life seen from edgekit, and its own loop.

The worker dies with edgekit (``edgekit.interrupts.die_with_parent``), ignores Ctrl-C (the main
process decides and terminates it), and sends its converters' native stderr to a log file whose
last words name a crash (``last_words``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.export.steps import NoSpace, export_format

if TYPE_CHECKING:
    from edgekit.formats.base import Format

log = logging.getLogger("edgekit")

NATIVE_LOG_ENV = "EDGEKIT_NATIVE_LOG"  # a worker's converters write their native stderr here


class Worker:
    """A worker process that can export any of ``formats``; it imports those of ``preload`` at once.
    ``send`` gives it the work and the formats to export; it exits when they are done."""

    def __init__(self, formats: dict[str, Format], preload: list[str]):
        import multiprocessing
        import tempfile

        self.formats, self.preload = formats, list(preload)
        self.assigned: list[str] = []
        self.current: str | None = None  # the format it is converting
        self.partial: dict[str, list[dict]] = {}  # entries it sent for the current format
        self.unavailable: list[str] = []
        fd, log_path = tempfile.mkstemp(prefix="edgekit-worker-", suffix=".log")
        os.close(fd)
        self.log = Path(log_path)
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(formats, self.preload, child, str(self.log)),
                                name="edgekit-export")
        with _born_ignoring_ctrl_c():
            self.proc.start()
        child.close()

    def ready(self) -> bool:
        """Wait until it has imported its converters; raise this process's typed error
        (MissingDependencyError) for a format whose packages it could not import. False if it died."""
        try:
            _, self.unavailable = self.conn.recv()
        except (EOFError, OSError):
            log.debug("an export worker stopped before it was ready (exit code %s)", self.proc.exitcode)
            self.stop()
            return False
        for name in self.unavailable:
            self.formats[name].check_available()
        return True

    def send(self, payload: bytes, sources: dict[str, str], names: list[str], threads: int) -> bool:
        """Give it the pickled work and its formats; False (it is stopped) where it cannot take them."""
        try:
            self.conn.send(sources)
            self.conn.send_bytes(payload)
            message = self.conn.recv()
            if message[0] == "loaded":
                self.conn.send((names, threads))
        except (EOFError, OSError) as exc:  # it died
            message = ("failed", f"{type(exc).__name__}: {exc}")
        if message[0] != "loaded":
            log.debug("an export worker could not load the model: %s", message[1])
            self.stop()
            return False
        self.assigned = list(names)
        return True

    def died(self) -> str:
        """How it died: ``SIGABRT: LLVM ERROR: IO failure on output stream`` (its last words)."""
        self.proc.join(timeout=5)
        code = self.proc.exitcode
        if code is None:
            how = "stopped answering"
        elif code < 0:
            import signal

            try:
                how = signal.Signals(-code).name
            except ValueError:
                how = f"signal {-code}"
        else:
            how = f"exit code {code}"
        words = last_words(self.log)
        return f"{how}: {words}" if words else how

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
            if self.proc.is_alive():
                self.proc.kill()
        self.proc.join()
        self.conn.close()
        self.proc = None
        self.log.unlink(missing_ok=True)


@contextlib.contextmanager
def _born_ignoring_ctrl_c():
    """Start a child that ignores SIGINT from its first instruction (an ignored signal stays ignored
    across exec, and Python then installs no KeyboardInterrupt handler): Ctrl-C reaches the whole
    process group, and a worker still importing would die of it with a traceback. This process
    blocks SIGINT meanwhile, so one that arrives is delivered to it afterwards, not lost."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def stop_resource_tracker() -> None:
    """Stop multiprocessing's resource tracker, which spawning started: otherwise it outlives edgekit
    by a second or two, an orphan. The next spawn starts a new one."""
    from multiprocessing import resource_tracker

    with contextlib.suppress(Exception):  # a private method (CPython 3.8+): best effort
        resource_tracker._resource_tracker._stop()


def last_words(path: Path, limit: int = 4096) -> str:
    """The last meaningful line a crashed worker wrote to its stderr log."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):  # the error, not a stack dump's last frame
        if any(w in line for w in ("ERROR", "Error", "error", "abort", "Fatal", "fatal", "Assertion")):
            return line[:300]
    return lines[-1][:300] if lines else ""


def _torch_threads(n: int) -> int:
    """Set PyTorch's intra-op threads (two processes share the cores); return the previous number."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    return previous


def _worker(formats: dict[str, Format], preload: list[str], conn: Any, log_path: str) -> None:
    """The worker process: import the converters of ``preload``, take the model and the formats to
    export, export them one after another, sending each entry and each format's end as they come.
    Ctrl-C reaches the whole process group; the main process decides, and terminates the worker."""
    import importlib.util
    import pickle
    import signal

    from edgekit.formats._util import quiet
    from edgekit.interrupts import die_with_parent

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ[NATIVE_LOG_ENV] = log_path  # quiet() sends native stderr there: a crash's last words
    if not os.environ.get("EDGEKIT_DEBUG") and "importtime" not in sys._xoptions:  # else: all on stderr
        with contextlib.suppress(OSError):
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
            os.dup2(fd, 2)
            os.close(fd)
    with quiet():  # the worker speaks only through the pipe
        unavailable = []
        for name in preload:
            try:
                formats[name].check_available()
            except Exception:  # noqa: BLE001 - the main process raises the typed error
                unavailable.append(name)
        conn.send(("ready", unavailable))
        try:
            sources = conn.recv()
            for module, file in sources.items():
                if importlib.util.find_spec(module.partition(".")[0]) is None:
                    from edgekit.models.user import import_source

                    import_source(Path(file))
            work = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        except Exception as exc:  # noqa: BLE001 - the main process exports these formats itself
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("loaded",))
        try:
            names, threads = conn.recv()
        except EOFError:
            return
        _torch_threads(threads)
        for name in names:
            lines: list[str] = []

            def done(entry: dict, name: str = name, lines: list[str] = lines) -> None:
                conn.send(("entry", name, entry, list(lines)))
                lines.clear()

            conn.send(("start", name))
            try:
                export_format(name, formats[name], work.model, work.calib, work.held_out, work.reference,
                              work.int8, work.stage, lines.append, work.budget, done)
            except NoSpace as exc:
                conn.send(("full", name, str(exc)))
                return
            conn.send(("format", name, lines))
