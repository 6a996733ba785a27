"""What the commands share: option groups, the preprocessing and pruning options turned into
settings, output (one table printer, progress lines, one-line errors).

Option values become settings through the settings classes' ``from_mapping`` (``edgekit.settings``),
so a command passes its options on by name and checks nothing itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import click


def err(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def report(line: str) -> None:
    """Progress lines on stdout; warnings and failures on stderr."""
    click.echo(line, err=line.startswith(("warning", "FAILED")))


def quiet(line: str) -> None:
    """The reporter of a command that prints JSON."""


@contextlib.contextmanager
def library_noise_to_debug(debug: bool) -> Iterator[None]:
    """Around a command: what third-party libraries say on their own is dropped unless ``--debug``:
    Python warnings, log lines at WARNING and below (torchao's "Failed to load ...so", torch's pytree
    deprecation), what native code writes to file descriptor 2 (TF Lite's "Created XNNPACK
    delegate") or sends to ``sys.stderr`` from C++ (ExecuTorch's cpuinfo lines). edgekit's own lines
    (``click.echo``) still reach stderr. Where stderr is not the process's fd 2 (the CLI run inside
    a test, its output captured), stderr is left alone."""
    import os
    import sys

    # --debug, or Python asked to report imports on stderr (-X importtime): nothing is hidden
    if debug or "importtime" in sys._xoptions or os.environ.get("PYTHONPROFILEIMPORTTIME"):
        yield
        return
    import logging
    import warnings

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # edgekit itself logs only at DEBUG (shown with --debug)
    try:
        with warnings.catch_warnings(), _stderr_for_click_only():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


class _ClickOnly:
    """``sys.stderr`` during a command: writes made by click (``click.echo(..., err=True)``, which
    edgekit's ``err`` and ``report`` use) go to the real stderr, everything else is dropped."""

    def __init__(self, real):
        self._real = real

    def write(self, text: str) -> int:
        import sys

        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == "click" or caller.startswith("click."):
            return self._real.write(text)
        return len(text)

    def __getattr__(self, name: str):  # flush, encoding, isatty, fileno (the real one) ...
        return getattr(self._real, name)


@contextlib.contextmanager
def _stderr_for_click_only() -> Iterator[None]:
    """fd 2 to /dev/null and ``sys.stderr`` a ``_ClickOnly`` over a copy of the real fd 2 (spawned
    workers inherit the /dev/null; the benchmark runner and the probe capture their own output)."""
    import os
    import sys

    try:
        ours = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.StringIO and the like: a captured stderr
        ours = False
    if not ours:
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)  # left open: handlers made meanwhile (torch's) may still hold the stream
    saved = sys.stderr
    stream = open(real, "w", buffering=1, encoding=saved.encoding, errors="backslashreplace",  # noqa: SIM115
                  closefd=False)
    sys.stderr = _ClickOnly(stream)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        stream.flush()
        sys.stderr = saved
        os.dup2(real, 2)


def print_table(head: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None,
                caption: str | None = None, right: Iterable[str] = (), width: int = 100,
                no_wrap: bool = False) -> None:
    """A rich table of ``rows`` under ``head``; the columns named in ``right`` are right-aligned.
    The console is at least ``width`` characters wide, so that a narrow terminal keeps the rows."""
    from rich.console import Console
    from rich.table import Table

    right = set(right)
    table = Table(title=title, caption=caption)
    for col in head:
        table.add_column(col, justify="right" if col in right else "left", no_wrap=no_wrap)
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, width)).print(table)


