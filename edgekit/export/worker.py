"""One export worker process (``edgekit.export.jobs``): its life seen from edgekit, and its own loop.

A worker dies with edgekit (``edgekit.interrupts.die_with_parent``), ignores Ctrl-C (the main
process decides and terminates it), and sends its converters' native stderr to a log file whose
last words name a crash (``last_words``); the log is emptied as each format starts, so the words are
that format's.

Spawning a worker costs a fresh interpreter and the converters' imports (torch, onnx, litert-torch
and JAX, openvino and nncf, executorch: seconds). So within one edgekit process (a recipe that
exports several models, a test session that runs the CLI in-process) a worker that finished its
export is parked (``edgekit.export.pool``) and the next export takes it instead of spawning one.
Each job starts from what a freshly spawned worker would see (``_fresh``): the main process's
environment, working folder and ``sys.path`` of now, the temporary folder read again, the modules
of a user's model files forgotten, PyTorch's seed and compiler caches reset, stderr to the log or
(``--debug``) the terminal. A worker that crashed, or was stopped while converting, is never parked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.export.steps import NoSpace, export_format

if TYPE_CHECKING:
    from edgekit.formats.base import Format

log = logging.getLogger("edgekit")

NATIVE_LOG_ENV = "EDGEKIT_NATIVE_LOG"  # a worker's converters write their native stderr here
MAX_JOBS = 25  # then a fresh worker: converters' caches (JAX, openvino) grow with every model


class Worker:
    """A worker process. ``begin`` gives it the formats of an export (it imports those of ``preload``
    at once), ``send`` the work and the formats to export; then it waits for the next export."""

    def __init__(self) -> None:
        import multiprocessing
        import tempfile
        import threading

        self.formats: dict[str, Format] = {}
        self.assigned: list[str] = []
        self.current: str | None = None  # the format it is converting
        self.partial: dict[str, list[dict]] = {}  # entries it sent for the current format
        self.unavailable: list[str] = []
        self.imported: set[str] = set()  # formats whose converters it has imported
        self.state = "new"  # begun (its "ready" unread), ready, busy (converting), idle
        self.unread = 0  # "ready" messages of exports it was parked from before reading them
        self.jobs = 0
        # PR_SET_PDEATHSIG fires when the spawning *thread* ends: only the main thread's are parked
        self.parkable = threading.current_thread() is threading.main_thread()
        fd, log_path = tempfile.mkstemp(prefix="edgekit-worker-", suffix=".log")
        os.close(fd)
        self.log = Path(log_path)
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, str(self.log)), name="edgekit-export")
        with _born_ignoring_ctrl_c():
            self.proc.start()
        child.close()

    def begin(self, formats: dict[str, Format], preload: list[str]) -> Worker:
        """Start an export's job: the worker resets itself (``_fresh``) and imports ``preload``."""
        self.formats, self.assigned, self.current, self.partial = formats, [], None, {}
        self.imported |= set(preload)
        context = {"env": dict(os.environ), "cwd": os.getcwd(), "path": list(sys.path)}
        try:
            # the formats as bytes, unpickled after the context: a format whose package is on a
            # sys.path entry added since the worker started (a plugin, a test's folder) imports then
            self.conn.send((pickle.dumps(formats), list(preload), context))
            self.state, self.jobs = "begun", self.jobs + 1
        except (OSError, ValueError):  # it died while parked: ready() finds out
            self.state = "begun"
        return self

    def ready(self) -> bool:
        """Wait until it has imported its converters; raise this process's typed error
        (MissingDependencyError) for a format whose packages it could not import. False if it died."""
        if self.proc is None:
            return False
        if self.state != "begun":
            return True
        try:
            while self.unread >= 0:  # the "ready" of an export it was parked from first
                _, self.unavailable = self.conn.recv()
                self.unread -= 1
        except (EOFError, OSError):
            log.debug("an export worker stopped before it was ready (exit code %s)", self.proc.exitcode)
            self.stop()
            return False
        self.unread, self.state = 0, "ready"
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
        self.assigned, self.state = list(names), "busy"
        return True

    def park(self) -> bool:
        """Release it for the next export; False (it is stopped) where it cannot be reused: dead,
        converting, spawned by a thread that ends, or old."""
        if self.proc is None or not self.proc.is_alive() or self.state == "busy" or not self.parkable \
                or self.jobs >= MAX_JOBS:
            self.stop()
            return False
        try:
            if self.state in ("begun", "ready"):  # given no work: back to waiting for an export
                self.conn.send(None)
                self.unread += self.state == "begun"
        except (OSError, ValueError):
            self.stop()
            return False
        self.imported -= set(self.unavailable)
        self.state, self.formats = "parked", {}
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


