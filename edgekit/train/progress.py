"""A progress display for training: a rich bar over all batches and a line per epoch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from edgekit.train.config import Progress


@contextlib.contextmanager
def rich_progress(epochs: int, description: str = "training", console=None) -> Iterator[Progress]:
    """A rich progress bar over all batches, and a line per epoch; yields the callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Bar(*columns, console=console) as bar:
        task = bar.add_task(description, total=None, status="")

        def callback(event: dict) -> None:
            if event["event"] == "batch":
                done = (event["epoch"] - 1) * event["batches"] + event["batch"]
                status = f"epoch {event['epoch']}/{epochs} loss {event['loss']:.3f}"
                bar.update(task, total=epochs * event["batches"], completed=done, status=status)
            elif event["event"] == "epoch":
                bar.console.print(format_epoch(event))

        yield callback


def format_epoch(event: dict) -> str:
    """One line per epoch: ``epoch 3/10  loss 0.123  train 97.1%  val 98.2%  4.1 s``."""
    val = "" if event.get("val_acc") is None else f"  val {100 * event['val_acc']:.1f}%"
    return (
        f"epoch {event['epoch']}/{event.get('epochs', '?')}  loss {event['loss']:.4f}  "
        f"train {100 * event['train_acc']:.1f}%{val}  {event['seconds']:.1f} s"
    )