class TableOption(click.Option):
    """A click option made from the option table (``opt``); remembers its key. A default that is a
    function is called for ``--help`` too, which then shows the value rather than click's "(dynamic)"."""

    def __init__(self, *args, table_key: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.table_key = table_key

    def get_default(self, ctx: click.Context, call: bool = True):
        return super().get_default(ctx, call=True)


_MULTIPLE = ("texts", "shape")
_PRESENTATION = ("help", "metavar", "required", "default")


def opt(key: str, *decls: str, **overrides) -> Callable:
    """The click option of ``key`` from the option table (``edgekit.options``): its ``--flag``, type
    with range or choices, default and help; ``@opt("calib_size")``. ``decls``: other flag and
    parameter names (``opt("ratio", "--prune", "prune")``); ``overrides``: a command's own help,
    metavar, ``required``, or ``default=None`` (no default here: the command chooses later). Kind
    and range are the table's alone."""
    from edgekit.options import OPTIONS

    option = OPTIONS[key]
    if set(overrides) - set(_PRESENTATION) or overrides.get("default", None) is not None:
        raise TypeError(f"opt({key!r}) may change only {', '.join(_PRESENTATION)} (to None)")
    default = overrides.pop("default", option.default)
    kwargs = {"help": option.help_text(), "metavar": option.metavar, **overrides}
    if option.kind == "flag":
        kwargs["is_flag"] = True
    else:
        kwargs.update(type=option.click_type(), multiple=option.kind in _MULTIPLE)
        if default is not None:
            kwargs.update(default=default, show_default=True)
    return click.option(*(decls or (f"--{option.name}",)), cls=TableOption, table_key=key,
                        **{k: v for k, v in kwargs.items() if v is not None})


def options(*keys: str) -> Callable:
    """Several table options, listed in ``--help`` in the order given: ``@options("batch", "warmup")``."""
    def decorate(f: Callable) -> Callable:
        for key in reversed(keys):
            f = opt(key)(f)
        return f
    return decorate


def prune_options(f: Callable) -> Callable:
    """--method, --scope, --keep, --round-to, --finetune-epochs, --finetune-lr, --dataset: the
    ``PruneSettings`` keys besides the ratio (``prune --ratio``, ``export --prune``)."""
    f = opt("dataset", metavar="DATASET", help="Fine-tune on this dataset after pruning (digits, shapes, "
            "reber or a path).")(f)
    return options("method", "scope", "keep", "round_to", "finetune_epochs", "finetune_lr")(f)


def prune_settings(options: dict, ratio: float | None, required: bool = True):
    """``PruneSettings`` from the pruning options (popped from ``options``) and ``ratio``; with
    ``required=False``, None when no ratio was given."""
    from dataclasses import fields

    from edgekit.export.prune import PruneSettings

    keys = [f.name for f in fields(PruneSettings) if f.name != "ratio"]
    given = {k: options.pop(k) for k in keys if k in options}
    return PruneSettings.from_mapping({**given, "ratio": ratio}, required=required)


def preprocessing_options(f: Callable) -> Callable:
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
                     help="Multiply raw values (pixels; integer IDX/.npy values of a non-image input) by "
                     "this before mean/std (default 1/255); float arrays count as preprocessed.")(f)
    f = click.option("--mean", help="Per-channel mean after scaling, e.g. 0.1307 or 0.485,0.456,0.406.")(f)
    f = click.option("--std", help="Per-channel std, e.g. 0.3081 or 0.229,0.224,0.225.")(f)
    f = click.option("--grayscale/--rgb", default=None, help="Grey or RGB input.")(f)
    return f


PREPROCESS_PARAMS = ("preprocess_file", "layout", "interpolation", "crop_fraction", "resize", "scale", "mean",
                     "std", "grayscale")


def preprocess_overrides(options: dict, input_size: int | None = None) -> dict | None:
    """The declared preprocessing overrides from the options of ``preprocessing_options`` (popped
    from ``options``), or None when none was given."""
    from edgekit.data.preprocess import merge_overrides
    from edgekit.settings import parse_floats

    values = {k: options.pop(k, None) for k in PREPROCESS_PARAMS}
    file = values.pop("preprocess_file")
    values["mean"] = parse_floats(values["mean"], "--mean")
    values["std"] = parse_floats(values["std"], "--std")
    if values["layout"]:
        values["layout"] = values["layout"].upper()
    merged = merge_overrides(file, input_size=input_size, **values)
    return merged or None
