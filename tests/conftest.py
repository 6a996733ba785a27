"""Shared fixtures: run the real `edgekit` CLI in a child process, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900) -> Result:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or REPO, env=full_env, timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


@pytest.fixture
def cli():
    return run_cli


def loaded_model(module, shape, static=True, task="classification", layout="NCHW"):
    """A small ``nn.Module`` as the ``LoadedModel`` the format classes take (for unit tests)."""
    from edgekit.models.spec import InputSpec, LoadedModel, Preprocessing

    return LoadedModel(
        name="tiny", module=module.eval(), task=task, input_spec=InputSpec(shape, layout=layout),
        preprocessing=Preprocessing(), num_classes=10, options={},
        params=sum(p.numel() for p in module.parameters()), macs=0, weights=None,
        builtin_calibration=None, static_int8=static,
    )


@pytest.fixture(scope="session")
def old_pi_python(tmp_path_factory):
    """A Python like many Raspberry Pis have: numpy<2 and the old tflite-runtime 2.14, nothing else."""
    venv = tmp_path_factory.mktemp("old-pi") / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "numpy==1.26.4",
                          "tflite-runtime==2.14.0"], capture_output=True, text=True)
    if pip.returncode != 0:
        if os.environ.get("EDGEKIT_REQUIRE_SSHD"):  # CI: the registry is reachable, so this must work
            raise RuntimeError(f"could not install tflite-runtime 2.14: {pip.stderr[-500:]}")
        pytest.skip("tflite-runtime 2.14 could not be installed (no package registry?)")
    return str(venv / "bin" / "python")


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "300"])
    yield p.pid
    p.kill()
    p.wait()
