"""The ``edgekit`` command line. Parses options, calls the library, maps errors to exit codes."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import click

from edgekit import __version__
from edgekit.errors import EXIT_FAILED, EXIT_GATE, EdgekitError, UsageError


def _err(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _parse_shape(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--input-shape {value!r} is not a list of integers; "
                         "write it like 1,3,224,224") from None
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"--input-shape {value!r} needs positive sizes, e.g. 1,3,224,224")
    return shape


def _parse_json(value: str | None, option: str) -> dict | None:
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option} is not valid JSON ({exc.msg}); write it like '{{\"depth\": 3}}'"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{option} must be a JSON object of keyword arguments, e.g. '{{\"depth\": 3}}'")
    return data


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
@click.option("--debug", is_flag=True, help="Show tracebacks and converter logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Take trained PyTorch models to edge devices: ONNX, TFLite (LiteRT) and OpenVINO, fp32 and
    int8, each verified against the model."""
    ctx.obj = {"debug": debug}
    if debug:
        os.environ["EDGEKIT_DEBUG"] = "1"


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> int:
    """List the model zoo with inputs, parameters and MACs."""
    from edgekit.models import MODELS

    rows = []
    for name, spec in MODELS.items():
        opts = spec.resolve(_default_options())
        rows.append({
            "name": name,
            "title": spec.title,
            "paper": spec.paper,
            "input": list(spec.input_spec(opts).shape),
            "layout": spec.input_spec(opts).layout,
            "classes": spec.default_num_classes,
            "parameters": spec.reference_params,
            "macs": spec.reference_macs,
            "int8": "static" if spec.static_int8 else "dynamic",
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgekit model zoo")
    for col in ("model", "paper", "input", "classes", "params", "MACs", "int8"):
        table.add_column(col, justify="right" if col in ("classes", "params", "MACs") else "left")
    for r in rows:
        macs = _human(r["macs"])
        table.add_row(r["name"], r["paper"].split(",")[0], f"{'x'.join(map(str, r['input']))} {r['layout']}",
                      str(r["classes"]), f"{r['parameters']:,}", macs, r["int8"])
    Console(width=max(Console().width, 100)).print(table)
    return 0


def _human(macs: int | None) -> str:
    if not macs:
        return "-"
    return f"{macs / 1e9:.2f} G" if macs >= 1e8 else f"{macs / 1e6:.2f} M"


def _default_options():
    from edgekit.models.spec import ModelOptions

    return ModelOptions()


def _prune_options(f, required: bool = False):
    """--ratio/--prune, --method, --scope, --keep, --round-to, --finetune-epochs, --dataset."""
    f = click.option("--dataset", "finetune_data", metavar="DATASET",
                     help="Fine-tune on this dataset after pruning (digits, shapes, reber or a path).")(f)
    f = click.option("--finetune-lr", type=click.FloatRange(0, min_open=True),
                     help="Peak learning rate of the fine-tune (default: a tenth of the training LR).")(f)
    f = click.option("--finetune-epochs", type=click.IntRange(0), default=0, show_default=True,
                     help="Epochs of fine-tuning after pruning (needs --dataset).")(f)
    f = click.option("--round-to", type=click.IntRange(1), help="Keep channel counts a multiple of N.")(f)
    f = click.option("--keep", multiple=True, metavar="LAYER",
                     help="A layer to leave unpruned (repeatable); the final classifier always is.")(f)
    f = click.option("--scope", type=click.Choice(["uniform", "global"]), default="uniform",
                     show_default=True, help="Structured: one ratio per layer, or ranked across layers.")(f)
    f = click.option("--method", type=click.Choice(["structured", "unstructured"]), default="structured",
                     show_default=True, help="structured removes channels (faster everywhere); "
                     "unstructured zeroes weights (smaller when compressed, not faster).")(f)
    return f


def _prune_settings(ratio, method, scope, keep, round_to, finetune_epochs, finetune_lr, finetune_data):
    from edgekit.prune import PruneSettings

    if ratio is None:
        if finetune_epochs or keep or finetune_data:
            raise UsageError("--keep, --finetune-epochs and --dataset apply with --prune RATIO")
        return None
    if finetune_data:
        _check_dataset_name(finetune_data)
    settings = PruneSettings(ratio=ratio, method=method, scope=scope, keep=tuple(keep), round_to=round_to,
                             finetune_epochs=finetune_epochs, dataset=finetune_data, finetune_lr=finetune_lr)
    settings.check()
    return settings


def _preprocessing_options(f):
    """The declared preprocessing, the same on export, train, prune and eval (and in recipes)."""
    from edgekit.models.spec import INTERPOLATIONS, RESIZE_MODES

    f = click.option("--preprocess", "preprocess_file", type=click.Path(path_type=Path), metavar="FILE.toml",
                     help="Preprocessing from a TOML file (keys as these options); options override it.")(f)
    f = click.option("--layout", type=click.Choice(["NCHW", "NHWC"], case_sensitive=False),
                     help="Channel layout of the input tensor (NHWC: your own model takes (1, H, W, C)).")(f)
    f = click.option("--interpolation", type=click.Choice(INTERPOLATIONS),
                     help="Resampling filter of the resize (default bilinear).")(f)
    f = click.option("--crop-fraction", type=click.FloatRange(0, 1, min_open=True),
                     help="--resize crop: resize to size / F, then centre-crop (default 0.875).")(f)
    f = click.option("--resize", type=click.Choice(RESIZE_MODES),
                     help="crop: shorter side to size/crop-fraction, centre crop (ImageNet); squash: to "
                     "exactly HxW; pad: letterbox keeping the aspect; none: images are already HxW.")(f)
    f = click.option("--scale", type=click.FloatRange(0, min_open=True),
                     help="Multiply pixel values by this before mean/std (default 1/255).")(f)
    f = click.option("--mean", help="Per-channel mean after scaling, e.g. 0.1307 or 0.485,0.456,0.406.")(f)
    f = click.option("--std", help="Per-channel std, e.g. 0.3081 or 0.229,0.224,0.225.")(f)
    f = click.option("--grayscale/--rgb", default=None, help="Grey or RGB input.")(f)
    return f


PREPROCESS_PARAMS = ("preprocess_file", "layout", "interpolation", "crop_fraction", "resize", "scale", "mean",
                     "std", "grayscale")


def _preprocess(params: dict, input_size: int | None = None) -> dict | None:
    """The declared preprocessing overrides from the options of ``_preprocessing_options`` (popped
    from ``params``), or None when none was given."""
    from edgekit.data.preprocess import merge_overrides

    values = {k: params.pop(k, None) for k in PREPROCESS_PARAMS}
    file = values.pop("preprocess_file")
    values["mean"] = _floats(values["mean"], "--mean")
    values["std"] = _floats(values["std"], "--std")
    if values["layout"]:
        values["layout"] = values["layout"].upper()
    merged = merge_overrides(file, input_size=input_size, **values)
    return merged or None


@cli.command("export")
@click.argument("model")
@click.option("--to", "to", default="onnx,tflite,openvino", show_default=True,
              help="Comma-separated formats: onnx, tflite, openvino.")
@click.option("--int8", is_flag=True, help="Also write static int8 artefacts (post-training quantization).")
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
@click.option("--input-shape", help="Input shape incl. batch for a user model, e.g. 1,1,28,28.")
@click.option("--model-args", help="JSON keyword arguments for a user model's constructor.")
@click.option("--verify-samples", type=click.IntRange(1, 10000), default=8, show_default=True,
              help="Held-out samples each artefact is checked on.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling calibration data.")
@click.option("--eval", "eval_data", metavar="DATASET",
              help="After exporting, evaluate every artefact on a dataset (digits, shapes, reber or a path).")
@click.option("--prune", "prune_ratio", type=float, metavar="RATIO",
              help="Prune before exporting: the share of channels (structured) or weights to remove.")
@click.option("--max-drop", type=float, metavar="PP",
              help="int8 accuracy budget in points, measured on the val split of --eval: while a format's "
              "int8 loses more, try its toolchain's remedies (more calibration, other methods, layers kept "
              "in float) and keep the best artefact.")
@_prune_options
@_preprocessing_options
@click.pass_context
def export_cmd(ctx, model, to, int8, calib, calib_size, out, weights, num_classes, width,
               input_size, input_shape, model_args, verify_samples, seed, eval_data, max_drop, prune_ratio,
               method, scope, keep, round_to, finetune_epochs, finetune_lr, finetune_data, **pre) -> int:
    """Export MODEL (a zoo name or path/to/file.py:ClassName) and verify every artefact."""
    from edgekit.formats import parse_formats
    from edgekit.models.spec import ModelOptions
    from edgekit.pipeline import ExportPlan, run_export

    if weights is not None and not weights.is_file():
        raise UsageError(f"weights file {weights} does not exist; pass the path of a state dict, "
                         "checkpoint or .safetensors file")
    if eval_data:
        _check_dataset_name(eval_data)
    plan = ExportPlan(
        model=_absolute_model(model),
        options=ModelOptions(num_classes=num_classes, width=width, input_size=input_size),
        weights=weights.resolve() if weights else None,
        input_shape=_parse_shape(input_shape),
        model_args=_parse_json(model_args, "--model-args"),
        formats=parse_formats(to),
        int8=int8,
        calib=calib,
        calib_size=calib_size,
        verify_samples=verify_samples,
        out=out,
        seed=seed,
        command=tuple(["edgekit", *sys.argv[1:]]),
        prune=_prune_settings(prune_ratio, method, scope, keep, round_to, finetune_epochs, finetune_lr,
                              finetune_data),
        preprocess=_preprocess(pre),
        max_drop=max_drop,
        eval_data=eval_data,
    )
    outcome = run_export(plan, report=_report)
    click.echo(f"run directory: {outcome.run_dir}")
    if eval_data:
        from edgekit.evaluate import evaluate_run

        _print_eval(evaluate_run(outcome.run_dir, eval_data, report=_report))
    if outcome.failed:
        names = ", ".join(f"{a['format']} {a['precision']}" for a in outcome.failed)
        _err(f"{len(outcome.failed)} artefact(s) failed: {names}; see {outcome.run_dir / 'manifest.json'}")
        return EXIT_FAILED
    return 0


def _absolute_model(model: str) -> str:
    """Make file references absolute so later commands work from any directory."""
    head, sep, cls = model.rpartition(":")
    if sep and head.endswith(".py"):
        return f"{Path(head).resolve()}:{cls}"
    if Path(model).is_file():
        return str(Path(model).resolve())
    return model


def _check_dataset_name(source: str) -> None:
    """Fail fast, before a long export, on a dataset that cannot exist."""
    from edgekit.data.datasets import resolve_dataset

    resolve_dataset(source)


def _print_eval(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgekit.evaluate import table_rows

    head, rows = table_rows(result)
    table = Table(title=f"accuracy on {result['dataset']} ({result['split']}, {result['samples']} samples)")
    for col in head:
        table.add_column(col, justify="left" if col in ("format", "precision") else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, 100)).print(table)


def _floats(value: str | None, option: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a comma-separated list of numbers, e.g. 0.5 "
                         "or 0.485,0.456,0.406") from None


@cli.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--dataset", required=True, help="digits, shapes, reber, an image folder with one "
              "sub-folder per class, IDX files, or an .npz with x and y.")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test",
              show_default=True, help="Which part to score. A folder or file that is not split into "
              "train/val/test is split 80/10/10 by a fixed hash, so 'test' is 10% of it; pass 'all' "
              "to score a held-out set of your own in full.")
