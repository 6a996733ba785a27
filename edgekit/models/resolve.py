"""From what a user names to a loaded model: a zoo name, a user's ``file.py:NAME`` or
``package.module:NAME``, a checkpoint written by ``edgekit train`` (which names its own model),
or the model of an existing run.

``load_planned_model`` takes a ``ModelPlan`` or any plan with the same fields
(``edgekit.export.plan.ExportPlan``); ``load_run_model`` rebuilds the model a run was exported from,
for ``eval``, ``inspect`` and the PyTorch baseline of ``bench``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.models.spec import LoadedModel, ModelOptions
from edgekit.models.weights import WEIGHTS_SUFFIXES
from edgekit.runs import manifest as mf

CHECKPOINT_SUFFIXES = WEIGHTS_SUFFIXES
PRUNED_CHECKPOINT = "pytorch/model.pruned.pt"  # in a run made with --prune: the model it exported
_MODEL_FIELDS = ("model", "options", "weights", "input_shape", "batch_axis", "model_args", "seed",
                 "preprocess", "task")


@dataclass(frozen=True)
class ModelPlan:
    """What builds a model: the model-loading fields of ``edgekit.export.plan.ExportPlan``."""

    model: str
    options: ModelOptions = ModelOptions()
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None
    batch_axis: int | None = None
    model_args: dict | None = None
    seed: int = 0
    preprocess: dict | None = None  # declared preprocessing (edgekit.data.preprocess keys)
    task: str | None = None  # --task (classify, binary, regress): overrides the guess from the output


def is_checkpoint(model: str) -> bool:
    """``edgekit export ckpt.pt``: a checkpoint written by ``edgekit train`` names its own model."""
    path = Path(model)
    return path.suffix.lower() in CHECKPOINT_SUFFIXES and ":" not in path.name and path.is_file()


def load_planned_model(plan: ModelPlan) -> LoadedModel:
    """Build the model a plan names: a zoo name, a user's file.py:NAME or package.module:NAME, or a
    training checkpoint."""
    from edgekit.models import load_model

    if is_checkpoint(plan.model):
        from edgekit.models.checkpoint import load_checkpoint

        if plan.options != ModelOptions() or plan.weights is not None:
            raise UsageError(f"{plan.model} is a checkpoint that records its model and options; "
                             "drop --weights/--width/--num-classes/--input-size, or name the model "
                             "and pass the checkpoint with --weights")
        return _task(declare_preprocessing(load_checkpoint(Path(plan.model)), plan.preprocess), plan)
    import torch

    # Seeded, so that a model without --weights is the same random model every time it is rebuilt
    # (eval and bench of a run compare the artefacts with this rebuilt model).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        model = load_model(plan.model, plan.options, plan.weights, plan.input_shape, plan.model_args,
                           plan.batch_axis)
    record = (model.weights or {}).get("edgekit") or {}
    if record.get("preprocessing"):  # trained by edgekit with its own preprocessing
        from edgekit.models.checkpoint import calibrate_like_training
        from edgekit.models.spec import Preprocessing

        model.preprocessing = Preprocessing.from_dict(record["preprocessing"])
        calibrate_like_training(model, record)
    return _task(declare_preprocessing(model, plan.preprocess), plan)


def _task(model: LoadedModel, plan) -> LoadedModel:
    from edgekit.models.describe import apply_task

    return apply_task(model, getattr(plan, "task", None))


def declare_preprocessing(model: LoadedModel, overrides: dict | None) -> LoadedModel:
    """Apply declared preprocessing (``--mean``, ``--resize``, ``--preprocess FILE``...) to
    ``model``; NHWC changes the input layout of a user's model, whose shape is then (1, H, W, C)."""
    if not overrides:
        return model
    import dataclasses

    from edgekit.data.preprocess import fit_to_input, override_preprocessing

    pre = override_preprocessing(model.preprocessing, **overrides)
    spec = model.input_spec
    if pre.layout != spec.layout and spec.layout in ("NCHW", "NHWC"):
        if ":" not in model.name and not model.name.endswith(".onnx"):
            raise UsageError(f"{model.name} takes {spec.layout} inputs; --layout {pre.layout} applies "
                             "to your own models")
        model.input_spec = dataclasses.replace(spec, layout=pre.layout)
    model.preprocessing = fit_to_input(pre, model.input_spec, model.name, overrides)
    return model


def run_plan_fields(manifest: dict, run_dir: Path | None = None) -> dict:
    """The plan fields a run was made with (``ExportPlan`` keywords), to rebuild its PyTorch model
    (eval, bench). A pruned run rebuilds from the pruned (and fine-tuned) checkpoint it holds."""
    s = manifest["settings"]
    if manifest.get("pruning") and run_dir is not None:
        ckpt = Path(run_dir) / PRUNED_CHECKPOINT
        recorded = manifest["pruning"].get("checkpoint", {}).get("sha256")
        if not ckpt.is_file() or (recorded and mf.sha256_file(ckpt) != recorded):
            raise UsageError(f"the run's pruned model {ckpt} is gone or changed since the export; "
                             "export again")
        return dict(model=str(ckpt), formats=tuple(s["formats"]), int8=s["int8"], seed=s.get("seed", 0),
                    preprocess=s.get("preprocess"), task=s.get("task"))
    weights = Path(s["weights"]) if s.get("weights") else None
    model = s["model"]
    if model.lower().endswith(".onnx"):  # an ONNX file as the model: still there, unchanged
        from edgekit.models.onnx_file import check_unchanged

        check_unchanged(Path(model), manifest["model"].get("weights"))
    for path in filter(None, [weights, Path(model) if is_checkpoint(model) else None]):
        recorded = (manifest["model"].get("weights") or {}).get("sha256")
        if not path.is_file():
            raise UsageError(f"the run's weights file {path} is gone; restore it to evaluate the run")
        if recorded and mf.sha256_file(path) != recorded:
            raise UsageError(f"the run's weights file {path} changed since the export "
                             "(sha256 differs); export again to evaluate these weights")
    return dict(
        model=model,
        options=ModelOptions(**s["options"]),
        weights=weights,
        input_shape=_shape(s.get("input_shape")),
        batch_axis=s.get("batch_axis"),
        model_args=s.get("model_args"),
        formats=tuple(s["formats"]),
        int8=s["int8"],
        seed=s.get("seed", 0),
        preprocess=s.get("preprocess"),
        task=s.get("task"),  # None in runs made before --task: the guess, as then
    )


def _shape(value) -> tuple | None:
    """A recorded input shape: a list of sizes, or a list of them for several inputs."""
    if not value:
        return None
    return tuple(tuple(v) for v in value) if isinstance(value[0], list) else tuple(value)


def load_run_model(manifest: dict, run_dir: Path | None = None) -> LoadedModel:
    """The PyTorch model a run was exported from, rebuilt as ``edgekit export`` built it."""
    fields = run_plan_fields(manifest, run_dir)
    return load_planned_model(ModelPlan(**{k: v for k, v in fields.items() if k in _MODEL_FIELDS}))
