"""The formats of one export, each converted in a worker process, side by side where cores allow.

Converters can take the whole process down: the TFLite converter's LLVM calls ``abort()`` when its
write fails (a full disk), XNNPACK and native runtimes can crash. So no format is converted in the
edgekit process itself: worker processes do it, and this process keeps the staging folder, the
manifest and the signals. A worker that dies fails the format it was converting with one line (its
last words on stderr, the signal) and a fresh worker takes the formats it had not begun; the rest of
the run, its clean-up and its manifest survive. Workers die with edgekit (``PR_SET_PDEATHSIG``).

With two cores or more the formats are split into two groups of about equal cost
(``Format.export_cost``), one worker each; otherwise one worker takes them all. Workers start with
the export and import their converters while this process loads the model, the samples and the
PyTorch reference outputs, which they then get by pickle; after it they are parked, and the next
export of this process takes them, its converters imported already (``edgekit.export.pool``). The
output lines and the manifest's artefacts keep the sequential order: each format's lines are held
until every format before it has printed its own.

Workers are spawned, not forked: a child forked after PyTorch has run an OpenMP region hangs at its
first parallel op (GNU libgomp; checked here with torch 2.13), and litert-torch's JAX threads make
fork unsafe as well. One worker takes every format with ``EDGEKIT_EXPORT_JOBS=1``, on one core, and
for models of more than ``MAX_SHARED_BYTES`` of weights (memory). The formats are converted in this
process only where no worker can take the model (it cannot be pickled) and with ``--ray`` (its
client lives in this process); the debug log says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.export.pool import POOL
from edgekit.export.steps import NoSpace, export_format, failed, skipped
from edgekit.export.worker import Worker

if TYPE_CHECKING:
    import numpy as np

    from edgekit.formats.base import Format
    from edgekit.models.spec import LoadedModel

log = logging.getLogger("edgekit")

JOBS_ENV = "EDGEKIT_EXPORT_JOBS"  # 1: one worker, one format after another; 2: two workers
# Above this many bytes of weights one worker takes every format (unless EDGEKIT_EXPORT_JOBS=2): each
# worker's copy of the model and its converters' copies cost too much memory. vgg16 (553 MB) peaked
# at 6.34 GB side by side against 4.46 GB one after another; resnet50 (102 MB) at 2.6 GB.
MAX_SHARED_BYTES = 256 * 1024**2
POLL_S = 0.5  # how often the wait for workers looks at signals
Report = Callable[[str], None]


@dataclass(frozen=True)
class Work:
    """What every format's export reads (the workers get it by pickle)."""

    model: LoadedModel
    calib: np.ndarray
    held_out: np.ndarray
    reference: np.ndarray
    int8: bool
    stage: Path
    budget: Any = None  # --max-drop (edgekit.export.plan._Budget)