@click.option("--limit", type=click.IntRange(1), help="Evaluate at most N samples.")
@click.option("--input-size", type=click.IntRange(1), help="Override the input size of the data.")
@_preprocessing_options
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def eval_cmd(run_dir, dataset, split, limit, input_size, as_json, **pre) -> int:
    """Accuracy of the PyTorch model and every artefact of RUN_DIR on the same samples. The run's
    declared preprocessing is used; options given here override it (and are recorded)."""
    from edgekit.evaluate import check_run_dir, evaluate_run

    overrides = _preprocess(pre, input_size)
    result = evaluate_run(check_run_dir(run_dir), dataset, split=split, limit=limit,
                          preprocessing_overrides=overrides, report=_report)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_eval(result)
    return 0


@cli.command("train")
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
@_preprocessing_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Checkpoint to write (must not exist). "
              "Default: checkpoints/<model>-<dataset>-<time>.pt")
def train_cmd(model, dataset, epochs, batch_size, lr, max_minutes, num_classes, width, input_size,
              seed, out, **pre) -> int:
    """Train a zoo MODEL on the CPU and write a checkpoint that `edgekit export` rebuilds."""
    from edgekit.trainer import run_training

    if out is not None and Path(out).exists():
        raise UsageError(f"checkpoint {out} already exists; choose another --out or remove it")
    run_training(
        model, dataset, out=out, seed=seed,
        options={"num_classes": num_classes, "width": width, "input_size": input_size},
        overrides=_preprocess(pre),
        config={"epochs": epochs, "batch_size": batch_size, "lr": lr, "max_minutes": max_minutes},
        report=_report,
    )
    return 0


