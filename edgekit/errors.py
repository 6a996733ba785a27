"""Typed errors: each carries a one-line message that says what to do next, and an exit code."""

from __future__ import annotations

EXIT_USAGE = 2  # a mistake in what the user asked for (bad option, bad file, bad data)
EXIT_FAILED = 1  # the work ran but part of it failed (e.g. one format did not export or verify)
EXIT_DEVICE = 3  # the target cannot be used: unreachable, refused, no runtime, no GPU
EXIT_GATE = 4  # `edgekit gate`: a rule failed (or its measurement is missing)


class EdgekitError(Exception):
    """Base class. ``str(err)`` is the one line shown to the user."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class UsageError(EdgekitError):
    """Bad option values or combinations."""


class UnknownNameError(UsageError):
    """A name (model, format, dataset) that no registry knows."""


class WeightsError(UsageError):
    """A weights file that cannot be read or does not fit the model."""


class DataError(UsageError):
    """Calibration or evaluation data that cannot be used."""


class MissingDependencyError(UsageError):
    """An optional runtime or converter is not installed."""

    def __init__(self, package: str, extra: str):
        super().__init__(
            f"{package} is not installed",
            hint=f"install it with: pip install 'edgekit[{extra}]'",
        )


class OutputExistsError(UsageError):
    """Refuse to overwrite an earlier run."""


class ExportError(EdgekitError):
    """A conversion, quantization or verification step failed."""

    exit_code = EXIT_FAILED


class DeviceError(EdgekitError):
    """A target that cannot be reached or cannot run the artefacts."""

    exit_code = EXIT_DEVICE


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (a cancelled CI job, ``kill``, a closed terminal): raised by the CLI's
    signal handler (``edgekit.interrupts``) so that the stack unwinds like Ctrl-C's KeyboardInterrupt
    (``finally`` blocks remove staging folders, child processes are stopped). A BaseException, so that
    ``except Exception`` never swallows it."""

    def __init__(self, signum: int = 15):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


class DiskFull(EdgekitError):
    """No space left where the run writes: one line naming the device, what is free and needed."""

    exit_code = EXIT_FAILED


def require(module: str, package: str, extra: str):
    """Import ``module`` or raise MissingDependencyError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the package
        raise MissingDependencyError(package, extra) from exc


class NotStoredError(UsageError):
    """The results were computed but the run directory could not take them (read-only, not ours, full):
    the command prints them first, then this line (``edgekit.runs.manifest.update`` raises it)."""


class ArtefactChangedError(UsageError):
    """An artefact's file no longer has the sha256 the manifest recorded at export."""
