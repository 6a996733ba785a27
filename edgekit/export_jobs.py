"""The formats of one export, side by side: a worker process takes some while this one does the rest.

The export is mostly single-threaded Python (torch.export, graph passes, converters), so on a
machine with two or more cores the formats are split into two groups of about equal cost
(``Format.export_cost``); this process exports one group, a worker process the other, both into
the same staging folder. The worker starts with the export and imports its converters while this
process loads the model, the samples and the PyTorch reference outputs, which it then gets by
pickle. The output lines and the manifest's artefacts keep the sequential order: each format's
lines are held until every format before it has printed its own.

The worker is spawned, not forked: a child forked after PyTorch has run an OpenMP region hangs at
its first parallel op (GNU libgomp; checked here with torch 2.13), and litert-torch's JAX threads
make fork unsafe as well. Formats run one after another with ``EDGEKIT_EXPORT_JOBS=1``, on one
core, with ``--max-drop`` (its search draws more calibration data through a closure), for models
of more than ``MAX_SHARED_BYTES`` of weights (memory), and, for the worker's formats, where the
worker cannot take the model (it cannot be pickled or unpickled).

A worker that dies (killed, out of memory) fails only its own formats; an interrupted export
(Ctrl-C, SIGTERM) stops the worker before the staging folder is removed.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.export_steps import export_format, failed, skipped

if TYPE_CHECKING:
    import numpy as np

    from edgekit.formats.base import Format
    from edgekit.models.spec import LoadedModel

log = logging.getLogger("edgekit")

JOBS_ENV = "EDGEKIT_EXPORT_JOBS"  # 1: one format after another; 2: this process and one worker
# Above this many bytes of weights the formats run one after another (unless EDGEKIT_EXPORT_JOBS=2):
# the worker's copy of the model and its converters' copies cost too much memory. vgg16 (553 MB)
# peaked at 6.34 GB side by side against 4.46 GB one after another; resnet50 (102 MB) at 2.6 GB.
MAX_SHARED_BYTES = 256 * 1024**2
Report = Callable[[str], None]


@dataclass(frozen=True)
class Work:
    """What every format's export reads (the worker gets it by pickle)."""

    model: LoadedModel
    calib: np.ndarray
    held_out: np.ndarray
    reference: np.ndarray
    int8: bool
    stage: Path


def jobs() -> int:
    """How many processes export at once: ``EDGEKIT_EXPORT_JOBS``, else 2 with two cores or more."""
    value = os.environ.get(JOBS_ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return min(int(value), 2)
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def split(formats: dict[str, Format], sequential: bool = False) -> tuple[list[str], list[str]]:
    """(this process's formats, the worker's; empty when one process does all): the costliest
    first into the lighter group; this process takes the group with the first format, so the
    first lines print as they happen."""
    order = list(formats)
    if sequential or len(order) < 2 or jobs() < 2:
        return order, []
    loads: list[list] = [[0.0, []], [0.0, []]]
    for name in sorted(order, key=lambda n: -formats[n].export_cost):
        lighter = min(loads, key=lambda g: g[0])
        lighter[0] += formats[name].export_cost
        lighter[1].append(name)
    local, remote = (sorted(g[1], key=order.index) for g in loads)
    return (local, remote) if order[0] in local else (remote, local)


class Worker:
    """The worker process for ``formats`` (none: no process), stopped when the block ends."""

    def __init__(self, formats: dict[str, Format]):
        self.formats = formats
        self.proc = self.conn = None
        self.unavailable: list[str] = []
        if formats:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_worker, args=(formats, child), name="edgekit-export")
            self.proc.start()
            child.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.terminate()
            self.proc.join()
            self.conn.close()
            self.proc = None

    def ready(self) -> None:
        """Wait until the worker has imported its converters; raise this process's typed error
        (MissingDependencyError) for a format whose packages the worker could not import."""
        if self.proc is None:
            return
        try:
            _, self.unavailable = self.conn.recv()
        except EOFError:  # it died starting: its formats run here
            log.debug("the export worker stopped before it was ready (exit code %s)", self.proc.exitcode)
            self.stop()
            return
        for name in self.unavailable:
            self.formats[name].check_available()