@cli.command("bench")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--target", default="local-cpu", show_default=True,
              help="Target profile (see `edgekit targets`).")
@click.option("--host", help="SSH targets: USER@ADDR[:PORT] or an ~/.ssh/config alias (overrides the "
              "profile).")
@click.option("--python", "python", help="SSH targets: the device's Python 3 with numpy and a runtime.")
@click.option("--ssh-config", type=click.Path(path_type=Path),
              help="SSH targets: an ssh_config file (ssh -F).")
@click.option("--targets-dir", type=click.Path(path_type=Path), help="A folder of extra target profiles.")
@click.option("--threads", type=click.IntRange(0),
              help="Inference threads (0: one per core; default: the target's).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size.")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True,
              help="Untimed inferences after the first.")
@click.option("--iters", type=click.IntRange(1), help="Timed inferences.")
@click.option("--seconds", type=click.FloatRange(0, min_open=True),
              help=f"Time each artefact for this long (default {3.0:g} s when --iters is not given).")
@click.option("--no-torch", is_flag=True, help="Do not time the PyTorch model beside the artefacts.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench_cmd(path, target, host, python, ssh_config, targets_dir, threads, batch, warmup, iters, seconds,
              no_torch, as_json) -> int:
    """Latency, memory and size of every artefact of a run (or of one .onnx/.xml/.tflite file) on a
    target, each in its own process. Results go into the run's manifest."""
    from edgekit.bench.core import BenchSettings, bench
    from edgekit.targets import get_target

    if iters is not None and seconds is not None:
        raise UsageError("pass --iters or --seconds, not both")
    settings = BenchSettings(threads=threads, batch=batch, warmup=warmup, iters=iters, seconds=seconds,
                             torch_baseline=not no_torch)
    record = bench(path, get_target(target, targets_dir), settings, host=host, python=python,
                   ssh_config=ssh_config, report=(lambda line: None) if as_json else _report)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        _print_bench(record)
    for r in record["results"]:
        if r.get("status") == "skipped":
            click.echo(f"skipped {r['format']} {r['precision']}: {r['error']}", err=as_json)
    failed = [r for r in record["results"] if r.get("status") == "failed"]
    for r in failed:
        _err(f"{r['format']} {r['precision']}: {r['error']}")
    return EXIT_FAILED if failed else 0