def _worker(conn: Any, log_path: str) -> None:
    """The worker process: for each export, reset (``_fresh``), import the converters of its
    ``preload``, take the model and the formats to export, export them one after another, sending
    each entry and each format's end as they come; then wait for the next export (or the end).
    Ctrl-C reaches the whole process group; the main process decides, and terminates the worker."""
    import signal

    from edgekit.formats._util import quiet
    from edgekit.interrupts import die_with_parent

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch  # every converter's, imported once; its seed is a new process's

    own = _Own(os.dup(2), torch.initial_seed(), set(sys.modules), set(os.environ))
    os.environ[NATIVE_LOG_ENV] = log_path  # quiet() sends native stderr there: a crash's last words
    while True:
        try:
            job = conn.recv()
        except EOFError:  # edgekit shut the pool down
            return
        if job is None:
            continue
        formats, preload, context = job
        _fresh(context, log_path, own)
        formats = pickle.loads(formats)
        with quiet():  # the worker speaks only through the pipe
            if not _job(formats, preload, conn):
                return
        del formats
        import gc

        gc.collect()  # the model and its artefacts' memory, before the worker waits


def _job(formats: dict[str, Format], preload: list[str], conn: Any) -> bool:
    """One export's formats; False where the worker should end (edgekit is gone, or the disk full)."""
    import importlib.util
    import pickle

    unavailable = []
    for name in preload:
        try:
            formats[name].check_available()
        except Exception:  # noqa: BLE001 - the main process raises the typed error
            unavailable.append(name)
    conn.send(("ready", unavailable))
    try:
        sources = conn.recv()
        if sources is None:  # parked before it was given work
            return True
        for module, file in sources.items():
            if importlib.util.find_spec(module.partition(".")[0]) is None:
                from edgekit.models.user import import_source

                import_source(Path(file))
        work = pickle.loads(conn.recv_bytes())
    except EOFError:
        return False
    except Exception as exc:  # noqa: BLE001 - the main process exports these formats itself
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return True
    conn.send(("loaded",))
    try:
        names, threads = conn.recv()
    except EOFError:
        return False
    _torch_threads(threads)
    for name in names:
        lines: list[str] = []

        def done(entry: dict, name: str = name, lines: list[str] = lines) -> None:
            conn.send(("entry", name, entry, list(lines)))
            lines.clear()

        with contextlib.suppress(OSError):  # this format's last words only
            os.truncate(os.environ[NATIVE_LOG_ENV], 0)
        conn.send(("start", name))
        try:
            export_format(name, formats[name], work.model, work.calib, work.held_out, work.reference,
                          work.int8, work.stage, lines.append, work.budget, done)
        except NoSpace as exc:
            conn.send(("full", name, str(exc)))
            return False
        conn.send(("format", name, lines))
    return True


class _Own:
    """What the worker had before its first export: to start each export from it."""

    def __init__(self, stderr: int, seed: int, modules: set[str], env: set[str]):
        self.stderr, self.seed, self.modules, self.env = stderr, seed, modules, env


def _fresh(context: dict, log_path: str, own: _Own) -> None:
    """Make this worker what a worker spawned now would be, so that no export's results depend on
    the exports before it: the main process's environment (variables it dropped since are dropped
    here; those a library set for itself stay), working folder and ``sys.path``; ``tempfile``'s
    folder read again from TMPDIR; the modules imported from users' files (outside the installed
    packages and edgekit) forgotten, so a changed file is imported afresh; PyTorch's random seed
    back to a new process's and its compiler (dynamo) caches cleared; native stderr to this
    export's log, or with ``--debug`` to the terminal. Thread counts are set per export (``_job``).
    What converters cache after import (their own settings) stays: they read no per-export state."""
    import tempfile

    import torch

    env = context["env"]
    for key in own.env - set(env):
        os.environ.pop(key, None)
    os.environ.update(env)
    os.environ[NATIVE_LOG_ENV] = log_path
    own.env = set(env)
    with contextlib.suppress(OSError):
        os.chdir(context["cwd"])
    sys.path[:] = context["path"]
    tempfile.tempdir = None
    keep = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(__file__).parents[1])})
    for name in set(sys.modules) - own.modules:
        file = getattr(sys.modules.get(name), "__file__", None) or ""
        if name.startswith("edgekit_user_") or (file.endswith(".py") and not file.startswith(keep)):
            sys.modules.pop(name, None)
    torch.manual_seed(own.seed)
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    if os.environ.get("EDGEKIT_DEBUG") or "importtime" in sys._xoptions:  # all on stderr
        os.dup2(own.stderr, 2)
    else:
        with contextlib.suppress(OSError):
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_TRUNC)
            os.dup2(fd, 2)
            os.close(fd)
