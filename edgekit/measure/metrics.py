"""Accuracy of a model's outputs on labelled data: ``predict``, ``metrics``, ``accuracy``.

``metrics`` takes logits from any runtime (PyTorch, ONNX Runtime, OpenVINO, LiteRT), so training,
``edgekit eval`` and the int8 search (``edgekit.export.search``) all score outputs the same way.
Classification: logits (N, C) against labels (N,); sequences: logits (N, T, C) against targets
(N, T), with ``IGNORE_INDEX`` where nothing is scored; binary: one logit per sample, (N,) or (N, 1),
against 0/1 labels, decided by sigmoid(logit) >= 0.5 (logit >= 0); regression: outputs against real
targets of the same shape (MAE, RMSE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import DataError

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekit.data.labelled import LabelledSet

IGNORE_INDEX = -100
# Regression agreement: an output agrees with the reference when it is within this share of the
# reference outputs' range (max - min) of it (verify and eval alike; recorded as agreement_tolerance).
REGRESS_TOLERANCE = 0.01
LOWER_IS_BETTER = ("mae", "rmse")
_PRIMARY = {"sequence": "strings", "binary": "accuracy", "regression": "mae"}


def primary_metric(task: str) -> str:
    """The headline metric, which also picks the best training epoch: top-1 for classifiers,
    whole strings correct for sequence models, accuracy of the sigmoid decision for binary ones,
    mean absolute error for regression."""
    return _PRIMARY.get(task, "top1")


def drop_pp(ref: float, value: float, key: str) -> float:
    """How much worse ``value`` is than the reference ``ref`` of metric ``key``: points of accuracy
    lost, or for an error (MAE, RMSE) the percent it rose above the reference's."""
    if key in LOWER_IS_BETTER:
        return round(100.0 * (value - ref) / max(abs(ref), 1e-12), 3) + 0.0  # + 0.0: no -0.0
    return round(100.0 * (ref - value), 3) + 0.0


def task_of(outputs: np.ndarray, task: str | None = None) -> str:
    """``task``, or the one an output's shape implies: one value per sample is binary."""
    if task:
        return task
    shape = np.shape(outputs)
    return "binary" if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1) else "classification"


def regress_tolerance(reference: np.ndarray) -> float:
    """The absolute tolerance of regression agreement: ``REGRESS_TOLERANCE`` of the reference's range."""
    ref = np.asarray(reference, np.float64)
    return REGRESS_TOLERANCE * max(float(ref.max() - ref.min()) if ref.size else 0.0, 1e-6)


def agreement(a: np.ndarray, b: np.ndarray, task: str | None = None) -> float:
    """Fraction of predictions on which two models agree: the argmax (samples, or time steps), the
    binary decision (logit >= 0), or for regression outputs within ``regress_tolerance`` of ``a``."""
    task = task_of(a, task)
    if task == "binary":
        return float(np.mean((np.ravel(a) >= 0) == (np.ravel(b) >= 0)))
    if task == "regression":
        return float(np.mean(np.abs(np.ravel(a) - np.ravel(b)) <= regress_tolerance(a)))
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


def metrics(logits: np.ndarray, data: LabelledSet, task: str | None = None) -> dict:
    """Accuracy of ``logits`` against ``data``'s labels; any runtime's outputs will do. ``task``:
    the model's (default: the one ``data`` was loaded for, else what the shapes imply).

    Classification (logits (N, C)): ``top1``, and ``top5`` when there are more than 5 classes.
    Binary (one logit per sample): ``accuracy`` of sigmoid >= 0.5, and ``auc`` (ROC AUC of the
    logits) when both labels 0 and 1 occur. Regression: ``mae`` and ``rmse``.
    Sequence (logits (N, T, C)): ``step_top1`` over steps with a target, ``deterministic_top1``
    over steps with a single valid successor, and ``strings``: the fraction of strings whose
    predicted next symbol is allowed by the grammar at every step (Hochreiter & Schmidhuber's
    criterion; without ``extra["valid"]``: every scored step right). ``n``: samples.
    """
    logits = np.asarray(logits)
    y = np.asarray(data.y)
    if not task:
        task = getattr(data, "task", "") or (task_of(logits) if y.ndim == 1 else "sequence")
    if task == "regression":
        return _regression_metrics(logits, y)
    if task == "binary":
        return _binary_metrics(logits, y)
    if logits.shape[: y.ndim] != y.shape:
        raise DataError(f"outputs of shape {logits.shape} do not match labels of shape {y.shape}")
    if y.ndim == 2:
        return _sequence_metrics(logits, y, data.extra or {})
    out = {"n": int(len(y)), "top1": float(np.mean(logits.argmax(-1) == y))}
    if (len(data.classes) or logits.shape[-1]) > 5 and logits.shape[-1] > 5:
        top5 = np.argpartition(-logits, 5, axis=-1)[:, :5]
        out["top5"] = float(np.mean((top5 == y[:, None]).any(-1)))
    return out


def _binary_metrics(logits: np.ndarray, y: np.ndarray) -> dict:
    if logits.size != y.size or len(logits) != len(y):
        raise DataError(f"outputs of shape {logits.shape} do not match labels of shape {y.shape}; a binary "
                        "classifier gives one logit per sample")
    scores = logits.reshape(len(y)).astype(np.float64)
    out = {"n": int(len(y)), "accuracy": float(np.mean((scores >= 0) == (y == 1)))}
    auc = roc_auc(scores, y)
    if auc is not None:
        out["auc"] = auc
    return out


def roc_auc(scores: np.ndarray, y: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for 0/1 labels ``y`` (ties count half: the
    Mann-Whitney statistic); None unless both labels occur and all labels are 0 or 1."""
    y = np.asarray(y)
    positive, negative = scores[y == 1], np.sort(scores[y == 0])
    if not len(positive) or not len(negative) or len(positive) + len(negative) != len(y):
        return None
    below = np.searchsorted(negative, positive, "left")
    tied = np.searchsorted(negative, positive, "right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (len(positive) * len(negative)))


def _regression_metrics(outputs: np.ndarray, y: np.ndarray) -> dict:
    if outputs.size != y.size or len(outputs) != len(y):
        raise DataError(f"outputs of shape {outputs.shape} do not match targets of shape {y.shape}; "
                        "regression targets need one value per output")
    diff = outputs.reshape(y.shape).astype(np.float64) - y.astype(np.float64)
    return {"n": int(len(y)), "mae": float(np.mean(np.abs(diff))), "rmse": float(np.sqrt(np.mean(diff**2)))}


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
