"""What a user's model takes and gives, learned by running it: on random inputs of the shapes the
user gave (``--input-shape``, once per input), once at batch 1 and once at batch 2. The output
axis that grows with the batch is the output's batch axis; the first output's shape tells the task
(``guess_task``: one value per sample is a binary classifier, (batch, classes) a classifier,
(batch, time, classes) one prediction per time step) and its last size the classes. ``--task``
overrides the guess (``apply_task``)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgekit.errors import UsageError
from edgekit.models.spec import TASK_OPTIONS, TASKS, InputSpec, Preprocessing
from edgekit.models.user import LAYOUTS, _describe, _preprocessing

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekit.models.spec import LoadedModel

NEEDS = ("edgekit needs a tensor of shape (batch,) or (batch, 1) (one logit), (batch, classes) or "
         "(batch, time, classes) first")


def guess_task(shape: tuple[int, ...]) -> str | None:
    """The task a batch-first output shape suggests (``edgekit.models.spec.TASKS``); None for a rank
    edgekit cannot score without ``--task regress``."""
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return "binary"  # one logit per sample: sigmoid(logit) >= 0.5 decides
    return {2: "classification", 3: "sequence"}.get(len(shape))


def apply_task(model: LoadedModel, task: str | None) -> LoadedModel:
    """``model`` with the task ``--task`` names (classify, binary, regress, or a recorded task name)
    instead of the guess; refused where the output cannot mean it. None: the guess stays."""
    if task is None:
        return model
    wanted = TASK_OPTIONS.get(task, task)
    if wanted not in TASKS:
        raise UsageError(f"--task {task}: use one of {', '.join(TASK_OPTIONS)}")
    width = model.num_classes  # the output's last size
    what = f"{model.name} gives {width} value{'s' if width != 1 else ''} per " + (
        "time step" if model.task == "sequence" else "sample")
    if wanted == "classification" and model.task == "sequence":
        wanted = "sequence"  # classify: an argmax per step
    if wanted in ("classification", "sequence") and width < 2:
        raise UsageError(f"--task classify: {what}, nothing to take the argmax of; use --task binary "
                         "(one logit, sigmoid >= 0.5) or --task regress")
    if wanted == "binary" and (width != 1 or model.task == "sequence"):
        raise UsageError(f"--task binary: {what}; a binary classifier gives one logit per sample, "
                         "(batch,) or (batch, 1); use --task classify or regress")
    model.task = wanted
    return model


@dataclass(frozen=True)
class Described:
    task: str
    inputs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    preprocessing: Preprocessing
    num_classes: int
    output_batch_axis: int


def describe_user_model(module: nn.Module, input_shape: tuple, name: str, batch_axis: int = 0) -> Described:
    """Run ``module`` on ``input_shape`` (one shape, or a tuple of shapes for several inputs; batch 1
    at ``batch_axis``) and on batch 2; what it takes and gives."""

    shapes = tuple(input_shape) if isinstance(input_shape[0], tuple) else (tuple(input_shape),)
    if len(shapes) > 1 and batch_axis:
        raise UsageError(f"--batch-axis {batch_axis}: with several inputs the batch must be first in each; "
                         "drop --batch-axis")
    for shape in shapes:
        _check_shape(shape, batch_axis, several=len(shapes) > 1)
    names = input_names(module, len(shapes))
    y1 = _run(module, shapes, batch_axis, 1, name)
    try:
        y2 = _run(module, shapes, batch_axis, 2, name)
    except UsageError:
        # A model written for batch 1 only (e.g. x.view(1, -1)): with the batch first everywhere,
        # as before batch axes were found, its outputs' batch is first; it will not run batched.
        if batch_axis or any(y.dim() == 0 or y.shape[0] != 1 for y in y1):
            raise
        y2 = None
    axes = [0] * len(y1) if y2 is None else [_output_axis(a, b, name) for a, b in zip(y1, y2)]
    if len(y1) > 1 and any(axes):
        raise UsageError(f"{name} has {len(y1)} outputs; with several, edgekit needs the batch first in "
                         f"each (their batch axes are {axes})")
    first = y1[0].movedim(axes[0], 0)
    task = guess_task(tuple(first.shape))
    if task is None:
        raise UsageError(f"{name} returns {tuple(y1[0].shape)} first; {NEEDS}, the batch on any axis")
    layout = LAYOUTS[len(shapes[0])]
    if batch_axis:  # e.g. "TNC": the usual letters with N moved to the batch's place
        rest = layout.replace("N", "")
        layout = rest[:batch_axis] + "N" + rest[batch_axis:]
    specs = tuple(InputSpec(shape=s, layout=layout if i == 0 else LAYOUTS[len(s)], batch_axis=batch_axis,
                            name=n) for i, (s, n) in enumerate(zip(shapes, names)))
    pre = _preprocessing(shapes[0]) if batch_axis == 0 else Preprocessing(kind="none")
    outputs = ("output",) if len(y1) == 1 else tuple(f"output{i}" for i in range(len(y1)))
    return Described(task, specs, outputs, pre, int(first.shape[-1]), axes[0])


def _run(module: nn.Module, shapes: tuple, batch_axis: int, batch: int, name: str) -> tuple:
    """The model's outputs (a tuple of tensors) on random inputs with ``batch`` at ``batch_axis``."""
    import torch

    xs = tuple(torch.rand(s[:batch_axis] + (batch,) + s[batch_axis + 1 :]) for s in shapes)
    try:
        with torch.no_grad():
            return _tensors(module.eval()(*xs), name)
    except UsageError:
        raise
    except Exception as exc:
        got = ", ".join(str(tuple(x.shape)) for x in xs)
        raise UsageError(f"{name} fails on {'inputs' if len(xs) > 1 else 'an input'} of shape {got}: "
                         f"{_describe(exc)}", hint="check --input-shape and --batch-axis") from None


