"""Scores of binary and regression outputs (edgekit.measure.metrics) and the labels they take
(edgekit.data.labelled.check_labels)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgekit.data.labelled import LabelledSet, check_labels
from edgekit.errors import DataError
from edgekit.measure.metrics import agreement, drop_pp, metrics, primary_metric


def _set(y, task=""):
    x = np.zeros((len(y), 2), np.float32)
    return LabelledSet(x, np.asarray(y), "t", "test", ["0", "1"], "", task=task)


def _pairwise_auc(scores, y):
    """ROC AUC by definition: the share of (positive, negative) pairs ranked right, ties half."""
    pairs = list(itertools.product(scores[y == 1], scores[y == 0]))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_binary_accuracy_is_of_the_sigmoid_decision_and_auc_of_the_logits():
    rng = np.random.default_rng(0)
    logits = np.round(rng.normal(size=50), 1).astype(np.float32)  # rounded: ties occur
    y = (logits + rng.normal(scale=1.0, size=50) > 0).astype(np.int64)
    m = metrics(logits, _set(y))  # (N,) outputs: binary without being told
    assert primary_metric("binary") == "accuracy"
    assert m["accuracy"] == pytest.approx(np.mean((logits >= 0) == y))
    assert m["auc"] == pytest.approx(_pairwise_auc(logits, y))
    assert metrics(logits[:, None], _set(y)) == m  # (N, 1) the same
    assert "auc" not in metrics(logits, _set(np.ones(50, np.int64)))  # one class only: no AUC


def test_regression_scores_mae_and_rmse_and_a_drop_is_the_rise_of_the_error():
    y = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    out = (y + np.array([0.5, -0.5, 1.0, -1.0], np.float32))[:, None]  # (N, 1) against (N,) targets
    m = metrics(out, _set(y, "regression"))
    assert primary_metric("regression") == "mae"
    assert m["mae"] == pytest.approx(0.75) and m["rmse"] == pytest.approx(np.sqrt(0.625))
    assert drop_pp(0.5, 0.55, "mae") == pytest.approx(10.0)  # 10% more error than the reference
    assert drop_pp(0.9, 0.85, "top1") == pytest.approx(5.0)  # 5 points of accuracy lost
    assert agreement(y, y + 0.01, "regression") == 1.0 and agreement(y, y + 1, "regression") == 0.0


def _model(task, num_classes=1):
    from types import SimpleNamespace

    return SimpleNamespace(task=task, num_classes=num_classes, name="net.py:Net")


def test_labels_of_a_binary_classifier_must_be_0_or_1_and_regression_takes_reals():
    assert check_labels(np.array([[0], [1], [1]]), _model("binary"), "d.npz").tolist() == [0, 1, 1]
    with pytest.raises(DataError, match="needs labels 0 or 1.*--task regress"):
        check_labels(np.array([0, 2, 1]), _model("binary"), "d.npz")
    with pytest.raises(DataError, match="float32; save integer class indices.*--task regress"):
        check_labels(np.array([0.5, 1.5], np.float32), _model("classification", 3), "d.npz")
    targets = check_labels(np.array([[0.5], [1.5]]), _model("regression"), "d.npz")
    assert targets.dtype == np.float32 and targets.tolist() == [0.5, 1.5]
    with pytest.raises(DataError, match="give the model more outputs"):  # not --num-classes: a file's model
        check_labels(np.array([0, 3]), _model("classification", 2), "d.npz")
