"""``edgekit export``, ``prune`` and ``train``: the commands that make a model's artefacts or checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgekit.cli.common import (
    err,
    opt,
    options,
    preprocess_overrides,
    preprocessing_options,
    prune_options,
    prune_settings,
    report,
)
from edgekit.errors import EXIT_FAILED
from edgekit.runs.staging import check_out


@click.command("export")
@click.argument("model")
@options("to", "int8", "dynamic_batch", "dynamic_axis", "calib", "calib_size", "out", "weights",
         "num_classes", "width", "input_size", "input_shape", "batch_axis", "model_args", "task",
         "verify_samples", "seed", "eval")
@opt("ratio", "--prune", "prune", metavar="RATIO",
     help="Prune before exporting: the share of channels (structured) or weights to remove.")
@options("max_drop", "ray")
@opt("target", default=None, help="The device the artefacts are for (`edgekit targets`). A "
     "microcontroller (cortex-m4-256k, ethos-u55-128, ...) gets TFLite full-integer int8 and the files "
     "its firmware build takes (RUN/firmware/); other targets change nothing.")
@opt("targets_dir")
@prune_options
@preprocessing_options
def export_cmd(**options) -> int:
    """Export MODEL (a zoo name, path/to/file.py:NAME or package.module:NAME, where NAME is an
    nn.Module class or a function returning one; or a checkpoint) and verify every artefact."""
    import dataclasses

    from edgekit.export.plan import ExportPlan, run_export

    if click.get_current_context().get_parameter_source("to") is click.core.ParameterSource.DEFAULT:
        options["to"] = None  # the default formats, which an ONNX file narrows to those it can make
    options["prune"] = prune_settings(options, options["prune"], required=False)
    options["preprocess"] = preprocess_overrides(options)
    plan = dataclasses.replace(ExportPlan.from_mapping(options), command=("edgekit", *sys.argv[1:]))
    check_out(plan.out, default_parent=plan.runs_dir)  # before the model loads
    if plan.ray:  # an unreachable cluster fails now, not after the exports
        from edgekit.distributed import connect

        connect(plan.ray)
    outcome = run_export(plan, report=report)
    click.echo(f"run directory: {outcome.run_dir}")
    if plan.eval_data:
        from edgekit.cli.measure import print_eval
        from edgekit.measure.evaluate import evaluate_run

        print_eval(evaluate_run(outcome.run_dir, plan.eval_data, report=report, ray=plan.ray))
    if outcome.failed:
        names = ", ".join(f"{a['format']} {a['precision']}" for a in outcome.failed)
        err(f"{len(outcome.failed)} artefact(s) failed: {names}; see {outcome.run_dir / 'manifest.json'}")
        return EXIT_FAILED
    if outcome.firmware_error:  # the artefacts stand; what the firmware build takes does not
        err(f"no firmware files in {outcome.run_dir}: {outcome.firmware_error}")
        return EXIT_FAILED
    return 0


@click.command("prune")
@click.argument("model")
@opt("ratio", required=True)
@prune_options
@options("weights", "num_classes")
@opt("width", help="Channel multiplier.")
@opt("input_size")
@opt("seed", help=None)
@opt("out", help="Checkpoint to write (must not exist). Default: checkpoints/<model>-pruned<ratio>-<time>.pt")
@preprocessing_options
def prune_cmd(ratio, out, **options) -> int:
    """Prune MODEL (a zoo name or a checkpoint from `edgekit train`), optionally fine-tune, and write
    a checkpoint that `edgekit export` takes like any other."""
    from edgekit.export.plan import ExportPlan
    from edgekit.export.prune import prune_and_finetune, pruned_record
    from edgekit.models.checkpoint import write_checkpoint
    from edgekit.models.resolve import load_planned_model

    settings = prune_settings(options, ratio)
    options["preprocess"] = preprocess_overrides(options)
    plan = ExportPlan.from_mapping(options)  # the model to prune: model, weights, options, seed
    check_out(out, file=True, default_parent=Path("checkpoints"))
    if out is None:
        from edgekit.runs.manifest import utc_stamp

        stem = Path(plan.model).stem if Path(plan.model).is_file() else plan.model
        out = Path("checkpoints") / f"{stem}-pruned{ratio:g}-{utc_stamp()}.pt"
    loaded = load_planned_model(plan)
    if loaded.weights is None:
        report("warning: no --weights given: pruning a randomly initialised model")
    base = (loaded.weights or {}).get("edgekit")
    result = prune_and_finetune(loaded, settings, plan.seed, report)
    write_checkpoint(Path(out), loaded, pruned_record(loaded, result, base))
    if result.finetune:
        test = result.finetune["test"]
        scores = ", ".join(f"{k} {100 * v:.2f}%" for k, v in test.items() if k != "n")
        report(f"test after fine-tuning: {scores}")
    click.echo(f"checkpoint: {out}")
    return 0


@click.command("train")
@click.argument("model")
@opt("dataset", required=True)
@options("epochs", "batch_size", "lr", "max_minutes")
@opt("num_classes", help="Output classes (default: the dataset's).")
@opt("width", default=None, help="Channel multiplier.")
@opt("input_size")
@preprocessing_options
@opt("seed", help=None)
@opt("out", help="Checkpoint to write (must not exist). Default: checkpoints/<model>-<dataset>-<time>.pt")
def train_cmd(model, dataset, epochs, batch_size, lr, max_minutes, num_classes, width, input_size,
              seed, out, **pre) -> int:
    """Train a zoo MODEL on the CPU and write a checkpoint that `edgekit export` rebuilds."""
    from edgekit.train.trainer import run_training

    check_out(out, file=True, default_parent=Path("checkpoints"))
    run_training(
        model, dataset, out=out, seed=seed,
        options={"num_classes": num_classes, "width": width, "input_size": input_size},
        overrides=preprocess_overrides(pre),
        config={"epochs": epochs, "batch_size": batch_size, "lr": lr, "max_minutes": max_minutes},
        report=report,
    )
    return 0
