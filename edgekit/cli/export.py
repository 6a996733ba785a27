"""``edgekit export``, ``prune`` and ``train``: the commands that make a model's artefacts or checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgekit.cli.common import (
    ComputedDefault,
    default_formats,
    err,
    preprocess_overrides,
    preprocessing_options,
    prune_options,
    prune_settings,
    report,
    task_option,
)
from edgekit.errors import EXIT_FAILED
from edgekit.formats import names as format_names
from edgekit.runs.staging import check_out


@click.command("export")
@click.argument("model")
@click.option("--to", "to", cls=ComputedDefault, default=default_formats, show_default=True,
              help=f"Comma-separated formats: {', '.join(format_names())}.")
@click.option("--int8", is_flag=True, help="Also write static int8 artefacts (post-training quantization).")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch axis (0) dynamic, so `bench --batch N` "
              "runs the files (ONNX, OpenVINO; ExecuTorch up to 64; TFLite keeps batch 1).")
@click.option("--dynamic-axis", "dynamic_axis", multiple=True, metavar="NAME=AXIS:MIN..MAX",
              help="Let axis AXIS of the input (counted in --input-shape, batch included) take any size "
              "from MIN to MAX, e.g. seq=1:4..64 for a sequence length (ONNX, OpenVINO, ExecuTorch; TFLite "
              "keeps the given size); each artefact is also verified at another size. Repeatable.")
@click.option("--calib", help="Calibration data: an image folder, a .npy/.npz file, or a built-in "
              "(digits, reber, photos, shapes). Default: the dataset a checkpoint was trained on, else the "
              "model's built-in set.")
@click.option("--calib-size", type=click.IntRange(1, 100000), default=32, show_default=True,
              help="Number of calibration samples.")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory to create (must not exist). "
              "Default: runs/<time>-<model>-<hash>.")
@click.option("--weights", type=click.Path(path_type=Path), help="State dict, checkpoint or .safetensors.")
@click.option("--num-classes", type=click.IntRange(1), help="Number of output classes.")
@click.option("--width", type=click.FloatRange(0.01, 16), default=1.0, show_default=True,
              help="Channel multiplier (small variants).")
@click.option("--input-size", type=click.IntRange(1), help="Image side in pixels (sequence length for lstm).")
@click.option("--input-shape", multiple=True, help="Input shape incl. batch for a user model, e.g. "
              "1,1,28,28; repeat it for a model with several inputs, in the order forward() takes them.")
@click.option("--batch-axis", type=click.IntRange(0), help="Where the batch is in --input-shape when not "
              "first, e.g. 1 for a seq-first LSTM taking (time, batch, features) = 28,1,28.")
@click.option("--model-args", help="JSON keyword arguments for a user model's class or factory function.")
@task_option
@click.option("--verify-samples", type=click.IntRange(1, 10000), default=64, show_default=True,
              help="Held-out samples each artefact is checked on (all there are, when fewer); an int8 "
              "artefact below 90% top-1 agreement or 10 dB SQNR on them fails.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling calibration data.")
@click.option("--eval", "eval", metavar="DATASET",
              help="After exporting, evaluate every artefact on a dataset (digits, shapes, reber or a path).")
@click.option("--prune", "prune", type=float, metavar="RATIO",
              help="Prune before exporting: the share of channels (structured) or weights to remove.")
@click.option("--max-drop", type=float, metavar="PP",
              help="int8 accuracy budget in points, measured on the val split of --eval: while a format's "
              "int8 loses more, try its toolchain's remedies (more calibration, other methods, layers kept "
              "in float) and keep the best artefact.")
@click.option("--ray", "ray", metavar="auto|ADDRESS", help="Run the --max-drop search's independent trials "
              "and --eval's shards as Ray tasks (pip install 'edgekit[ray]'); auto: the cluster in "
              "RAY_ADDRESS or running here, else a local one.")
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
    return 0


@click.command("prune")
@click.argument("model")
@click.option("--ratio", type=float, required=True,
              help="Share of channels (structured) or weights (unstructured) to remove, e.g. 0.3.")
@prune_options
@click.option("--weights", type=click.Path(path_type=Path), help="State dict, checkpoint or .safetensors.")
@click.option("--num-classes", type=click.IntRange(1), help="Number of output classes.")
@click.option("--width", type=click.FloatRange(0.01, 16), default=1.0, show_default=True,
              help="Channel multiplier.")
@click.option("--input-size", type=click.IntRange(1), help="Image side in pixels (sequence length for lstm).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Checkpoint to write (must not exist). "
              "Default: checkpoints/<model>-pruned<ratio>-<time>.pt")
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
@click.option("--dataset", required=True, help="digits, shapes, reber, an image folder with one "
              "sub-folder per class, IDX files, or an .npz with x and y.")
@click.option("--epochs", type=click.IntRange(1), help="Epochs (default: tuned per model and dataset).")
@click.option("--batch-size", type=click.IntRange(1), help="Batch size.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="Peak learning rate.")
@click.option("--max-minutes", type=click.FloatRange(0, min_open=True),
              help="Stop after this long and keep the best epoch.")
@click.option("--num-classes", type=click.IntRange(1), help="Output classes (default: the dataset's).")
@click.option("--width", type=click.FloatRange(0.01, 16), help="Channel multiplier.")
@click.option("--input-size", type=click.IntRange(1), help="Image side in pixels (sequence length for lstm).")
@preprocessing_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Checkpoint to write (must not exist). "
              "Default: checkpoints/<model>-<dataset>-<time>.pt")
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