def input_names(module: nn.Module, n: int) -> tuple[str, ...]:
    """"input" for one input; for several, the names of forward()'s positional parameters."""
    if n == 1:
        return ("input",)
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params][:n]
    return tuple(names) if len(names) == n and len(set(names)) == n else tuple(f"input{i}" for i in range(n))


def _check_shape(shape: tuple[int, ...], batch_axis: int, several: bool) -> None:
    text = ",".join(map(str, shape))
    if len(shape) not in LAYOUTS or any(d < 1 for d in shape):
        raise UsageError(f"--input-shape {text}: expected 2 to 5 positive sizes including the batch "
                         "size 1, e.g. 1,1,28,28")
    if batch_axis >= len(shape):
        raise UsageError(f"--batch-axis {batch_axis} is out of range for --input-shape {text} "
                         f"({len(shape)} axes: use 0 to {len(shape) - 1})")
    if shape[batch_axis] != 1:
        where = "first" if batch_axis == 0 else f"at axis {batch_axis}"
        fix = "" if batch_axis or several else "; if the batch is elsewhere, say where with --batch-axis"
        raise UsageError(f"--input-shape {text}: the batch size ({where}) must be 1, got "
                         f"{shape[batch_axis]}{fix}")


def _tensors(y, name: str) -> tuple:
    """A model's output as a tuple of tensors (one, or each of a tuple/list)."""
    import torch

    ys = tuple(y) if isinstance(y, (tuple, list)) else (y,)
    if not ys or not all(isinstance(t, torch.Tensor) for t in ys):
        raise UsageError(f"{name} returns {type(y).__name__}; {NEEDS} (a tuple of them for several outputs)")
    return ys


def _output_axis(a, b, name: str) -> int:
    from edgekit.layout import find_output_axis

    axis = find_output_axis(tuple(a.shape), tuple(b.shape))
    if axis is None and a.dim() == 0 and tuple(b.shape) == (2,):
        raise UsageError(f"{name} returns a scalar at batch 1 and {tuple(b.shape)} at batch 2: a bare "
                         ".squeeze() drops the batch too; squeeze only the last axis (.squeeze(-1)) so "
                         "it returns (batch,)")
    if axis is None:
        raise UsageError(f"{name}'s output {tuple(a.shape)} has no batch axis (at batch 2 it is "
                         f"{tuple(b.shape)}); edgekit needs the batch in every output",
                         hint="check --batch-axis")
    return axis