def export_formats(formats: dict[str, Format], work: Work, report: Report, budget: Any = None,
                   worker: Worker | None = None) -> list[dict]:
    """Every format's manifest entries, in the order of ``formats``."""
    remote = [n for n in formats if worker is not None and worker.proc is not None and n in worker.formats]
    out = _Ordered(list(formats), report)
    entries: dict[str, list[dict]] = {}
    threads = None
    try:
        if remote and not _worth_it(work.model):
            worker.stop()
            remote = []
        if remote and not _send(worker, work):
            remote = []
        if remote:
            threads = _torch_threads(max(1, (os.cpu_count() or 1) // 2))
        for name in (n for n in formats if n not in remote):
            entries[name] = _one(name, formats[name], work, out.reporter(name), budget)
            out.finish(name)
            while remote and not set(remote) <= set(entries) and worker.conn.poll():
                if not _take(worker.conn, entries, out):
                    break
        while not set(remote) <= set(entries) and _take(worker.conn, entries, out):
            pass
    except BaseException:  # Ctrl-C, SIGTERM, a bug: stop the worker before the staging folder goes
        if worker is not None:
            worker.stop()
        raise
    finally:
        if threads is not None:
            _torch_threads(threads)
    if remote:
        worker.proc.join(timeout=5)
        code = worker.proc.exitcode
        for name in remote:
            if name not in entries:
                entries[name] = _lost(name, work.int8, code, out.reporter(name))
                out.finish(name)
    return [e for name in formats for e in entries[name]]


def _worth_it(model: LoadedModel) -> bool:
    """Whether a second process may hold a copy of ``model`` (``MAX_SHARED_BYTES``)."""
    if os.environ.get(JOBS_ENV, "").strip() == "2":
        return True
    size = sum(t.numel() * t.element_size() for t in model.module.state_dict().values())
    return size <= MAX_SHARED_BYTES


def _send(worker: Worker, work: Work) -> bool:
    """Give the worker the model and samples; False (its formats then run here) where it cannot take them."""
    import pickle

    try:
        payload = pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - e.g. a lambda in a user's model
        log.debug("exporting every format here: the model cannot be pickled: %s", exc)
        worker.stop()
        return False
    try:
        worker.conn.send(_sources(work.model))
        worker.conn.send_bytes(payload)
        del payload
        message = worker.conn.recv()
    except (EOFError, OSError) as exc:  # it died
        message = ("failed", f"{type(exc).__name__}: {exc}")
    if message[0] != "loaded":
        log.debug("exporting every format here: the worker could not load the model: %s", message[1])
        worker.stop()
        return False
    return True


def _sources(model: LoadedModel) -> dict[str, str]:
    """{module: file} of the model's classes, so the worker can import a user's model file first."""
    found = {}
    for m in model.module.modules():
        name = type(m).__module__
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and not name.startswith(("torch.", "edgekit.")):
            found[name] = file
    return found


def _one(name: str, fmt: Format, work: Work, report: Report, budget: Any = None) -> list[dict]:
    return export_format(name, fmt, work.model, work.calib, work.held_out, work.reference, work.int8,
                         work.stage, report, budget)


class _Ordered:
    """Prints each format's lines once every format before it is done (the sequential order)."""

    def __init__(self, names: list[str], report: Report):
        self.names, self.report = names, report
        self.lines: dict[str, list[str]] = {n: [] for n in names}
        self.done: set[str] = set()
        self.head = 0

    def reporter(self, name: str) -> Report:
        def report(line: str) -> None:
            self.lines[name].append(line)
            self.flush()

        return report

    def finish(self, name: str, lines: tuple[str, ...] = ()) -> None:
        self.lines[name] += lines
        self.done.add(name)
        self.flush()

    def flush(self) -> None:
        while self.head < len(self.names):
            name = self.names[self.head]
            for line in self.lines[name]:
                self.report(line)
            self.lines[name].clear()
            if name not in self.done:
                return
            self.head += 1


def _take(conn: Any, entries: dict[str, list[dict]], out: _Ordered) -> bool:
    """Record the worker's next format; False when it died without a word (its pipe closed)."""
    try:
        _, name, found, lines = conn.recv()
    except (EOFError, OSError):
        return False
    entries[name] = found
    out.finish(name, tuple(lines))
    return True


def _lost(name: str, int8: bool, code: int | None, report: Report) -> list[dict]:
    import time

    why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    entry = failed({"format": name, "precision": "fp32"},
                   f"the export worker process stopped ({why}) before it finished", time.perf_counter(),
                   report)
    entry.pop("seconds", None)
    return [entry, skipped(name, "int8", f"skipped: the fp32 {name} export failed")] if int8 else [entry]


def _torch_threads(n: int) -> int:
    """Set PyTorch's intra-op threads (two processes share the cores); return the previous number."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    return previous


def _worker(formats: dict[str, Format], conn: Any) -> None:
    """The worker process: import the converters, take the model, export ``formats`` one after
    another, sending each format's entries and lines as soon as they are done. Ctrl-C reaches the
    whole process group; the main process decides, and terminates the worker."""
    import importlib.util
    import pickle
    import signal

    from edgekit.formats._util import quiet

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with quiet():  # the worker speaks only through the pipe
        unavailable = []
        for name, fmt in formats.items():
            try:
                fmt.check_available()
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
        _torch_threads(max(1, (os.cpu_count() or 1) // 2))
        for name, fmt in formats.items():
            lines: list[str] = []
            found = _one(name, fmt, work, lines.append)
            conn.send(("format", name, found, lines))
