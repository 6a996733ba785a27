"""The interface of a connection kind: how the benchmark runner reaches where it runs.

A device copies the runner (edgekit/bench/runner.py) and the model files somewhere it can run
them, runs the runner once per model file in a fresh process, and returns the runner's JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import DeviceError

RUNNER = Path(__file__).resolve().parent.parent / "bench" / "runner.py"
PROBE = Path(__file__).resolve().parent.parent / "compat" / "probe.py"  # what runtimes a device has
PROBE_MARKER = "EDGEKIT_PROBE "  # the probe's own copy must agree (it imports nothing from edgekit)


def parse_result(stdout: str, stderr: str, returncode: int, where: str) -> dict:
    """The runner's result line, or a failure that says how the runner died."""
    from edgekit.bench.runner import RESULT_MARKER

    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return json.loads(line[len(RESULT_MARKER):])
            except json.JSONDecodeError:
                break
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:] if line.strip())
    signum = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 160 else None
    how = f"killed by signal {signum}" if signum else f"exit status {returncode}"
    if signum:
        import signal

        try:
            how += f", {signal.Signals(signum).name}"
        except ValueError:
            pass
    return {"status": "failed", "kind": "crashed",
            "error": f"the runner died on {where} ({how}) without a result" + (f": {tail}" if tail else "")}


@dataclass(frozen=True)
class Key:
    """A profile key of a connection kind, with its type and its value when the profile leaves it out."""

    name: str
    type: type = str  # str, int, bool or list (of strings)
    default: object = None
    path: bool = False  # a file: ~ expanded, relative to the profile's folder


@dataclass(frozen=True)
class Option:
    """A command-line option of ``bench`` and ``check`` (and a recipe's [[bench]] key) that replaces
    a profile key's value for one run: ``--python`` replaces ``python``."""

    key: str  # the profile key it replaces; the option is --KEY (dashes for underscores)
    help: str
    path: bool = False  # a file: relative to the current folder (a recipe's: to the recipe's)

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


_TYPES = {str: "a string", int: "an integer", bool: "true or false", list: "a list of strings"}


class Device:
    """Base class: ``stage(files)`` once, ``run(spec)`` per model file, ``close()`` at the end.

    The class attributes and classmethods are the connection kind's facts: its ``connect`` name
    in target profiles, whether it is this machine, the profile keys it reads and checks, the
    command-line options that replace them for one run, and how it is built from those values.
    """

    name = "device"
    connect: str = ""  # the profile's `connect = "..."`
    this_machine: bool = False  # runs here (so the PyTorch baseline is comparable)
    label: str = ""  # for help ("<label> targets: ..."); "" for this machine
    how: str = ""  # "<target> ...", after an option of another kind: "runs on this machine"
    keys: tuple[Key, ...] = ()  # profile keys only this kind reads
    options: tuple[Option, ...] = ()  # command-line options that replace some of them
    address_key: str | None = None  # the key that names the device: listed, and part of a
    # bench record's name (NAME@VALUE) when the command line gives another one
    # No runner runs there (a microcontroller): check, bench and eval judge its artefacts on this
    # machine with the kind's own tools (edgekit.mcu) instead of stage/run.
    judged_here: bool = False
    runs_formats: tuple[str, ...] | None = None  # the only formats it can run (None: any)
    vela = False  # judged here with an Ethos-U NPU's compiler (Vela), which estimates its latency

    @classmethod
    def read_profile(cls, data: dict, where: str, folder: Path) -> dict:
        """This kind's keys of a profile, type-checked, defaults filled in (one-line UsageError)."""
        from edgekit.errors import UsageError

        values = {}
        for key in cls.keys:
            value = data.get(key.name, key.default)
            if key.name in data:
                ok = isinstance(value, key.type) and not (key.type is int and isinstance(value, bool))
                if ok and key.type is list:
                    ok = all(isinstance(v, str) for v in value)
                if not ok:
                    what = _TYPES.get(key.type, key.type.__name__)
                    raise UsageError(f"{where}: {key.name} must be {what}, got {value!r}")
                if key.path:
                    value = str(folder / Path(value).expanduser())
            values[key.name] = list(value) if isinstance(value, (list, tuple)) else value
        cls.check_profile(values, where)
        return values

    @classmethod
    def check_profile(cls, values: dict, where: str) -> None:
        """Refuse values this kind cannot honour (one-line UsageError): the profile's, and again
        with the command line's options in."""

    @classmethod
    def from_values(cls, target, values: dict) -> Device:
        """The device for ``target``, from its profile's values with the command line's options in."""
        raise NotImplementedError

    def stage(self, files: dict[str, list[Path]]) -> dict[str, str]:
        """Make each key's files runnable; return key -> path of its main file where it runs."""
        raise NotImplementedError

    def run(self, spec: dict, timeout: float) -> dict:
        raise NotImplementedError

    def probe(self, args: list[str] = (), timeout: float = 120) -> dict:
        """Run the probe (``edgekit/compat/probe.py``) once where the artefacts would run; return its
        JSON: Python, numpy and the runtimes with their versions. Copies nothing."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_probe(stdout: str, stderr: str, returncode: int, where: str, python: str) -> dict:
    """The probe's JSON line, or a DeviceError that says why there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(PROBE_MARKER):
            try:
                return json.loads(line[len(PROBE_MARKER):])
            except json.JSONDecodeError:
                break
    if returncode == 127:
        raise DeviceError(f"{python} was not found on {where}; pass --python with the device's Python 3 "
                          "(one with numpy and a runtime)")
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:] if line.strip())
    raise DeviceError(f"could not ask {where} for its runtimes ({python} exited with status {returncode})"
                      + (f": {tail}" if tail else ""), hint="pass --python with a Python 3.9 or newer")


def check_no_device_everywhere(results: list[dict], target_name: str) -> None:
    """An accelerator target where no artefact ran on its device: say so, never a silent CPU run."""
    tried = [r for r in results if r.get("status") != "skipped"]
    if tried and not any(r.get("status") == "ok" for r in tried) and any(
        r.get("kind") in ("no_device", "no_runtime") for r in tried
    ):
        missing = [r["error"] for r in tried if r.get("kind") in ("no_device", "no_runtime")]
        reasons = "; ".join(dict.fromkeys(missing))
        raise DeviceError(f"no usable GPU for target {target_name}: {reasons}",
                          hint="use --target local-cpu to bench on the CPU")


def check_runtime_somewhere(results: list[dict], where: str) -> None:
    tried = [r for r in results if r.get("status") != "skipped"]
    if tried and all(r.get("kind") == "no_runtime" for r in tried):
        reasons = "; ".join(dict.fromkeys(r["error"] for r in tried))
        raise DeviceError(f"{where} has no usable runtime: {reasons}")
