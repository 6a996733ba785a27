"""Helpers shared by the format classes."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator


def dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(*names: str) -> dict[str, str]:
    return {n: v for n in names if (v := dist_version(n)) is not None}


@contextlib.contextmanager
def quiet(debug: bool | None = None) -> Iterator[None]:
    """Silence converters' progress chatter (prints, warnings, logging) unless EDGEKIT_DEBUG is set.

    Errors still propagate as exceptions; only console noise is dropped.
    """
    if debug is None:
        debug = bool(os.environ.get("EDGEKIT_DEBUG"))
    if debug:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
        sys.stdout.flush()
