"""The ``edgekit`` command line. Parses options, calls the library, maps errors to exit codes."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import click

from edgekit import __version__
from edgekit.errors import EXIT_FAILED, EdgekitError, UsageError


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


@cli.command("export")
@click.argument("model")
@click.option("--to", "to", default="onnx,tflite,openvino", show_default=True,
              help="Comma-separated formats: onnx, tflite, openvino.")
@click.option("--int8", is_flag=True, help="Also write static int8 artefacts (post-training quantization).")
@click.option("--calib", help="Calibration data: an image folder, a .npy/.npz file, or a built-in "
              "(digits, reber, photos). Default: the model's built-in set.")
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
@click.pass_context
def export_cmd(ctx, model, to, int8, calib, calib_size, out, weights, num_classes, width,
               input_size, input_shape, model_args, verify_samples, seed) -> int:
    """Export MODEL (a zoo name or path/to/file.py:ClassName) and verify every artefact."""
    from edgekit.formats import parse_formats
    from edgekit.models.spec import ModelOptions
    from edgekit.pipeline import ExportPlan, run_export

    if weights is not None and not weights.is_file():
        raise UsageError(f"weights file {weights} does not exist; pass the path of a state dict, "
                         "checkpoint or .safetensors file")
    plan = ExportPlan(
        model=model,
        options=ModelOptions(num_classes=num_classes, width=width, input_size=input_size),
        weights=weights,
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
    )
    outcome = run_export(plan, report=_report)
    click.echo(f"run directory: {outcome.run_dir}")
    if outcome.failed:
        names = ", ".join(f"{a['format']} {a['precision']}" for a in outcome.failed)
        _err(f"{len(outcome.failed)} artefact(s) failed: {names}; see {outcome.run_dir / 'manifest.json'}")
        return EXIT_FAILED
    return 0


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
