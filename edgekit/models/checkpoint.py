"""Checkpoints that rebuild their model: ``{"edgekit": record, "state_dict": ...}`` files.

``save_checkpoint`` writes what ``edgekit train`` produced, readable with
``torch.load(weights_only=True)``; the record names the model, its resolved options and
preprocessing, so ``load_checkpoint`` (and ``edgekit export ckpt.pt``) rebuilds the right model
without repeating the options.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import WeightsError
from edgekit.runs import staging as st

if TYPE_CHECKING:
    from edgekit.data.labelled import LabelledSet
    from edgekit.models.spec import LoadedModel, Preprocessing
    from edgekit.train.config import TrainConfig, TrainResult


def checkpoint_record(
    model: LoadedModel,
    dataset: LabelledSet,
    result: TrainResult,
    config: TrainConfig,
    metrics: dict | None = None,
    preprocessing: Preprocessing | None = None,
) -> dict:
    """The "edgekit" record of a checkpoint: plain types only (weights-only loadable)."""
    import torch

    import edgekit

    record = {
        "model": model.name,
        "options": dict(model.options),
        "task": model.task,
        "input_shape": list(model.input_spec.shape),
        "preprocessing": (preprocessing or model.preprocessing).to_dict(),
        "dataset": dataset.name,
        "dataset_sha256": dataset.sha256,
        "classes": [str(c) for c in dataset.classes],
        "metrics": {
            "best_val_acc": result.best_val_acc,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "seconds": result.seconds,
            "stopped_early": result.stopped_early,
            "val": result.val_metrics,
            "history": result.history,
            **(metrics or {}),
        },
        "train_config": config.to_dict(),
        "versions": {"torch": torch.__version__, "edgekit": edgekit.__version__},
    }
    return _plain(record)


def save_checkpoint(
    path: Path,
    model: LoadedModel,
    dataset: LabelledSet,
    result: TrainResult,
    config: TrainConfig,
    metrics: dict | None = None,
    preprocessing: Preprocessing | None = None,
) -> dict:
    """Write ``{"edgekit": record, "state_dict": ...}`` to ``path`` atomically; return the record.

    ``dataset`` is the training set; ``metrics`` adds to the record's metrics (e.g. test top-1);
    ``preprocessing`` is what the data was prepared with, when it differs from the model's.
    """
    record = checkpoint_record(model, dataset, result, config, metrics, preprocessing)
    return write_checkpoint(path, model, record)


def write_checkpoint(path: Path, model: LoadedModel, record: dict) -> dict:
    """``{"edgekit": record, "state_dict": ...}`` to ``path``, atomically; returns the record."""
    import torch

    path = Path(path)
    record = _plain(record)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if len(tmp.name.encode()) > st.name_max(path.parent):  # a long legal name: a short temporary one
        digest = hashlib.sha256(path.name.encode()).hexdigest()[:12]
        tmp = path.with_name(f".edgekit-{digest}.{os.getpid()}.tmp")
    try:
        torch.save({"edgekit": record, "state_dict": state}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return record


def load_checkpoint(path: Path) -> LoadedModel:
    """Rebuild the model a ``save_checkpoint`` file records, with its weights and preprocessing.

    The record stays available as ``loaded.weights["edgekit"]``.
    """
    from edgekit.models import load_model
    from edgekit.models.spec import ModelOptions, Preprocessing
    from edgekit.models.weights import load_weights_file

    _, info = load_weights_file(Path(path))
    record = info.get("edgekit")
    if not record or "model" not in record or "options" not in record:
        raise WeightsError(
            f"{path} records no model (not written by edgekit train)",
            hint="name the model and pass the file with --weights",
        )
    opts = record["options"]
    if "model_args" in opts:  # a user's file.py:NAME or package.module:NAME
        loaded = load_model(
            record["model"],
            weights=path,
            input_shape=tuple(opts["input_shape"]),
            model_args=opts["model_args"],
        )
    else:
        options = ModelOptions(opts.get("num_classes"), opts.get("width", 1.0), opts.get("input_size"))
        loaded = load_model(record["model"], options, weights=Path(path))
    if record.get("preprocessing"):
        loaded.preprocessing = Preprocessing.from_dict(record["preprocessing"])
    if record.get("task") and record["task"] != loaded.task:  # e.g. a regression model pruned
        from edgekit.models.describe import apply_task

        apply_task(loaded, record["task"])
    calibrate_like_training(loaded, record)
    return loaded


def calibrate_like_training(loaded: LoadedModel, record: dict) -> None:
    """Default calibration source of a model trained on a built-in: that dataset's train split."""
    from edgekit.data.calibration import BUILTIN_SOURCES

    if record.get("dataset") in BUILTIN_SOURCES:
        loaded.builtin_calibration = record["dataset"]


def _plain(obj):
    """``obj`` as plain dicts, lists, str, int, float, bool and None (numpy and tuples converted)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)  # str subclasses (torch.__version__) would need code to unpickle
    if obj is None:
        return None
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint record")
