"""CPU training of zoo models: ``train`` runs the loop (``loop.py``) with a ``TrainConfig``
(``config.py``: settings and the per (model, dataset) defaults), augmenting images
(``augment.py``); ``rich_progress`` shows it (``progress.py``).

Accuracy on labelled data lives in ``edgekit.measure.metrics``, checkpoints in ``edgekit.models.checkpoint``.
"""

from edgekit.train.augment import AUGMENT, AUGMENT_OTHER
from edgekit.train.config import DEFAULTS, Progress, TrainConfig, TrainResult, default_config, default_options
from edgekit.train.loop import train, zero_init_residual
from edgekit.train.progress import format_epoch, rich_progress

__all__ = [
    "AUGMENT",
    "AUGMENT_OTHER",
    "DEFAULTS",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "default_config",
    "default_options",
    "format_epoch",
    "rich_progress",
    "train",
    "zero_init_residual",
]
