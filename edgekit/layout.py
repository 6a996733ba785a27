"""Where the batch is, and how many tensors. Inside edgekit, samples are stacked batch-first:
(N, *sample_shape). A model whose batch is elsewhere (a seq-first LSTM takes (time, batch,
features)) gets its batches with the batch moved to its own axis, and its outputs come back
batch-first. ``BatchAxes`` does both moves; for the usual batch-first model it changes nothing.

A model with several inputs takes a tuple of such arrays, one per input, and one with several
outputs gives a tuple; ``count``, ``take``, ``concat`` and ``first`` work on either form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchAxes:
    input: int = 0  # the batch axis of the model's input
    output: int = 0  # the batch axis of its output

    @property
    def batch_first(self) -> bool:
        return self.input == 0 and self.output == 0

    def to_model(self, x):
        """A batch-first array (N, *sample) laid out as the model takes it (each one of a tuple)."""
        if self.input == 0:
            return x
        if isinstance(x, tuple):
            return tuple(self.to_model(a) for a in x)
        return np.ascontiguousarray(np.moveaxis(x, 0, self.input))

    def from_model(self, y):
        """The model's output with its batch moved first (each one of a tuple)."""
        if self.output == 0:
            return y
        if isinstance(y, tuple):
            return tuple(self.from_model(a) for a in y)
        return np.ascontiguousarray(np.moveaxis(y, self.output, 0))

    def one(self, sample):
        """One sample (no batch axis; a tuple for several inputs) as a batch of 1 in the model's layout."""
        if isinstance(sample, tuple):
            return tuple(np.expand_dims(s, self.input) for s in sample)
        return np.expand_dims(sample, self.input)

    def module(self, module):
        """``module`` taking and returning batch-first tensors (itself when already batch-first)."""
        if self.batch_first:
            return module
        import torch

        axes = self

        class BatchFirst(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = module

            def forward(self, x):
                y = self.inner(x.movedim(0, axes.input))
                return y.movedim(axes.output, 0)

        return BatchFirst()


BATCH_FIRST = BatchAxes()


def count(x) -> int:
    """How many samples ``x`` holds (an array, or a tuple of arrays one per input)."""
    return len(x[0]) if isinstance(x, tuple) else len(x)


def take(x, index):
    """``x[index]`` of an array, or of each array of a tuple."""
    return tuple(a[index] for a in x) if isinstance(x, tuple) else x[index]


def concat(parts: list):
    """Batches (arrays, or tuples of arrays) stacked along the batch axis (0)."""
    if parts and isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i] for p in parts], axis=0) for i in range(len(parts[0])))
    return np.concatenate(parts, axis=0)


def first(y) -> np.ndarray:
    """The first output (the one eval scores) of a model with one or several outputs."""
    return y[0] if isinstance(y, tuple) else y


def find_output_axis(shape_1: tuple[int, ...], shape_2: tuple[int, ...]) -> int | None:
    """The output axis that grew from 1 to 2 when the batch did (None: no single such axis)."""
    if len(shape_1) != len(shape_2):
        return None
    grew = [i for i, (a, b) in enumerate(zip(shape_1, shape_2)) if a == 1 and b == 2]
    same = all(a == b for i, (a, b) in enumerate(zip(shape_1, shape_2)) if i not in grew)
    return grew[0] if len(grew) == 1 and same else None


def manifest_axes(manifest: dict) -> BatchAxes:
    """The batch axes of a run's model (batch-first for runs made before they were recorded)."""
    model = manifest.get("model", {})
    return BatchAxes(int(model.get("input", {}).get("batch_axis", 0)),
                     int(model.get("output_batch_axis", 0)))


def split_counts(n: int, calib_size: int, verify: int) -> tuple[int, int]:
    """How ``n`` samples split into (calibration, held-out verification): verification takes what
    calibration leaves, up to ``verify``; with fewer samples than both need, at least half of them
    (calibration gets the rest). The rule of ``edgekit.export.plan.split_samples``."""
    n_verify = max(1, min(verify, max(n - calib_size, n // 2) if calib_size else n))
    return min(calib_size, n - n_verify), n_verify
