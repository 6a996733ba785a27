"""The training loop: AdamW (or SGD) with a linear warm-up and cosine decay, validation after
every epoch, and the weights of the best epoch kept.

Tasks: "classification" (x (N, ...), y (N,), cross-entropy on logits (N, C)) and "sequence"
(x (N, T, F), y (N, T) with -100 where nothing is scored, logits (N, T, C)).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import DataError, UsageError
from edgekit.measure.metrics import IGNORE_INDEX, accuracy, primary_metric
from edgekit.train.augment import _augmenter
from edgekit.train.config import Progress, TrainConfig, TrainResult

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekit.data.labelled import LabelledSet
    from edgekit.models.spec import LoadedModel

AUX_WEIGHT = 0.3  # GoogLeNet's auxiliary losses, as in the paper
_DEFAULT_CONFIG = TrainConfig()  # frozen


def train(
    model: LoadedModel,
    train_set: LabelledSet,
    val_set: LabelledSet | None,
    config: TrainConfig = _DEFAULT_CONFIG,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``model.module`` in place; leave it in eval mode holding the best validation epoch."""
    import torch

    _check_config(config)
    _check_data(model, train_set, "training")
    if val_set is not None:
        _check_data(model, val_set, "validation")
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _Trainer(model, train_set, val_set, config, progress).run()
    finally:
        torch.set_num_threads(threads)
        model.module.eval()


def _check_config(config: TrainConfig) -> None:
    if config.optimizer not in ("adamw", "sgd"):
        raise UsageError(f"unknown optimizer {config.optimizer!r}; use adamw or sgd")
    if config.epochs < 1 or config.batch_size < 1:
        raise UsageError("--epochs and --batch-size must be >= 1")
    if not config.lr > 0:
        raise UsageError(f"the learning rate must be > 0, got {config.lr}")


def _check_data(model: LoadedModel, data: LabelledSet, what: str) -> None:
    want = tuple(model.input_spec.sample_shape)
    if len(data.x) == 0:
        raise DataError(f"the {what} set {data.name} is empty")
    if tuple(data.x.shape[1:]) != want:
        raise DataError(
            f"the {what} set {data.name} has samples of shape {tuple(data.x.shape[1:])}, but "
            f"{model.name} takes {want}",
            hint="load it with the model's preprocessing (edgekit.data.load_dataset)",
        )
    labels = data.y[data.y != IGNORE_INDEX]
    if len(labels) and (labels.min() < 0 or labels.max() >= model.num_classes):
        raise DataError(
            f"the {what} set {data.name} has labels up to {int(labels.max())}, but {model.name} "
            f"has {model.num_classes} outputs",
            hint=f"pass --num-classes {int(labels.max()) + 1}",
        )