def _print_bench(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgekit.bench.report import bench_rows

    head, rows, caption = bench_rows(record)
    table = Table(title=f"latency on {record['target']['name']}", caption=caption)
    for col in head:
        left = col in ("format", "precision", "runtime", "device")
        table.add_column(col, justify="left" if left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, 170)).print(table)


@cli.command("targets")
@click.option("--targets-dir", type=click.Path(path_type=Path), help="A folder of extra target profiles.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def targets_cmd(targets_dir, as_json) -> int:
    """List the target profiles `edgekit bench --target` knows, and where each comes from."""
    from rich.console import Console
    from rich.table import Table

    from edgekit.targets import load_targets, search_dirs

    targets = load_targets(targets_dir)
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in targets.values()], indent=2))
        return 0
    table = Table(caption="searched: " + ", ".join(str(d) for d in search_dirs(targets_dir)))
    for col in ("name", "connect", "host", "arch", "threads", "formats", "device", "description"):
        table.add_column(col)
    for t in targets.values():
        formats = t.formats()
        device = ", ".join(filter(None, [t.onnx_providers[0] if "onnx" in formats else None,
                                         f"OpenVINO {t.openvino_device}" if "openvino" in formats else None]))
        threads = "cores" if t.threads == 0 else str(t.threads or "default")
        table.add_row(t.name, t.connect, t.host or "", t.arch or "this machine", threads,
                      ", ".join(t.formats()), device, t.description)
    Console(width=max(Console().width, 150)).print(table)
    return 0


