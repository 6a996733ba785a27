"""The ``edgekit`` command line: the click group and ``main``, which maps errors to exit codes.

The commands live in the modules beside this one (``export``: export, prune, train; ``measure``:
eval, bench, check, inspect; ``ci``: gate, baseline, report, run, clean; ``listing``: models, targets) and are
added to the group here; what they share is in ``common``. Options become settings through the
settings classes' ``from_mapping`` (``edgekit.settings``), as recipes' keys do.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path

import click

from edgekit import __version__, interrupts
from edgekit.cli.ci import baseline_cmd, clean_cmd, gate_cmd, report_cmd, run_cmd
from edgekit.cli.common import err, library_noise_to_debug
from edgekit.cli.export import export_cmd, prune_cmd, train_cmd
from edgekit.cli.listing import models_cmd, targets_cmd
from edgekit.cli.measure import bench_cmd, check_cmd, eval_cmd, inspect_cmd
from edgekit.errors import EXIT_FAILED, EdgekitError, Terminated
from edgekit.runs import diskspace


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


for _command in (models_cmd, export_cmd, eval_cmd, train_cmd, bench_cmd, targets_cmd, prune_cmd, gate_cmd,
                 baseline_cmd, report_cmd, inspect_cmd, run_cmd, clean_cmd, check_cmd):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "2")
    own_process = argv is None  # the `edgekit` command, not a caller inside another program
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    with interrupts.installed():  # SIGINT, SIGTERM, SIGHUP: recorded, raised, re-delivered if lost
        try:
            code = _run(argv, debug)
        finally:  # the export workers kept warm for a next export (edgekit.export.pool): none outlives us
            if own_process and "edgekit.export.pool" in sys.modules:
                sys.modules["edgekit.export.pool"].POOL.shutdown()
        if own_process:  # the work is over and its exit code known: a signal now must not kill the exit
            interrupts.ignore_further()
    sys.exit(code)


def _run(argv: list[str], debug: bool) -> int:
    """The command's exit code, its errors shown as one line."""
    try:
        with library_noise_to_debug(debug):  # third-party warnings and native stderr: --debug only
            rv = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
        cause = exc.__cause__ or exc.__context__
        return _stopped(getattr(cause, "signum", None) or interrupts.received() or signal.SIGINT,
                        getattr(cause, "untouched", None))
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except EdgekitError as exc:
        if debug:
            traceback.print_exc()
        err(str(exc))
        return exc.exit_code
    except (KeyboardInterrupt, Terminated) as exc:  # the stack has unwound: staging folders are gone
        signum = getattr(exc, "signum", None) or interrupts.received() or signal.SIGINT
        return _stopped(signum, getattr(exc, "untouched", None))
    except OSError as exc:
        if diskspace.is_full(exc):  # the staging folder is gone already
            err(str(diskspace.disk_full(Path(exc.filename or "."))))
            return EXIT_FAILED
        return _internal(exc, debug)
    except Exception as exc:  # a bug of ours or of a library: short line, traceback with --debug
        return _internal(exc, debug)
    return rv if isinstance(rv, int) else 0


def _stopped(signum: int, untouched) -> int:
    """edgekit: stopped by SIGTERM; nothing was written to runs/x"""
    kept = (f"nothing was written to {untouched}" if untouched
            else "the step under way stored nothing; what earlier steps stored is kept")
    click.echo(f"edgekit: stopped by {interrupts.signal_name(signum)}; {kept}", err=True)
    return 128 + signum


def _internal(exc: Exception, debug: bool) -> int:
    if debug:
        raise exc
    err(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
    return EXIT_FAILED
