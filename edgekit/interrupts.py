"""Signals that cannot be lost, and child processes that die with edgekit.

``install()`` (the CLI's ``main``) keeps one handler on SIGINT, SIGTERM and SIGHUP for the whole
command. The handler records the signal and raises (``KeyboardInterrupt`` for SIGINT, ``Terminated``
otherwise), so ``finally`` blocks remove staging folders and stop workers. Python discards an
exception raised while it runs a garbage-collection callback or a ``__del__`` (JAX registers such a
callback), so a raise can be lost; the signal is not: a watchdog thread re-delivers a recorded
signal to the main thread every ``REDELIVER_S`` seconds until the stack is unwinding it. The handler
knows by the exception being handled: while an ``except``/``finally``/``__exit__`` up the stack
holds a stop exception, a further signal (the watchdog's, or a second Ctrl-C) is recorded and the
clean-up goes on; SIGKILL still ends everything at once.

``die_with_parent()`` makes the calling process receive SIGKILL when its parent dies (Linux
``PR_SET_PDEATHSIG``; elsewhere a thread that watches the parent's pid), so a worker never outlives
a ``kill -9`` of edgekit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from edgekit.errors import Terminated

REDELIVER_S = 0.5
SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) through edgekit's handler: a KeyboardInterrupt that knows its signal."""

    signum = signal.SIGINT
    exit_code = 128 + signal.SIGINT


def stop_exception(signum: int) -> BaseException:
    if signum == signal.SIGINT:
        return Interrupted()
    return Terminated(signum)


def signal_name(signum: int) -> str:
    """SIGINT (Ctrl-C), SIGTERM, SIGHUP."""
    name = signal.Signals(signum).name
    return f"{name} (Ctrl-C)" if signum == signal.SIGINT else name


class _State:
    def __init__(self) -> None:
        self.pending: int | None = None  # the first signal received, until the command ends
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.ignore = False  # put SIG_IGN, not the previous handlers, back at the end


_state = _State()


def received() -> int | None:
    """The signal that asked this command to stop, if any."""
    return _state.pending


def check() -> None:
    """Raise the stop exception if a signal was received and is not being handled yet (a safe point
    between steps: covers a raise that Python discarded)."""
    if _state.pending is not None and not _unwinding():
        raise stop_exception(_state.pending)


def _unwinding() -> bool:
    """Whether an ``except``/``finally`` block up the stack is handling a stop exception."""
    exc = sys.exc_info()[1]
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Interrupted | Terminated) or type(exc) is KeyboardInterrupt:
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


def _handler(signum, frame) -> None:
    if _state.pending is None:
        _state.pending = signum
        _start_watchdog()
    if _unwinding():  # the clean-up of the first signal is running: let it finish
        return
    raise stop_exception(_state.pending)


def _start_watchdog() -> None:
    import _thread

    pending = _state.pending

    def redeliver() -> None:
        while not _state.done.wait(REDELIVER_S):
            with contextlib.suppress(Exception):
                _thread.interrupt_main(pending)

    _state.thread = threading.Thread(target=redeliver, name="edgekit-signal-watchdog", daemon=True)
    _state.thread.start()


def ignore_further() -> None:
    """Ignore SIGINT, SIGTERM and SIGHUP from now on, as the handlers are put back: for a process that
    was stopped by one and is exiting (Python restores the default handlers while it shuts down, so
    a second Ctrl-C then would kill it with a signal instead of its exit code)."""
    _state.ignore = True


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Edgekit's handler on SIGINT, SIGTERM and SIGHUP for the block; the previous ones after it.
    Outside the main thread (an embedding program's worker thread) nothing is installed."""
    global _state
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state = _State()
    previous = {}
    for signum in SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, _handler)
    try:
        yield
    finally:
        _state.done.set()
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, signal.SIG_IGN if _state.ignore else handler)


def die_with_parent() -> None:
    """Be killed (SIGKILL) when the parent process dies. Call first thing in a child process."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # it died before the call took effect
                    os.kill(os.getpid(), signal.SIGKILL)
                return

    def watch() -> None:  # not Linux: poll the parent's pid
        import time

        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))

    threading.Thread(target=watch, name="edgekit-parent-watch", daemon=True).start()