@cli.command("prune")
@click.argument("model")
@click.option("--ratio", type=float, required=True,
              help="Share of channels (structured) or weights (unstructured) to remove, e.g. 0.3.")
@_prune_options
@click.option("--weights", type=click.Path(path_type=Path), help="State dict, checkpoint or .safetensors.")
@click.option("--num-classes", type=click.IntRange(1), help="Number of output classes.")
@click.option("--width", type=click.FloatRange(0.01, 16), default=1.0, show_default=True,
              help="Channel multiplier.")
@click.option("--input-size", type=click.IntRange(1), help="Image side in pixels (sequence length for lstm).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Checkpoint to write (must not exist). "
              "Default: checkpoints/<model>-pruned<ratio>-<time>.pt")
@_preprocessing_options
def prune_cmd(model, ratio, method, scope, keep, round_to, finetune_epochs, finetune_lr, finetune_data,
              weights, num_classes, width, input_size, seed, out, **pre) -> int:
    """Prune MODEL (a zoo name or a checkpoint from `edgekit train`), optionally fine-tune, and write
    a checkpoint that `edgekit export` takes like any other."""
    from edgekit.models.spec import ModelOptions
    from edgekit.pipeline import ExportPlan, load_planned_model
    from edgekit.prune import prune_and_finetune, pruned_record
    from edgekit.train import write_checkpoint

    settings = _prune_settings(ratio, method, scope, keep, round_to, finetune_epochs, finetune_lr,
                               finetune_data)
    name = _absolute_model(model)
    if out is None:
        from edgekit.manifest import utc_stamp

        stem = Path(name).stem if Path(name).is_file() else name
        out = Path("checkpoints") / f"{stem}-pruned{ratio:g}-{utc_stamp()}.pt"
    if Path(out).exists():
        raise UsageError(f"checkpoint {out} already exists; choose another --out or remove it")
    if weights is not None and not weights.is_file():
        raise UsageError(f"weights file {weights} does not exist")
    loaded = load_planned_model(ExportPlan(
        model=name, options=ModelOptions(num_classes=num_classes, width=width, input_size=input_size),
        weights=weights.resolve() if weights else None, seed=seed, preprocess=_preprocess(pre)))
    if loaded.weights is None:
        _report("warning: no --weights given: pruning a randomly initialised model")
    base = (loaded.weights or {}).get("edgekit")
    result = prune_and_finetune(loaded, settings, seed, _report)
    write_checkpoint(Path(out), loaded, pruned_record(loaded, result, base))
    if result.finetune:
        test = result.finetune["test"]
        scores = ", ".join(f"{k} {100 * v:.2f}%" for k, v in test.items() if k != "n")
        _report(f"test after fine-tuning: {scores}")
    click.echo(f"checkpoint: {out}")
    return 0


@cli.command("gate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--max-drop", type=float, metavar="PP",
              help="Most accuracy points an artefact may lose against the run's PyTorch fp32 model.")
