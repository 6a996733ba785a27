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

import click

from edgekit import __version__
from edgekit.cli.ci import baseline_cmd, clean_cmd, gate_cmd, report_cmd, run_cmd
from edgekit.cli.common import err, library_noise_to_debug
from edgekit.cli.export import export_cmd, prune_cmd, train_cmd
from edgekit.cli.listing import models_cmd, targets_cmd
from edgekit.cli.measure import bench_cmd, check_cmd, eval_cmd, inspect_cmd
from edgekit.errors import EXIT_FAILED, EdgekitError, Terminated


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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    previous = _stop_on_sigterm()
    try:
        with library_noise_to_debug(debug):  # third-party warnings and native stderr: --debug only
            rv = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except click.exceptions.Abort:
        err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EdgekitError as exc:
        if debug:
            traceback.print_exc()
        err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err("interrupted; nothing was written to the output directory")
        sys.exit(130)
    except Terminated as exc:  # like Ctrl-C: the stack has unwound, staging folders are gone
        out = getattr(exc, "untouched", None)
        click.echo(f"edgekit: stopped by SIGTERM; nothing was written to {out or 'the output directory'}",
                   err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug of ours or of a library: short line, traceback with --debug
        if debug:
            raise
        err(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        sys.exit(EXIT_FAILED)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(rv if isinstance(rv, int) else 0)


def _stop_on_sigterm():
    """Make SIGTERM raise ``Terminated`` in the main thread (once: a second SIGTERM during the clean-up
    is ignored, so the clean-up finishes; SIGKILL still stops us). Returns the previous handler."""

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # main() called from a thread other than the main one: leave SIGTERM alone
        return None
