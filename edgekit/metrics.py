"""Accuracy of a model's outputs on labelled data: ``predict``, ``metrics``, ``accuracy``.

``metrics`` takes logits from any runtime (PyTorch, ONNX Runtime, OpenVINO, LiteRT), so training,
``edgekit eval`` and the int8 search (``edgekit.search``) all score outputs the same way.
Classification: logits (N, C) against labels (N,); sequences: logits (N, T, C) against targets
(N, T), with ``IGNORE_INDEX`` where nothing is scored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import DataError

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekit.data.labelled import LabelledSet

IGNORE_INDEX = -100


def primary_metric(task: str) -> str:
    """The headline metric, which also picks the best training epoch: top-1 for classifiers,
    whole strings correct for sequence models."""
    return "strings" if task == "sequence" else "top1"


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of predictions (samples, or time steps) on which two models' argmax agree."""
    return float(np.mean(a.argmax(-1) == b.argmax(-1)))


def predict(module: nn.Module, x, batch_size: int = 256) -> np.ndarray:
    """Logits of ``module`` (in eval mode, no grad) for all of ``x`` (a tuple of arrays for several
    inputs), as float32 numpy: the first output where it has several."""
    import torch

    from edgekit.layout import count, take

    module.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, count(x), batch_size):
            batch = take(x, slice(i, i + batch_size))
            batch = batch if isinstance(batch, tuple) else (batch,)
            out = module(*(torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in batch))
            out = out[0] if isinstance(out, (tuple, list)) else out
            outs.append(out.float().numpy())
    return np.concatenate(outs)


def accuracy(module: nn.Module, data: LabelledSet, batch_size: int = 256) -> dict:
    """Accuracy of ``module`` on ``data`` (see ``metrics``)."""
    return metrics(predict(module, data.x, batch_size), data)


def metrics(logits: np.ndarray, data: LabelledSet) -> dict:
    """Accuracy of ``logits`` against ``data``'s labels; any runtime's outputs will do.

    Classification (logits (N, C)): ``top1``, and ``top5`` when there are more than 5 classes.
    Sequence (logits (N, T, C)): ``step_top1`` over steps with a target, ``deterministic_top1``
    over steps with a single valid successor, and ``strings``: the fraction of strings whose
    predicted next symbol is allowed by the grammar at every step (Hochreiter & Schmidhuber's
    criterion; without ``extra["valid"]``: every scored step right). ``n``: samples.
    """
    logits = np.asarray(logits)
    y = np.asarray(data.y)
    if logits.shape[: y.ndim] != y.shape:
        raise DataError(f"outputs of shape {logits.shape} do not match labels of shape {y.shape}")
    if y.ndim == 2:
        return _sequence_metrics(logits, y, data.extra or {})
    out = {"n": int(len(y)), "top1": float(np.mean(logits.argmax(-1) == y))}
    if (len(data.classes) or logits.shape[-1]) > 5 and logits.shape[-1] > 5:
        top5 = np.argpartition(-logits, 5, axis=-1)[:, :5]
        out["top5"] = float(np.mean((top5 == y[:, None]).any(-1)))
    return out


def _sequence_metrics(logits: np.ndarray, y: np.ndarray, extra: dict) -> dict:
    pred = logits.argmax(-1)
    scored = y != IGNORE_INDEX
    hit = pred == y
    out = {"n": int(len(y)), "step_top1": _mean(hit[scored])}
    if "deterministic" in extra:
        out["deterministic_top1"] = _mean(hit[np.asarray(extra["deterministic"], bool)])
    if "valid" in extra:
        valid = np.asarray(extra["valid"], bool)  # (N, T, C)
        checked = valid.any(-1)  # steps with a successor (not padding, not after the final E)
        allowed = np.take_along_axis(valid, pred[..., None], -1)[..., 0]
        out["strings"] = float(np.mean((allowed | ~checked).all(-1)))
    else:
        out["strings"] = float(np.mean((hit | ~scored).all(-1)))
    return out


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else float("nan")