@click.option("--min-agreement", type=float, metavar="F", help="Least top-1 agreement with PyTorch (0..1).")
@click.option("--min-speedup", type=float, metavar="X",
              help="Least int8 p50 speed-up over the same format's fp32.")
@click.option("--baseline", metavar="FILE", help="A baseline file (edgekit baseline) or run directory.")
@click.option("--max-accuracy-regression", type=float, metavar="PP",
              help="Most accuracy points lost against the baseline (default: --max-drop).")
@click.option("--max-latency-regression", type=float, metavar="PCT",
              help="Most percent the p50 latency may rise against the baseline.")
@click.option("--min-accuracy", type=float, metavar="F",
              help="Absolute accuracy floor (0..1) for every artefact.")
@click.option("--max-latency-ms", type=float, metavar="MS", help="Absolute p50 ceiling.")
@click.option("--max-size-mb", type=float, metavar="MB", help="Absolute size ceiling.")
@click.option("--max-peak-mb", type=float, metavar="MB", help="Absolute peak-memory ceiling.")
@click.option("--target", help="Which bench results the speed rules read (default local-cpu).")
@click.option("--formats", help="Gate only these formats, e.g. onnx,tflite.")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path),
              help="A TOML file of rules ([gate] table); options given here override it.")
@click.option("--junit", type=click.Path(path_type=Path),
              help="JUnit XML to write (default RUN_DIR/gate/junit.xml).")
@click.option("--markdown", type=click.Path(path_type=Path),
              help="Markdown summary to write (default RUN_DIR/gate/summary.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def gate_cmd(run_dir, max_drop, min_agreement, min_speedup, baseline, max_accuracy_regression,
             max_latency_regression, min_accuracy, max_latency_ms, max_size_mb, max_peak_mb, target, formats,
             rules_file, junit, markdown, as_json) -> int:
    """Pass/fail rules on RUN_DIR's accuracy, speed and size. Exit 0 when every rule holds, 4 when
    one fails or its measurement is missing."""
    from edgekit.evaluate import check_run_dir
    from edgekit.gate import GateRules, rules_from_toml, run_gate

    given = {"max_drop": max_drop, "min_agreement": min_agreement, "min_speedup": min_speedup,
             "baseline": baseline, "max_accuracy_regression": max_accuracy_regression,
             "max_latency_regression": max_latency_regression, "min_accuracy": min_accuracy,
             "max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb, "max_peak_mb": max_peak_mb,
             "target": target, "formats": tuple(f.strip() for f in formats.split(",")) if formats else None}
    table = rules_from_toml(rules_file) if rules_file else {}
    merged = {**table, **{k: v for k, v in given.items() if v is not None}}
    if merged.get("baseline") and merged.get("max_accuracy_regression") is None and "max_drop" in merged:
        merged["max_accuracy_regression"] = merged["max_drop"]
    from edgekit.gate import check_rule_types

    merged = check_rule_types({k: v for k, v in merged.items() if v is not None}, "gate")
    result = run_gate(check_run_dir(run_dir), GateRules(**merged), junit, markdown)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_gate(result)
    return 0 if result["passed"] else EXIT_GATE


def _print_gate(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgekit gate: {'PASSED' if result['passed'] else 'FAILED'}",
                  caption=f"JUnit: {result['junit']}  summary: {result['markdown']}")
    for col in ("artefact", "rule", "measured", "limit", "result"):
        table.add_column(col, justify="right" if col in ("measured", "limit") else "left")
    for c in result["checks"]:
        measured = "missing" if c["measured"] is None else f"{c['measured']:.4g}"
        style = {"pass": "green", "fail": "bold red", "missing": "bold yellow"}[c["status"]]
        table.add_row(f"{c['format']}/{c['precision']}", c["rule"], measured, f"{c['op']} {c['limit']:g}",
                      f"[{style}]{c['status']}[/]")
    Console(width=max(Console().width, 100)).print(table)
    for c in result["checks"]:
        if c["status"] != "pass":
            _err(f"gate: {c['format']}/{c['precision']} {c['rule']}: "
                 + ("missing: " + c["detail"] if c["measured"] is None
                    else f"{c['measured']:.4g} is not {c['op']} {c['limit']:g} {c['detail']}".rstrip()))