class _Trainer:
    def __init__(self, model, train_set, val_set, config: TrainConfig, progress):
        import torch

        self.model, self.module = model, model.module
        self.forward = model.axes.module(model.module)  # takes and gives batch-first tensors
        self.train_set, self.val_set, self.config = train_set, val_set, config
        self.progress = progress or (lambda event: None)
        self.sequence = model.task == "sequence"
        torch.manual_seed(config.seed)  # dropout; the initial weights are the caller's
        if config.zero_init_residual:
            zero_init_residual(self.module)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.x = torch.from_numpy(np.ascontiguousarray(train_set.x, np.float32))
        self.y = torch.from_numpy(np.ascontiguousarray(train_set.y, np.int64))
        self.batches = _batch_count(len(self.x), config.batch_size)
        self.opt = _optimizer(self.module, config)
        self.augment = None if self.sequence or not config.augment else _augmenter(train_set, model)
        minutes = config.max_minutes
        self.deadline = time.monotonic() + 60 * minutes if minutes is not None else None
        self.sched = _schedule(self.opt, config, self.batches, self.deadline)

    def run(self) -> TrainResult:
        start = time.monotonic()
        history: list[dict] = []
        best, best_epoch, best_state, best_metrics = -math.inf, 0, None, {}
        stopped = False
        for epoch in range(1, self.config.epochs + 1):
            row, metrics, stopped = self._epoch_with_validation(epoch)
            history.append(row)
            val = row["val_acc"]
            if val is None:  # no validation set: keep the last epoch
                best_epoch = epoch
            elif val >= best:  # ties: the later, longer-trained epoch
                best, best_epoch, best_metrics = val, epoch, metrics
                best_state = _copy_state(self.module)
            shown = best if best_state is not None else None
            self.progress({"event": "epoch", "epochs": self.config.epochs, **row, "best": shown})
            if stopped:
                break
        if best_state is not None:
            self.module.load_state_dict(best_state)
        return TrainResult(
            history=history,
            best_val_acc=best if best_state is not None else None,
            best_epoch=best_epoch,
            epochs_run=len(history),
            seconds=round(time.monotonic() - start, 3),
            stopped_early=stopped,
            val_metrics=best_metrics,
        )

    def _epoch_with_validation(self, epoch: int) -> tuple[dict, dict, bool]:
        """Train one epoch, then score the validation set: (history row, val metrics, stop?)."""
        t0 = time.monotonic()
        loss, train_acc, stopped = self._epoch(epoch)
        metrics = accuracy(self.forward, self.val_set) if self.val_set is not None else {}
        row = {
            "epoch": epoch,
            "loss": loss,
            "train_acc": train_acc,
            "val_acc": metrics.get(primary_metric(self.model.task)) if metrics else None,
            "lr": self.opt.param_groups[0]["lr"],
            "seconds": round(time.monotonic() - t0, 3),
        }
        return row, metrics, stopped

    def _epoch(self, epoch: int) -> tuple[float, float, bool]:
        """One pass over the training set: mean loss, running accuracy, whether time ran out."""
        import torch

        self.module.train()
        order = torch.randperm(len(self.x), generator=self.gen)
        total_loss = correct = counted = seen = 0
        for b in range(self.batches):
            idx = order[b * self.config.batch_size : (b + 1) * self.config.batch_size]
            x, y = self.x[idx], self.y[idx]
            if self.augment is not None:
                x = self.augment(x, self.gen)
            loss, logits = self._loss(x, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            c, n = _correct(logits.detach(), y)
            total_loss, seen = total_loss + loss.item() * len(idx), seen + len(idx)
            correct, counted = correct + c, counted + n
            event = {"event": "batch", "epoch": epoch, "batch": b + 1, "batches": self.batches}
            self.progress({**event, "loss": loss.item()})
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.module.eval()
                return total_loss / seen, correct / max(counted, 1), True
        self.module.eval()
        return total_loss / seen, correct / max(counted, 1), False

    def _loss(self, x, y):
        import torch.nn.functional as F

        out = self.forward(x)
        aux = list(out[1:]) if isinstance(out, (tuple, list)) else []
        logits = out[0] if isinstance(out, (tuple, list)) else out
        loss = 0.0
        for i, head in enumerate([logits, *(a for a in aux if a is not None)]):
            if self.sequence:
                head, target = head.reshape(-1, head.shape[-1]), y.reshape(-1)
            else:
                target = y
            term = F.cross_entropy(
                head, target, ignore_index=IGNORE_INDEX, label_smoothing=self.config.label_smoothing
            )
            loss = loss + (term if i == 0 else AUX_WEIGHT * term)
        return loss, logits


def zero_init_residual(module: nn.Module) -> int:
    """Zero ``bn3.weight`` of each bottleneck block (torchvision's zero_init_residual); returns
    the number of blocks changed. Raises UsageError for a model without such blocks."""
    import torch.nn as nn

    blocks = [m for m in module.modules() if isinstance(getattr(m, "bn3", None), nn.BatchNorm2d)]
    if not blocks:
        raise UsageError("zero_init_residual applies to ResNet bottleneck blocks; this model has none")
    for block in blocks:
        nn.init.zeros_(block.bn3.weight)
    return len(blocks)


def _batch_count(n: int, batch_size: int) -> int:
    """Batches per epoch; a last batch of a single sample is dropped (batch norm needs two)."""
    full, rest = divmod(n, batch_size)
    return max(1, full + (1 if rest > 1 else 0))


def _optimizer(module: nn.Module, config: TrainConfig):
    import torch

    decay = [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in module.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def _schedule(opt, config: TrainConfig, batches: int, deadline: float | None):
    """Linear warm-up over ``warmup_epochs``, then cosine decay to zero, stepped per batch.

    With a deadline the decay follows whichever is further along, the steps or the clock, so a
    run cut short by ``max_minutes`` still ends annealed.
    """
    import torch

    total = config.epochs * batches
    warm = min(int(config.warmup_epochs * batches), total // 2)
    start = time.monotonic()

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        done = (step - warm) / max(1, total - warm)
        if deadline is not None:
            done = max(done, (time.monotonic() - start) / max(deadline - start, 1e-9))
        return 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _copy_state(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _correct(logits, y) -> tuple[int, int]:
    """(correct, counted) top-1 predictions, skipping IGNORE_INDEX targets."""
    keep = y != IGNORE_INDEX
    return int((logits.argmax(-1) == y)[keep].sum()), int(keep.sum())
