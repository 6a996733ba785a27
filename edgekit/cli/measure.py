"""``edgekit eval``, ``bench`` and ``inspect``: the commands that measure a run's artefacts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.cli.common import (
    err,
    opt,
    options,
    preprocess_overrides,
    preprocessing_options,
    print_table,
    quiet,
    report,
)
from edgekit.errors import EXIT_FAILED

accept_changed_option = click.option(
    "--accept-changed", is_flag=True, help="Use artefacts whose sha256 no longer matches the manifest's "
    "(changed since export) instead of refusing them; the record names them and their new sha256.")


def stored(result: dict) -> None:
    """After a command has printed its results: the line saying they did not reach the manifest, and
    exit 2 (``manifest.update_or_note`` noted why)."""
    from edgekit.errors import NotStoredError

    if result.get("not_stored"):
        raise NotStoredError(result["not_stored"])


def missing_line(rows: list[dict], run_dir: Path, done: str) -> int:
    """The closing line of a command some of whose artefacts are missing (exit 1), naming them; 0 when
    none is."""
    gone = [r for r in rows if r.get("status") == "missing"]
    if not gone:
        return 0
    names = ", ".join(f"{r['format']} {r['precision']} ({r['missing']})" for r in gone)
    err(f"missing from {run_dir}: {names}; the other artefacts were {done}; export the run again "
        "to have them all")
    return EXIT_FAILED


def target_options(**details: str):
    """--target and --targets-dir, and (with ``cls=TargetCommand``) every connection kind's options
    (``edgekit.devices.options``): where bench and check run. ``details``: the command's own help
    of an option, by profile key (python="the device's Python 3 ...")."""
    options = [
        click.option("--target", default="local-cpu", show_default=True,
                     help="Target profile (see `edgekit targets`)."),
        click.option("--targets-dir", type=click.Path(path_type=Path),
                     help="A folder of extra target profiles."),
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        fn.connection_help = details
        return fn
    return decorate


CONNECTION_PARAM = "connection__"  # the prefix of the connection options' parameter names


class TargetCommand(click.Command):
    """A command with the connection kinds' options after --target, read from the registry each
    time, so that a kind registered later (a plugin, a test) has its options too; the command gets
    them as ``connection__KEY`` keywords (``overrides`` gathers them)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        from edgekit.devices import options

        params = super().get_params(ctx)
        details = getattr(self.callback, "connection_help", {})
        key = tuple(options())
        if getattr(self, "_made", (None,))[0] != key:
            self._made = key, [
                click.Option([o.flag, CONNECTION_PARAM + o.key],
                             type=click.Path(path_type=Path) if o.path else None,
                             help=(f"{labels} targets: " if labels else "") + details.get(o.key, o.help))
                for o, labels in key]
        at = next((i + 1 for i, p in enumerate(params) if p.name == "target"), 0)
        return params[:at] + self._made[1] + params[at:]


def overrides(options: dict) -> dict:
    """The connection options' values out of a command's keywords (taken out): profile key -> value."""
    return {name[len(CONNECTION_PARAM):]: options.pop(name) for name in list(options)
            if name.startswith(CONNECTION_PARAM)}


@click.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@opt("dataset", required=True)
@options("split", "limit")
@opt("input_size", help="Override the input size of the data.")
@opt("task")
@preprocessing_options
@opt("ray", help="Run the model and each artefact on shards of the samples as Ray tasks (pip install "
     "'edgekit[ray]'); auto: the cluster in RAY_ADDRESS or running here, else a local one. Same numbers as "
     "without.")
@opt("target", default=None, help="Score the artefacts as this target runs them: a microcontroller "
     "(cortex-m4-256k, ...) in TensorFlow Lite Micro, each beside LiteRT on the same file; other targets "
     "change nothing.")
@opt("targets_dir")
@accept_changed_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def eval_cmd(run_dir, dataset, split, limit, input_size, task, ray, target, targets_dir, accept_changed,
             as_json, **pre) -> int:
    """Accuracy of the PyTorch model and every artefact of RUN_DIR on the same samples. The run's
    declared preprocessing is used; options given here override it (and are recorded)."""
    from edgekit.measure.evaluate import check_run_dir, evaluate_run
    from edgekit.targets import get_target

    overrides = preprocess_overrides(pre, input_size)
    result = evaluate_run(check_run_dir(run_dir), dataset, split=split, limit=limit,
                          preprocessing_overrides=overrides, report=report, ray=ray, task=task,
                          accept_changed=accept_changed,
                          target=get_target(target, targets_dir) if target else None)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_eval(result)
    return _closing_lines(result, run_dir, "scored")


def print_eval(result: dict) -> None:
    from edgekit.measure.evaluate import table_rows
    from edgekit.measure.metrics import LOWER_IS_BETTER

    head, rows = table_rows(result)
    what = "error" if result["metric"] in LOWER_IS_BETTER else "accuracy"
    title = f"{what} on {result['dataset']} ({result['split']}, {result['samples']} samples)" + (
        f" in {result['runtime']} for {result['target']}" if result.get("target") else "")
    print_table(head, rows, title=title, right=[c for c in head if c not in ("format", "precision")])


