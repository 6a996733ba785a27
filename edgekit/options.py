"""The option table: every option that the command line and recipes share, declared once.

Each ``Option`` says its kind, range or choices, default and help. From it ``opt(key)``
(``edgekit.cli.common``) makes the click option of a command (its ``--flag``, type with range,
default, help), and
``edgekit.settings.Reader`` checks a recipe's key or a mapping by the same declaration, so that
``--calib-size 200000`` and ``calib-size = 200000`` are refused alike. Keys are spelled with
underscores (``calib_size``), as click passes them; recipes and flags dash them.

A command may reword the help of an option or leave out its default (``opt("width", default=None)``:
the trainer chooses), never change its kind or range. An option with ``says`` (its range in words)
keeps a plain click type: the Reader refuses out-of-range values on the command line too, with that
wording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# What each settings value reads (``settings`` of an Option): the classes' ``from_mapping`` and a
# recipe's steps.
SETTINGS = ("export", "prune", "bench", "gate", "train", "eval", "bench-step")


def _task_choices() -> tuple[str, ...]:
    from edgekit.models.spec import TASK_OPTIONS

    return tuple(TASK_OPTIONS)


def _format_help() -> str:
    from edgekit.formats import names

    return f"Comma-separated formats: {', '.join(names())}."


def default_formats() -> str:
    from edgekit.formats import default_names

    return ",".join(default_names())


@dataclass(frozen=True)
class Option:
    """One option. ``kind``: int, float, flag, text, choice, path, data (a built-in data set name or a
    path), texts (repeatable), shape, formats, kwargs (JSON object). Ranges: ``least``/``most``
    inclusive, ``above``/``below`` exclusive. ``default`` and ``help`` may be functions (the format
    registry's). ``settings``: the settings values that read it."""

    key: str
    kind: str
    help: str | Callable[[], str] = ""
    default: Any = None
    least: float | None = None
    most: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    says: str | None = None
    hint: str | None = None
    metavar: str | None = None
    settings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.key.replace("_", "-")

    def default_value(self):
        return self.default() if callable(self.default) else self.default

    def choice_list(self) -> tuple[str, ...]:
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def help_text(self) -> str:
        return self.help() if callable(self.help) else self.help

    def ranged(self) -> bool:
        return any(b is not None for b in (self.least, self.most, self.above, self.below))

    def refusal(self, value) -> str | None:
        """What is wrong with a number ``value`` by the range, e.g. "must be between 1 and 100000";
        None when it is in range (or the option has none)."""
        if not self.ranged() or value is None:
            return None
        low_ok = (self.least is None or value >= self.least) and (self.above is None or value > self.above)
        high_ok = (self.most is None or value <= self.most) and (self.below is None or value < self.below)
        if low_ok and high_ok:
            return None
        if self.says:
            return f"must be {self.says}"
        if self.least is not None and self.most is not None:
            return f"must be between {self.least:g} and {self.most:g}"
        if not low_ok:
            return f"must be >= {self.least:g}" if self.least is not None else f"must be > {self.above:g}"
        return f"must be <= {self.most:g}" if self.most is not None else f"must be < {self.below:g}"

    def click_type(self):
        import click

        if self.kind == "choice":
            return click.Choice(list(self.choice_list()))
        if self.kind == "path":
            return click.Path(path_type=Path)
        if self.kind not in ("int", "float"):
            return None  # text: click's STRING
        plain = int if self.kind == "int" else float
        if self.says or not self.ranged():
            return plain  # the Reader words the range
        if plain is int:
            return click.IntRange(self.least, self.most)
        return click.FloatRange(self.least if self.above is None else self.above,
                                self.most if self.below is None else self.below,
                                min_open=self.above is not None, max_open=self.below is not None)


def _section(settings: tuple[str, ...], *options: Option) -> list[Option]:
    """``options`` read by the settings values named in ``settings`` (besides those they name)."""
    return [replace(o, settings=settings + o.settings) for o in options]


_DATA = ("digits, shapes, reber, an image folder with one sub-folder per class, IDX files, or an .npz with x "
         "and y.")
_FRACTION = "a fraction between 0 and 1"

_EXPORT = _section(
    ("export",),
    Option("to", "formats", _format_help, default=default_formats),
    Option("int8", "flag", "Also write static int8 artefacts (post-training quantization).", False),
    Option("dynamic_batch", "flag", "Make the batch axis (0) dynamic, so `bench --batch N` runs the files "
           "(ONNX, OpenVINO; ExecuTorch up to 64; TFLite keeps batch 1).", False),
    Option("dynamic_axis", "texts", "Let axis AXIS of the input (counted in --input-shape, batch included) "
           "take any size from MIN to MAX, e.g. seq=1:4..64 for a sequence length (ONNX, OpenVINO, "
           "ExecuTorch; TFLite keeps the given size); each artefact is also verified at another size. "
           "Repeatable.", metavar="NAME=AXIS:MIN..MAX"),
    Option("calib", "data", "Calibration data: an image folder, a .npy/.npz file, or a built-in (digits, "
           "reber, photos, shapes). Default: the dataset a checkpoint was trained on, else the model's "
           "built-in set."),
    Option("calib_size", "int", "Number of calibration samples.", 32, least=1, most=100000),
    Option("out", "path", "Run directory to create (must not exist). Default: runs/<time>-<model>-<hash>.",
           settings=("train",)),
    Option("weights", "path", "State dict, checkpoint or .safetensors."),
    Option("num_classes", "int", "Number of output classes.", least=1),
    Option("width", "float", "Channel multiplier (small variants).", 1.0, least=0.01, most=16),
    Option("input_size", "int", "Image side in pixels (sequence length for lstm).", least=1),
    Option("input_shape", "shape", "Input shape incl. batch for a user model, e.g. 1,1,28,28; repeat it "
           "for a model with several inputs, in the order forward() takes them."),
    Option("batch_axis", "int", "Where the batch is in --input-shape when not first, e.g. 1 for a "
           "seq-first LSTM taking (time, batch, features) = 28,1,28.", least=0),
    Option("model_args", "kwargs", "JSON keyword arguments for a user model's class or factory function."),
    Option("task", "choice", "What the output means (default: guessed from its shape). classify: (batch, "
           "classes) logits, the argmax decides; binary: one logit per sample, (batch,) or (batch, 1), "
           "sigmoid >= 0.5 decides (accuracy, ROC AUC); regress: real values, scored by MAE and RMSE.",
           choices=_task_choices),
    Option("verify_samples", "int", "Held-out samples each artefact is checked on (all there are, when "
           "fewer); an int8 artefact below 90% top-1 agreement or 10 dB SQNR on them fails.", 64,
           least=1, most=10000),
    Option("seed", "int", "Seed for sampling calibration data.", 0, settings=("train",)),
    Option("eval", "data", "After exporting, evaluate every artefact on a dataset (digits, shapes, reber "
           "or a path).", metavar="DATASET"),
    Option("max_drop", "float", "int8 accuracy budget in points, measured on the val split of --eval: "
           "while a format's int8 loses more, try its toolchain's remedies (more calibration, other "
           "methods, layers kept in float) and keep the best artefact.", least=0,
           says="an accuracy budget in points, 0 or more (e.g. 1 for one point)", metavar="PP",
           settings=("gate",)),
    Option("ray", "text", "Run the --max-drop search's independent trials and --eval's shards as Ray "
           "tasks (pip install 'edgekit[ray]'); auto: the cluster in RAY_ADDRESS or running here, else a "
           "local one.", metavar="auto|ADDRESS"),
)

# `prune --ratio`, `export --prune`, a recipe's [prune]
_PRUNE = _section(
    ("prune",),
    Option("ratio", "float", "Share of channels (structured) or weights (unstructured) to remove, e.g. "
           "0.3.", above=0, below=1, says="between 0 and 1 (exclusive)",
           hint="0.3 removes 30% of the channels of each prunable layer"),
    Option("method", "choice", "structured removes channels (faster everywhere); unstructured zeroes "
           "weights (smaller when compressed, not faster).", "structured",
           choices=("structured", "unstructured")),
    Option("scope", "choice", "Structured: one ratio per layer, or ranked across layers.", "uniform",
           choices=("uniform", "global")),
    Option("keep", "texts", "A layer to leave unpruned (repeatable); the final classifier always is.",
           metavar="LAYER"),
    Option("round_to", "int", "Keep channel counts a multiple of N (default: what this CPU's int8 kernels "
           "take at full speed; 1 keeps exact counts).", least=1),
    Option("finetune_epochs", "int", "Epochs of fine-tuning after pruning (needs --dataset).", 0, least=0),
    Option("finetune_lr", "float", "Peak learning rate of the fine-tune (default: a tenth of the "
           "training LR).", above=0),
    Option("dataset", "data", _DATA, settings=("train", "eval")),
)

# `bench`, a recipe's [[bench]] (bench-step: the keys the recipe reads itself)
_BENCH = _section(
    ("bench",),
    Option("threads", "int", "Inference threads (0: one per core; default: the target's).", least=0),
    Option("batch", "int", "Batch size.", 1, least=1),
    Option("warmup", "int", "Untimed inferences after the first.", 5, least=0),
    Option("iters", "int", "Timed inferences.", least=1),
    Option("seconds", "float", "Time each artefact for this long (default 3 s when --iters is not "
           "given).", above=0),
    Option("no_torch", "flag", "Do not time the PyTorch model beside the artefacts.", False),
) + _section(
    ("bench-step",),
    Option("target", "text", "Which bench results to store.", "local-cpu",
           settings=("gate", "export", "eval")),
    Option("targets_dir", "path", "A folder of extra target profiles.", settings=("export", "eval")),
)

# `gate`'s options, a rules file, a recipe's [gate]
_GATE = _section(
    ("gate",),
    Option("min_agreement", "float", "Least agreement with PyTorch (0..1): of the top-1 class, of a "
           "binary model's decision, of regression outputs within tolerance.", least=0, most=1,
           says=_FRACTION, metavar="F"),
    Option("min_speedup", "float", "Least int8 p50 speed-up over the same format's fp32.", metavar="X"),
    Option("baseline", "path", "A baseline file (edgekit baseline) or run directory.", metavar="FILE"),
    Option("max_accuracy_regression", "float", "Most accuracy points lost against the baseline "
           "(default: --max-drop).", metavar="PP"),
    Option("max_latency_regression", "float", "Most percent the p50 latency may rise against the "
           "baseline.", metavar="PCT"),
    Option("min_accuracy", "float", "Absolute accuracy floor (0..1) for every artefact.", least=0, most=1,
           says=_FRACTION, metavar="F"),
    Option("max_latency_ms", "float", "Absolute p50 ceiling.", metavar="MS"),
    Option("max_size_mb", "float", "Absolute size ceiling.", metavar="MB"),
    Option("max_peak_mb", "float", "Absolute peak-memory ceiling (a microcontroller target: the RAM "
           "that `check` measured, or Vela's SRAM estimate).", metavar="MB"),
    Option("allow_estimates", "flag", "Let latency rules read estimated figures (Vela's, of an Ethos-U "
           "target); without it they are refused.", False),
    Option("formats", "formats", "Gate only these formats, e.g. onnx,tflite."),
)

# `edgekit train` and a recipe's [train]; `edgekit eval` and a recipe's [eval]
_TRAIN_EVAL = _section(
    ("train",),
    Option("epochs", "int", "Epochs (default: tuned per model and dataset).", least=1),
    Option("batch_size", "int", "Batch size.", least=1),
    Option("lr", "float", "Peak learning rate.", above=0),
    Option("max_minutes", "float", "Stop after this long and keep the best epoch.", above=0),
) + _section(
    ("eval",),
    Option("split", "choice", "Which part to score. A folder or file that is not split into "
           "train/val/test is split 80/10/10 by a fixed hash, so 'test' is 10% of it; pass 'all' to score "
           "a held-out set of your own in full (refused for a source with its own train part).", "test",
           choices=("train", "val", "test", "all")),
    Option("limit", "int", "Evaluate at most N samples.", least=1),
)

OPTIONS: dict[str, Option] = {o.key: o for o in _EXPORT + _PRUNE + _BENCH + _GATE + _TRAIN_EVAL}


def declared(key: str) -> Option | None:
    """The option of ``key`` (underscored), or None when the table does not declare it."""
    return OPTIONS.get(key)