@cli.command("baseline")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Baseline JSON file to write.")
@click.option("--target", default="local-cpu", show_default=True, help="Which bench results to store.")
def baseline_cmd(run_dir, out, target) -> int:
    """Store RUN_DIR's accuracy, latency and size per artefact, for `edgekit gate --baseline`."""
    from edgekit import manifest as mf
    from edgekit.evaluate import check_run_dir
    from edgekit.gate import make_baseline

    if Path(out).is_dir():
        raise UsageError(f"--out {out} is a folder; give a file path, e.g. {Path(out) / 'baseline.json'}")
    data = make_baseline(check_run_dir(run_dir), target)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    mf.write_json_atomic(Path(out), data)
    stored = sorted({k for a in data["artefacts"].values() for k in a})
    click.echo(f"baseline: {out} ({len(data['artefacts'])} artefacts; {', '.join(stored)})")
    return 0


@cli.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--html", "want_html", is_flag=True, help="Also write a self-contained report.html.")
@click.option("--target", default="local-cpu", show_default=True, help="Whose latency to show.")
def report_cmd(run_dir, want_html, target) -> int:
    """One page for RUN_DIR: settings, tool versions, a table per artefact (size, latency, accuracy,
    agreement) and plots (latency, accuracy against latency, size), in RUN_DIR/report/."""
    from edgekit.evaluate import check_run_dir
    from edgekit.report import build

    made = build(check_run_dir(run_dir), target, want_html)
    for kind, path in made.items():
        click.echo(f"{kind}: {path}")
    return 0


@cli.command("inspect")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--samples", type=click.IntRange(1, 10000), default=32, show_default=True,
              help="Samples from the run's calibration source: the val split of labelled data; "
              "else drawn after the calibration samples (an unordered source may repeat some).")
@click.option("--formats", help="Inspect only these formats, e.g. onnx,openvino.")
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="Worst layers to print.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def inspect_cmd(run_dir, samples, formats, top, as_json) -> int:
    """Where int8 loses accuracy: per layer of each int8 artefact of RUN_DIR, the SQNR and cosine of
    its output against the fp32 artefact's on the same samples, worst first, with the PyTorch module
    it came from. Stored in the manifest; plots in RUN_DIR/report/inspect_<format>.png."""
    from edgekit.evaluate import check_run_dir
    from edgekit.formats import parse_formats
    from edgekit.inspect import inspect_run, table_rows

    chosen = parse_formats(formats) if formats else None
    result = inspect_run(check_run_dir(run_dir), samples=samples, formats=chosen,
                         report=(lambda line: None) if as_json else _report)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    head, rows = table_rows(result, top)
    table = Table(title=f"int8 error per layer ({result['samples']} samples), worst first")
    for col in head:
        table.add_column(col, justify="right" if col in ("rank", "SQNR (dB)", "cosine") else "left")
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, 140)).print(table)
    failed = [f for f, r in result["formats"].items() if r.get("status") != "ok"]
    return EXIT_FAILED if failed else 0


@cli.command("run")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Run directory (overrides the recipe's out).")
def run_cmd(recipe, out) -> int:
    """The whole pipeline from a recipe file: [train], export (prune, int8, formats, calibration),
    [eval], [[bench]] per target, a report, and the [gate] (exit 4 when it fails)."""
    from edgekit.recipe import run_recipe

    status, _ = run_recipe(recipe, out, report=_report)
    return status


def _report(line: str) -> None:
    click.echo(line, err=line.startswith(("warning", "FAILED")))


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        rv = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except click.exceptions.Abort:
        _err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EdgekitError as exc:
        if debug:
            traceback.print_exc()
        _err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("interrupted; nothing was written to the output directory")
        sys.exit(130)
    except Exception as exc:  # a bug of ours or of a library: short line, traceback with --debug
        if debug:
            raise
        _err(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        sys.exit(EXIT_FAILED)
    sys.exit(rv if isinstance(rv, int) else 0)
