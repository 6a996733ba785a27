"""The export workers parked between exports of this process (``edgekit.export.worker``): the next
export's ``Workers`` take them instead of spawning (an interpreter and the converters' imports, seconds
each). At most ``MAX_PARKED``; all are stopped when edgekit exits (``atexit``, and the CLI's ``main``
for its own process) or a signal stops an export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekit.export.worker import Worker, stop_resource_tracker

if TYPE_CHECKING:
    from edgekit.formats.base import Format

MAX_PARKED = 2  # as many as one export uses (edgekit.export.jobs.jobs)


class Pool:
    """The parked workers of this process, taken by the next export's ``Workers``."""

    def __init__(self) -> None:
        self.parked: list[Worker] = []
        self.registered = False

    def take(self, formats: dict[str, Format], preload: list[str]) -> Worker:
        """A parked worker (the one that imported most of ``preload``), else a new one, begun."""
        alive = []
        for w in self.parked:
            if w.proc is not None and w.proc.is_alive():
                alive.append(w)
            else:
                w.stop()
        self.parked = alive
        if alive:
            w = max(alive, key=lambda w: len(w.imported & set(preload)))
            self.parked.remove(w)
        else:
            w = Worker()
            if not self.registered:  # after multiprocessing's own exit handler, so run before it: that
                import atexit  # one joins live children, which parked workers never end by themselves

                atexit.register(self.shutdown)
                self.registered = True
        return w.begin(formats, preload)

    def park(self, worker: Worker) -> None:
        if worker in self.parked:
            return
        if worker.park():
            self.parked.append(worker)
        while len(self.parked) > MAX_PARKED:
            self.parked.pop(0).stop()

    def shutdown(self) -> None:
        """Stop every parked worker (edgekit exits, or a signal stops it)."""
        parked, self.parked = self.parked, []
        for w in parked:
            w.stop()
        stop_resource_tracker()


POOL = Pool()