@click.command("bench", cls=TargetCommand)
@click.argument("path", type=click.Path(path_type=Path))
@target_options(python="the device's Python 3 with numpy and a runtime.")
@options("threads", "batch", "warmup", "iters", "seconds", "no_torch")
@accept_changed_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench_cmd(path, target, targets_dir, accept_changed, as_json, **options) -> int:
    """Latency, memory and size of every artefact of a run (or of one .onnx/.xml/.tflite file) on a
    target, each in its own process. On an Ethos-U target (ethos-u55-128, ...) they are Vela's
    ESTIMATE of each int8 .tflite instead. Results go into the run's manifest."""
    from edgekit.bench.core import BenchSettings, bench
    from edgekit.targets import get_target

    given = overrides(options)
    settings = BenchSettings.from_mapping(options)
    record = bench(path, get_target(target, targets_dir), settings, given,
                   report=quiet if as_json else report, accept_changed=accept_changed)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        print_bench(record)
    for line in record.get("warnings", []):
        click.echo(f"warning: {line}", err=True)
    for r in record["results"]:
        if r.get("status") == "skipped":
            click.echo(f"skipped {r['format']} {r['precision']}: {r['error']}", err=as_json)
    return _closing_lines(record, path, "timed")


def _closing_lines(record: dict, path, verb: str) -> int:
    """The failed rows' lines, the missing artefacts' line, the not-stored line; the exit code."""
    failed = [r for r in record["results"] if r.get("status") == "failed"]
    for r in failed:
        err(f"{r['format']} {r['precision']}: {r['error']}")
    code = missing_line(record["results"], path, verb) or (EXIT_FAILED if failed else 0)
    stored(record)
    return code


def print_bench(record: dict) -> None:
    from edgekit.bench.report import bench_rows

    head, rows, caption = bench_rows(record)
    left = ("format", "precision", "runtime", "device")
    title = f"latency on {record['target']['name']}" + (
        " (EMULATED: not device latency)" if record.get("emulated") else
        " (ESTIMATED by Vela: not a measurement)" if record.get("estimated") else "")
    print_table(head, rows, title=title, caption=caption, width=170,
                right=[c for c in head if c not in left], no_wrap=True)


@click.command("check", cls=TargetCommand)
@click.argument("path", type=click.Path(path_type=Path))
@target_options(python="the device's Python 3 (3.9 or newer).")
@accept_changed_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check_cmd(path, target, targets_dir, accept_changed, as_json, **options) -> int:
    """Will every artefact of a run (or one model file) run on a target? Asks the device once which
    runtimes it has (one SSH call; nothing is copied), then checks each artefact's op versions,
    IR version or opset against them; on this machine each is also loaded in its runtime and run
    once, as bench will. A microcontroller target (cortex-m4-256k, ethos-u55-128, ...) loads each
    .tflite in TensorFlow Lite Micro here and says whether its tensor arena and bytes fit the part's
    RAM and flash (an Ethos-U: as Vela compiles it). Exit 3 when one will not run or does not fit, or
    is missing or changed since export (it is not what was exported). Stored in the run's manifest."""
    from edgekit.bench.core import make_device
    from edgekit.compat import check
    from edgekit.devices import given_address
    from edgekit.errors import EXIT_DEVICE
    from edgekit.targets import get_target

    chosen, given = get_target(target, targets_dir), overrides(options)
    device = make_device(chosen, given)
    record = check(path, chosen, device, given_address(chosen, given), report=quiet if as_json else report,
                   accept_changed=accept_changed)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        print_check(record, device.name)
    refused = [r for r in record["results"] if r["ok"] is False]
    for r in refused:
        how = "on" if r.get("kind") == "does_not_fit" else "will not run on"  # why: "does not fit: ..."
        err(f"{r['format']} {r['precision']} {how} {device.name}: {r['why']}"
            + (f"; {r['fix']}" if r["fix"] else ""))
    stored(record)
    return EXIT_DEVICE if refused else 0


def print_check(record: dict, where: str) -> None:
    from edgekit.compat import runtimes_line

    head = ("artefact", "needs", "device runtime", "verdict", "why", "fix")
    rows = [(f"{r['format']} {r['precision']}", r.get("summary", ""), r.get("runtime") or "-", r["verdict"],
             r["why"], r["fix"]) for r in record["results"]]
    print_table(head, rows, title=f"will it run on {record['target']['name']} ({where})?", width=150)
    click.echo(f"{where}: {runtimes_line(record['device'])}")


@click.command("inspect")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--samples", type=click.IntRange(1, 10000), default=32, show_default=True,
              help="Samples from the run's calibration source: the val split of labelled data; "
              "else drawn after the calibration samples (an unordered source may repeat some).")
@opt("formats", help="Inspect only these formats, e.g. onnx,openvino.")
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="Worst layers to print.")
@accept_changed_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def inspect_cmd(run_dir, samples, formats, top, accept_changed, as_json) -> int:
    """Where int8 loses accuracy: per layer of each int8 artefact of RUN_DIR, the SQNR and cosine of
    its output against the fp32 artefact's on the same samples, worst first, with the PyTorch module
    it came from. Stored in the manifest; plots in RUN_DIR/report/inspect_<format>.png."""
    from edgekit.formats import parse_formats
    from edgekit.inspect import inspect_run, table_rows
    from edgekit.measure.evaluate import check_run_dir

    chosen = parse_formats(formats) if formats else None
    result = inspect_run(check_run_dir(run_dir), samples=samples, formats=chosen,
                         report=quiet if as_json else report, accept_changed=accept_changed)
    failed = [f for f, r in result["formats"].items() if r.get("status") != "ok"]
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        head, rows = table_rows(result, top)
        print_table(head, rows, title=f"int8 error per layer ({result['samples']} samples), worst first",
                    right=("rank", "SQNR (dB)", "cosine"), width=140)
    stored(result)
    return EXIT_FAILED if failed else 0
