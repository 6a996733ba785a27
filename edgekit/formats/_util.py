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
from typing import TYPE_CHECKING

from edgekit.errors import UsageError

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel


def dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(*names: str) -> dict[str, str]:
    return {n: v for n in names if (v := dist_version(n)) is not None}


@contextlib.contextmanager
def quiet(debug: bool | None = None) -> Iterator[None]:
    """Silence converters' chatter unless EDGEKIT_DEBUG is set: Python prints, warnings and logging,
    and the C++ logs that some runtimes write straight to file descriptors 1 and 2.

    Errors still propagate as exceptions; only console noise is dropped.
    """
    if debug is None:  # --debug, or Python reports imports on stderr (-X importtime): nothing hidden
        debug = bool(os.environ.get("EDGEKIT_DEBUG")) or "importtime" in sys._xoptions
    if debug:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        # in an export worker, native stderr goes to its log: a crash's last words (edgekit.export.jobs)
        with contextlib.suppress(OSError, KeyError):
            with open(os.environ["EDGEKIT_NATIVE_LOG"], "a") as log_file:
                os.dup2(log_file.fileno(), 2)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):  # sys.stderr may not be fd 2 (cli.common)
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        logging.disable(previous)


def module_path(recorded: str) -> str:
    """"L['self'].features[0]" or "features.0" -> "features.0"."""
    import re

    path = re.sub(r"^L\['self'\]\.?", "", str(recorded))
    return re.sub(r"\[['\"]?([^\]'\"]+)['\"]?\]", r".\1", path).lstrip(".")


def check_module_names(model: LoadedModel, names: tuple[str, ...]) -> None:
    """Refuse layers to keep in float that are not modules of ``model`` (PyTorch module paths)."""
    if not names:
        return
    import difflib

    known = [n for n, _ in model.module.named_modules() if n]
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=3)
        raise UsageError(f"no module named {', '.join(unknown)} in {model.name} to keep in float"
                         + (f"; closest: {', '.join(close)}" if close else ""))


def calibration_batches(calib, model: LoadedModel, torch_tensors: bool = True) -> list[tuple]:
    """The calibration samples as batch-1 inputs in the model's own layout (its batch at
    ``input_spec.batch_axis``), one tuple per sample with one tensor per input: torch tensors, or
    float32 numpy arrays with ``torch_tensors`` False. ``calib`` is batch-first, (N, *sample) or
    (N, 1, *sample), or a tuple of such arrays for a model with several inputs. A sample of the
    wrong shape is a DataError."""
    import numpy as np

    from edgekit.errors import DataError

    arrays = calib if isinstance(calib, tuple) else (calib,)
    if len(arrays) != len(model.inputs):
        raise DataError(f"calibration data holds {len(arrays)} arrays; {model.name} takes "
                        f"{len(model.inputs)} inputs")
    checked = []
    for spec, arr in zip(model.inputs, arrays):
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == len(spec.shape) + 1 and arr.shape[1] == 1 and arr.shape[2:] == spec.sample_shape:
            arr = arr[:, 0]  # samples kept with their batch of 1
        if arr.shape[1:] != spec.sample_shape:
            raise DataError(f"calibration samples of shape {list(arr.shape[1:])} do not fit the model input "
                            f"{spec.name} {list(spec.shape)}")
        checked.append(arr)
    batches = [tuple(np.ascontiguousarray(model.axes.one(a[i])) for a in checked)
               for i in range(len(checked[0]))]
    if not torch_tensors:
        return batches
    import torch

    return [tuple(torch.from_numpy(b) for b in batch) for batch in batches]