def jobs() -> int:
    """How many workers export at once: ``EDGEKIT_EXPORT_JOBS``, else 2 with two cores or more."""
    value = os.environ.get(JOBS_ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return min(int(value), 2)
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def split(formats: dict[str, Format]) -> list[list[str]]:
    """The formats of each worker: two groups of about equal cost (the costliest first into the
    lighter group), or one group with ``jobs()`` 1 or a single format. The first group holds the
    first format, so the first lines print as soon as they can."""
    order = list(formats)
    if len(order) < 2 or jobs() < 2:
        return [order] if order else []
    loads: list[list] = [[0.0, []], [0.0, []]]
    for name in sorted(order, key=lambda n: -formats[n].export_cost):
        lighter = min(loads, key=lambda g: g[0])
        lighter[0] += formats[name].export_cost
        lighter[1].append(name)
    groups = [sorted(g[1], key=order.index) for g in loads]
    return groups if order[0] in groups[0] else groups[::-1]


class Workers:
    """The workers of one export (``split``), taken from the pool (``edgekit.export.pool``) or
    spawned; when the block ends, those that finished are parked for the next export, and every
    one is stopped where a signal (Ctrl-C, SIGTERM) ends it."""

    def __init__(self, formats: dict[str, Format]):
        self.formats = formats
        self.groups = split(formats)
        self.started = [POOL.take(formats, group) for group in self.groups]

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is None or issubclass(kind, Exception):  # a busy one (a bug, a full disk) is stopped
            for w in self.started:
                POOL.park(w)
        else:
            self.stop()

    def stop(self, busy_only: bool = False) -> None:
        """Stop this export's workers and the parked ones (a signal: nothing is left running), or
        only those converting."""
        for w in self.started:
            if not busy_only or w.state == "busy":
                w.stop()
        if not busy_only:
            POOL.shutdown()

    def ready(self) -> None:
        """Every worker has imported its converters (or this process raises the missing package)."""
        for w in self.started:
            w.ready()

    def spawn(self, names: list[str], payload: bytes, sources: dict[str, str], threads: int) -> Worker | None:
        w = POOL.take(self.formats, names)
        self.started.append(w)
        if w.ready() and w.send(payload, sources, names, threads):
            return w
        return None


def export_formats(formats: dict[str, Format], work: Work, report: Report,
                   workers: Workers | None = None) -> list[dict]:
    """Every format's manifest entries, in the order of ``formats``."""
    from edgekit import interrupts

    out = _Ordered(list(formats), report)
    entries: dict[str, list[dict]] = {}
    try:
        payload = _payload(work) if workers is not None else None
        if payload is None or work.budget is not None and getattr(work.budget, "ray", None):
            for name in formats:  # here: no worker can take the model, or --ray (its client is ours)
                interrupts.check()
                entries[name] = export_one(formats[name], name, work, out.reporter(name))
                out.finish(name)
        else:
            _in_workers(formats, work, payload, workers, entries, out)
    except NoSpace as exc:
        if workers is not None:
            workers.stop(busy_only=True)
        raise _disk_full(work, formats, entries) from exc
    except BaseException as exc:  # stop the workers before the staging goes: all on Ctrl-C, SIGTERM;
        if workers is not None:  # those converting on a full disk, a bug (the rest are parked at the end)
            workers.stop(busy_only=isinstance(exc, Exception))
        raise
    return [e for name in formats for e in entries[name]]


def _in_workers(formats, work: Work, payload: bytes, workers: Workers, entries: dict, out: _Ordered) -> None:
    import multiprocessing.connection

    from edgekit import interrupts

    sources = _sources(work.model)
    groups = [list(g) for g in workers.groups]
    if len(groups) > 1 and not _worth_it(work.model):  # memory: one worker takes them all
        groups = [groups[0] + groups[1]]  # the second worker, unused, is parked at the end
    threads = max(1, (os.cpu_count() or 1) // len(groups))
    live: dict[Any, Worker] = {}
    for w, names in zip(workers.started, groups, strict=False):
        if w.proc is None or not w.send(payload, sources, names, threads):
            w = workers.spawn(names, payload, sources, threads)  # its start failed: one more try
        if w is None:
            for name in names:
                entries[name] = _lost(name, work.int8, "could not start", out.reporter(name))
                out.finish(name)
            continue
        live[w.conn] = w
    while live:
        interrupts.check()
        for conn in multiprocessing.connection.wait(list(live), timeout=POLL_S):
            w = live[conn]
            try:
                message = conn.recv()
            except (EOFError, OSError):  # it died: fail what it was converting, start one for the rest
                del live[conn]
                rest = _crashed(w, work, entries, out)
                if rest:
                    w2 = workers.spawn(rest, payload, sources, threads)
                    if w2 is None:
                        for name in rest:
                            entries[name] = _lost(name, work.int8, "could not restart", out.reporter(name))
                            out.finish(name)
                    else:
                        live[w2.conn] = w2
                continue
            _take(w, message, entries, out)
            if set(w.assigned) <= set(entries):  # it waits for the next export: parked at the end
                del live[conn]
                w.state = "idle"


def _take(w: Worker, message: tuple, entries: dict, out: _Ordered) -> None:
    kind, name, *rest = message
    if kind == "start":
        w.current, w.partial[name] = name, []
    elif kind == "entry":
        entry, lines = rest
        w.partial[name].append(entry)
        out.finish(name, tuple(lines), done=False)
    elif kind == "format":
        (lines,) = rest
        entries[name] = w.partial.pop(name)
        w.current = None
        out.finish(name, tuple(lines))
    elif kind == "full":
        raise NoSpace(rest[0])


def _crashed(w: Worker, work: Work, entries: dict, out: _Ordered) -> list[str]:
    """Fail the format ``w`` was converting when it died; the formats it had not begun."""
    from edgekit.runs import diskspace

    how = w.died()
    name = w.current
    if name is not None:
        if diskspace.says_full(how) or diskspace.nearly_full(work.stage):
            raise NoSpace(how)
        done = w.partial.pop(name, [])
        precision = "int8" if done else "fp32"
        fmt = w.formats[name]
        for path in fmt.files(work.stage / name / f"model.{precision}{fmt.extension}"):
            with contextlib.suppress(OSError):  # half written: not an artefact
                path.unlink()
        report = out.reporter(name)
        entry = failed({"format": name, "precision": precision},
                       f"the {name} converter crashed its worker process ({how})", time.perf_counter(),
                       report)
        entry.pop("seconds", None)
        done.append(entry)
        if work.int8 and precision == "fp32":
            done.append(skipped(name, "int8", f"skipped: the fp32 {name} export failed"))
        entries[name] = done
        out.finish(name)
    elif diskspace.nearly_full(work.stage):
        raise NoSpace(how)
    return [n for n in w.assigned if n not in entries]


def _disk_full(work: Work, formats: dict, entries: dict):
    """``DiskFull`` for the run's staging folder: what it holds plus, for each format not done, about
    the weights' size (fp32) and a quarter of it more (int8)."""
    from edgekit.runs import diskspace
    from edgekit.runs.staging import folder_bytes

    left = sum(1 for name in formats if name not in entries)
    weights = _weight_bytes(work.model)
    needed = folder_bytes(work.stage) + int(left * weights * (1.25 if work.int8 else 1.0)) + (1 << 16)
    return diskspace.disk_full(work.stage, needed)


def _worth_it(model: LoadedModel) -> bool:
    """Whether two workers may each hold a copy of ``model`` (``MAX_SHARED_BYTES``)."""
    if os.environ.get(JOBS_ENV, "").strip() == "2":
        return True
    return _weight_bytes(model) <= MAX_SHARED_BYTES


def _weight_bytes(model: LoadedModel) -> int:
    return sum(t.numel() * t.element_size() for t in model.module.state_dict().values())


def _payload(work: Work) -> bytes | None:
    import pickle

    try:
        return pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - e.g. a lambda in a user's model
        log.debug("exporting every format in this process: the model cannot be pickled: %s", exc)
        return None


def _sources(model: LoadedModel) -> dict[str, str]:
    """{module: file} of the model's classes, so the worker can import a user's model file first."""
    found = {}
    for m in model.module.modules():
        name = type(m).__module__
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and not name.startswith(("torch.", "edgekit.")):
            found[name] = file
    return found


def export_one(fmt: Format, name: str, work: Work, report: Report) -> list[dict]:
    return export_format(name, fmt, work.model, work.calib, work.held_out, work.reference, work.int8,
                         work.stage, report, work.budget)


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

    def finish(self, name: str, lines: tuple[str, ...] = (), done: bool = True) -> None:
        self.lines[name] += lines
        if done:
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


def _lost(name: str, int8: bool, why: str, report: Report) -> list[dict]:
    entry = failed({"format": name, "precision": "fp32"}, f"the export worker process {why}",
                   time.perf_counter(), report)
    entry.pop("seconds", None)
    return [entry, skipped(name, "int8", f"skipped: the fp32 {name} export failed")] if int8 else [entry]
