"""Run the benchmark runner on this machine, one fresh Python process per model file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgekit.devices.base import PROBE, RUNNER, Device, Key, Option, parse_probe, parse_result
from edgekit.errors import DeviceError


class LocalDevice(Device):
    name = "this machine"
    connect = "local"
    this_machine = True

    how = "runs on this machine"
    keys = (Key("python"),)  # None: the Python that runs edgekit
    options = (Option("python", "the Python 3 that runs the artefacts (default: edgekit's own)."),)

    @classmethod
    def from_values(cls, target, values: dict) -> Device:
        return cls(values.get("python"))

    def __init__(self, python: str | None = None):
        self.python = python or sys.executable

    def stage(self, files: dict[str, list[Path]]) -> dict[str, str]:
        return {key: str(Path(paths[0]).resolve()) for key, paths in files.items()}

    def run(self, spec: dict, timeout: float) -> dict:
        return run_process([self.python, str(RUNNER), "-"], spec, timeout, self.name)

    def probe(self, args: list[str] = (), timeout: float = 120) -> dict:
        try:
            done = subprocess.run([self.python, str(PROBE), *args], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.python} did not answer within {timeout:.0f} s while listing its "
                              "runtimes") from None
        except OSError as exc:
            raise DeviceError(f"cannot start {self.python} on {self.name} ({exc.strerror})",
                              hint="pass --python with a Python 3 that has numpy and a runtime") from None
        return parse_probe(done.stdout, done.stderr, done.returncode, self.name, self.python)


def run_process(command: list[str], spec: dict, timeout: float, where: str) -> dict:
    try:
        done = subprocess.run(command, input=json.dumps(spec), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "kind": "timeout",
                "error": f"the runner did not finish within {timeout:.0f} s; pass fewer --iters/--seconds"}
    except OSError as exc:  # the interpreter itself is missing or not executable
        return {"status": "failed", "kind": "no_runtime",
                "error": f"cannot start {command[0]} on {where} ({exc.strerror}); pass --python with a "
                         "Python 3 that has numpy and a runtime"}
    return parse_result(done.stdout, done.stderr, done.returncode, where)
