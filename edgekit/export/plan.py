"""The export pipeline: load -> [calibrate] -> per format: export fp32, verify, quantize, verify."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import DataError, OutputExistsError, Terminated, UsageError
from edgekit.export.prune import PruneSettings
from edgekit.formats import default_names
from edgekit.layout import count
from edgekit.models.resolve import PRUNED_CHECKPOINT, load_planned_model, run_plan_fields
from edgekit.models.spec import LoadedModel, ModelOptions
from edgekit.runs import manifest as mf

log = logging.getLogger("edgekit")

VERIFY_SAMPLES = 64  # held-out samples every artefact is verified on (int8 is judged on them)


@dataclass(frozen=True)
class ExportPlan:
    """Everything ``edgekit export`` was asked to do, resolved from the CLI or a recipe."""

    model: str
    options: ModelOptions = ModelOptions()
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None
    batch_axis: int | None = None  # where the batch is in input_shape (None: first)
    model_args: dict | None = None
    formats: tuple[str, ...] = field(default_factory=default_names)  # the registry's default formats
    formats_given: bool = False  # the user named the formats (--to, a recipe's `to`), not the default
    int8: bool = False
    calib: str | None = None
    calib_size: int = 32
    verify_samples: int = VERIFY_SAMPLES
    out: Path | None = None
    runs_dir: Path = Path("runs")
    seed: int = 0
    command: tuple[str, ...] = field(default_factory=tuple)
    prune: PruneSettings | None = None
    preprocess: dict | None = None  # declared preprocessing (edgekit.data.preprocess keys)
    max_drop: float | None = None  # int8 accuracy budget in points, met per format by edgekit.export.search
    eval_data: str | None = None  # labelled data: the budget is measured on its val split
    dynamic_batch: bool = False  # artefacts take any batch (axis 0) where their format can
    dynamic_axis: tuple[str, ...] = ()  # --dynamic-axis NAME=AXIS:MIN..MAX (formats.base.DynamicAxis)
    ray: str | None = None  # "auto" or a Ray address: --max-drop trials and eval shards as Ray tasks
    task: str | None = None  # --task classify|binary|regress: overrides the guess from the output
    target: str | None = None  # --target: the device the artefacts are for (a microcontroller's
    targets_dir: Path | None = None  # artefacts are full-integer int8 with firmware files: edgekit.mcu)

    def dynamic_axes(self) -> tuple:
        """``dynamic_axis`` parsed (``DynamicAxis``); a malformed one is a UsageError."""
        from edgekit.formats.base import DynamicAxis

        axes = tuple(DynamicAxis.parse(t) for t in self.dynamic_axis)
        names = [a.name for a in axes]
        if len(set(names)) < len(names) or len({a.axis for a in axes}) < len(axes):
            raise UsageError("--dynamic-axis: give each axis once, each with its own name")
        return axes

    def settings(self) -> dict:
        d = asdict(self)
        d["options"] = asdict(self.options)
        d.pop("command")
        return json.loads(json.dumps(d, default=str))

    @classmethod
    def from_mapping(cls, mapping: dict, where: str = "", base: Path | None = None,
                     extra: tuple[str, ...] = ()) -> ExportPlan:
        """The plan from option names (``edgekit.settings``): ``export``'s options (``prune`` a
        ``PruneSettings``, ``preprocess`` the merged overrides), or a recipe's top level (``base``
        its folder, ``prune``/``preprocess`` tables, ``extra`` the keys of its other steps)."""
        from edgekit.settings import Reader, model_reference

        r = Reader(mapping, where, base)
        model = r.text("model")
        if model is None:
            raise r.error('name the model (model = "lenet5", a file.py:Class or a checkpoint)')
        weights = r.path("weights")
        if weights is not None and not weights.is_file():
            raise r.error(f"weights file {weights} does not exist; pass the path of a state dict, "
                          "checkpoint or .safetensors file")
        prune = r.raw("prune")
        if prune is not None and not isinstance(prune, PruneSettings):
            prune = PruneSettings.from_mapping(r.table("prune"), f"{where} [prune]", base)
        plan = cls(
            model=model_reference(model, base),
            options=ModelOptions(num_classes=r.integer("num_classes", least=1), width=r.number("width", 1.0),
                                 input_size=r.integer("input_size", least=1)),
            weights=weights.resolve() if weights else None,
            input_shape=r.shape("input_shape"), batch_axis=r.integer("batch_axis", least=0),
            model_args=r.kwargs("model_args"),
            formats=r.formats("to", default_names()), formats_given=r.raw("to") is not None,
            int8=r.flag("int8"), calib=r.data("calib"),
            calib_size=r.integer("calib_size", 32, least=1),
            verify_samples=r.integer("verify_samples", VERIFY_SAMPLES, least=1),
            out=r.path("out"), seed=r.integer("seed", 0), prune=prune, preprocess=r.preprocess("preprocess"),
            max_drop=r.number("max_drop"), eval_data=r.data("eval", check=True),
            dynamic_batch=r.flag("dynamic_batch"), dynamic_axis=r.texts("dynamic_axis"),
            ray=r.text("ray"), task=r.task("task"), target=r.text("target"),
            targets_dir=r.path("targets_dir"),
        )
        r.done(extra)
        problem = plan.max_drop_problem(recipe=not r.cli)
        if problem:
            raise r.error(problem)
        return plan

    def max_drop_problem(self, recipe: bool = False) -> str | None:
        """Why ``max_drop`` cannot be met as planned (worded for the command line or a recipe)."""
        if self.max_drop is None or (self.int8 and self.eval_data):
            return None
        if recipe:
            return "max-drop needs int8 = true and an [eval] dataset, whose val split measures the int8 drop"
        return ("--max-drop needs --int8 and --eval DATA (labelled data whose val split measures "
                "the int8 drop)")


@dataclass
class ExportOutcome:
    run_dir: Path
    manifest: dict

    @property
    def failed(self) -> list[dict]:
        return [a for a in self.manifest["artefacts"] if a["status"] != "ok"]

    @property
    def firmware_error(self) -> str | None:
        """Why ``export --target <microcontroller>`` wrote no firmware files (None: it did, or none asked)."""
        return (self.manifest.get("target") or {}).get("firmware_error")


Reporter = Callable[[str], None]


def default_run_dir(plan: ExportPlan, model: LoadedModel) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", Path(model.name.rsplit(":", 1)[-1]).stem.lower()).strip("-")
    key = json.dumps([plan.settings(), (model.weights or {}).get("sha256")], sort_keys=True)
    short = hashlib.sha256(key.encode()).hexdigest()[:8]
    stamp = mf.utc_stamp()
    return plan.runs_dir / f"{stamp}-{slug}-{short}"


def split_samples(x, calib_size: int, verify: int) -> tuple:
    """Held-out verification samples come after the calibration ones and never overlap them
    (``x`` an array, or a tuple of arrays for several inputs)."""
    from edgekit.layout import take

    n = count(x)
    if n < 2:
        raise DataError(
            f"need at least 2 samples (calibration + held-out verification), got {n}; "
            "pass more data with --calib"
        )
    # verification takes what calibration leaves, up to ``verify``; with fewer samples than both
    # need, at least half of them (calibration gets the rest)
    n_verify = max(1, min(verify, max(n - calib_size, n // 2) if calib_size else n))
    return take(take(x, slice(0, n - n_verify)), slice(0, calib_size)), take(x, slice(n - n_verify, None))


def plan_from_manifest(manifest: dict, run_dir: Path | None = None) -> ExportPlan:
    """The plan a run was made with, to rebuild its PyTorch model (eval, bench). A pruned run
    rebuilds from the pruned (and fine-tuned) checkpoint it holds."""
    return ExportPlan(**run_plan_fields(manifest, run_dir))


def run_export(plan: ExportPlan, report: Reporter = print) -> ExportOutcome:
    from edgekit.export.from_onnx import check_plan
    from edgekit.export.jobs import Workers
    from edgekit.formats import export_order, format_class, get_format

    if plan.max_drop_problem():
        raise UsageError(plan.max_drop_problem())
    plan = check_plan(plan, report)  # an ONNX file: onnx and openvino only
    target = None
    if plan.target is not None:
        from edgekit.mcu.export import plan_for_target

        plan, target = plan_for_target(plan, report)  # a microcontroller: tflite, full-integer int8
    formats = {}
    for name in export_order(plan.formats):  # each with its job: the same in every process
        job, notes = format_class(name).job_for(plan.dynamic_batch, plan.dynamic_axes())
        if target is not None:
            from edgekit.mcu.export import job_for_target

            job = job_for_target(name, job, target)
        for note in notes:
            report(f"note: {name}: {note}")
        formats[name] = get_format(name, job)
    if plan.out is not None and Path(plan.out).exists():
        raise OutputExistsError(
            f"output directory {plan.out} already exists; choose another --out or remove it"
        )
    try:
        with Workers(formats) as workers:  # they import their converters while the model loads
            return _export(plan, formats, workers, report, target)
    except (KeyboardInterrupt, Terminated) as exc:  # before the staging folder: nothing written either
        if plan.out is not None and getattr(exc, "untouched", None) is None and not Path(plan.out).exists():
            exc.untouched = Path(plan.out)
        raise


def _export(plan: ExportPlan, formats: dict, workers, report: Reporter, target=None) -> ExportOutcome:
    from edgekit.data.calibration import load_samples
    from edgekit.export.jobs import Work, export_formats
    from edgekit.export.verify import reference_outputs

    model = load_planned_model(plan)
    _check_batch_axis(plan, model)
    _check_dynamic_axes(plan, model)
    if model.weights is None:
        report("warning: no --weights given: the weights are random, so accuracy numbers mean nothing")
    if (":" in model.name or model.name.endswith(".onnx")) and not plan.preprocess \
            and model.preprocessing.kind == "image":
        p = model.preprocessing
        report(f"warning: {model.name} declares no preprocessing, so images are taken as resize {p.resize}, "
               f"scale {p.scale:.4g}, mean {list(p.mean)}, std {list(p.std)}; declare yours with --mean, "
               "--std, --resize (or --preprocess FILE.toml)")
    pruning = None
    if plan.prune is not None:
        from edgekit.export.prune import prune_and_finetune

        base_record = (model.weights or {}).get("edgekit")
        pruning = prune_and_finetune(model, plan.prune, plan.seed, report)
        if pruning.finetune and plan.calib is None:
            from edgekit.models.checkpoint import calibrate_like_training

            calibrate_like_training(model, {"dataset": pruning.finetune["dataset"]})
    need = (plan.calib_size if plan.int8 else 0) + plan.verify_samples
    samples = load_samples(plan.calib, model, need, seed=plan.seed,
                           calib_size=plan.calib_size if plan.int8 else 0)
    if samples.warning:
        report(f"warning: {samples.warning}")
    calib, held_out = split_samples(samples.x, plan.calib_size if plan.int8 else 0, plan.verify_samples)
    reference = reference_outputs(model.axes.module(model.module), held_out)
    budget = _budget(plan, model) if plan.max_drop is not None else None
    out = Path(plan.out) if plan.out else default_run_dir(plan, model)

    manifest = _new_manifest(plan, model, samples, calib, held_out, formats)
    workers.ready()  # their converters imported (or this process's MissingDependencyError)
    with mf.staging_dir(out, report) as stage:
        if pruning is not None:
            manifest["pruning"] = _save_pruned(model, pruning, base_record, stage)
        work = Work(model, calib, held_out, reference, plan.int8, stage, budget)
        manifest["artefacts"] += export_formats(formats, work, report, workers)
        if target is not None:  # what its firmware build takes, beside the artefacts
            from edgekit.mcu.export import write_firmware_files

            manifest["target"] = write_firmware_files(target, stage, manifest, report)
        manifest["finished"] = mf.utc_now()
        mf.write_json_atomic(stage / mf.MANIFEST, manifest)
    return ExportOutcome(out, manifest)


def _check_dynamic_axes(plan: ExportPlan, model: LoadedModel) -> None:
    """Each --dynamic-axis names an axis of the first input other than the batch, whose size in
    --input-shape lies within MIN..MAX."""
    shape, batch = model.input_spec.shape, model.input_spec.batch_axis
    if plan.dynamic_axis and getattr(model.module, "onnx_path", None) is not None:
        raise UsageError("--dynamic-axis re-exports a PyTorch model; an ONNX file keeps the axes it was "
                         "exported with (export it again with its dynamic axes, then pass that file)")
    for a in plan.dynamic_axes():
        where = f"--dynamic-axis {a.name}={a.axis}:{a.min}..{a.max}"
        if a.axis >= len(shape) or a.axis == batch:
            raise UsageError(f"{where}: the input {tuple(shape)} has no axis {a.axis} other than its batch "
                             f"(axis {batch}); count axes in --input-shape, the batch included"
                             + ("; for the batch use --dynamic-batch" if a.axis == batch else ""))
        if not a.min <= shape[a.axis] <= a.max or shape[a.axis] < 2:
            raise UsageError(f"{where}: the size in --input-shape, {shape[a.axis]}, must lie within "
                             f"{a.min}..{a.max} and be at least 2 (the exporters trace at that size)")


def _check_batch_axis(plan: ExportPlan, model: LoadedModel) -> None:
    """What a model whose batch is not first cannot do yet."""
    axis = model.input_spec.batch_axis
    if axis and plan.dynamic_batch:
        raise UsageError(f"--dynamic-batch makes axis 0 dynamic, but {model.name} takes its batch at axis "
                         f"{axis}; export it without --dynamic-batch")
    if model.multi_io and (plan.prune is not None or plan.max_drop is not None):
        raise UsageError(f"{model.name} has several inputs or outputs; --prune and --max-drop take models "
                         "with one input and one output (drop them)")
    if axis and plan.prune is not None:
        raise UsageError(f"--prune needs the batch first, but {model.name} takes it at axis {axis}; "
                         "prune it batch-first or export without --prune")


@dataclass(frozen=True)
class _Budget:
    """What ``--max-drop`` needs: the budget, the labelled held-out set, more calibration data."""

    pp: float
    held: object  # LabelledSet: the val split of --eval
    more: Callable[[int], np.ndarray]  # _MoreCalibration: picklable, so a worker process can search
    ray: str | None = None  # --ray: where the search runs its trials (edgekit.export.search)


@dataclass(frozen=True)
class _MoreCalibration:
    """``more(n)``: up to n more calibration samples from the run's calibration source."""

    calib: str | None
    model: LoadedModel
    verify_samples: int
    seed: int

    def __call__(self, n: int) -> np.ndarray:
        from edgekit.data.calibration import load_samples

        x = load_samples(self.calib, self.model, n + self.verify_samples, seed=self.seed).x
        return split_samples(x, n, self.verify_samples)[0]


def _budget(plan: ExportPlan, model: LoadedModel) -> _Budget:
    """The val split of ``--eval`` (test stays for ``eval``; calibration takes train), and a way to
    draw more calibration samples from the same source (``edgekit.export.search``)."""
    from edgekit.data.datasets import load_dataset

    held = load_dataset(plan.eval_data, model, split="val", seed=plan.seed)
    more = _MoreCalibration(plan.calib, model, plan.verify_samples, plan.seed)
    return _Budget(float(plan.max_drop), held, more, plan.ray)


def _save_pruned(model, pruning, base_record, stage) -> dict:
    """The pruned model as a checkpoint in the run (eval and bench rebuild it from there)."""
    from edgekit.export.prune import pruned_record
    from edgekit.models.checkpoint import write_checkpoint

    path = stage / PRUNED_CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(path, model, pruned_record(model, pruning, base_record))
    return {**pruning.to_dict(), "checkpoint": mf.file_entry(path, stage)}


def _new_manifest(plan, model, samples, calib, held_out, formats) -> dict:
    tools = mf.tool_versions()
    for fmt in formats.values():
        tools.update(fmt.tool_versions())
    return {
        "schema_version": mf.SCHEMA_VERSION,
        "kind": "export",
        "created": mf.utc_now(),
        "command": list(plan.command),
        "settings": plan.settings(),
        "model": {
            "name": model.name,
            "task": model.task,
            "options": model.options,
            "weights": model.weights,
            "parameters": model.params,
            "macs": model.macs,
            "num_classes": model.num_classes,
            "input": model.input_spec.to_dict(),
            **({"output_batch_axis": model.output_batch_axis} if model.output_batch_axis else {}),
            **({"inputs": [s.to_dict() for s in model.inputs], "outputs": list(model.output_names)}
               if model.multi_io else {}),
            "preprocessing": model.preprocessing.to_dict(),
            "int8": {"static": model.static_int8, "recurrent_layers": list(model.recurrent),
                     **({"why": model.int8_reason} if model.int8_reason else {})},
        },
        "calibration": {
            "source": samples.source,
            "samples": count(calib),
            "sha256": samples.sha256,
            "skipped": samples.skipped,
            **({"split": samples.split} if samples.split else {}),
            **({"values": samples.values} if getattr(samples, "values", None) else {}),
        },
        "verification": {"samples": count(held_out), "held_out": True},
        "tools": tools,
        "environment": mf.environment(),
        "artefacts": [],
    }
