"""Shared fixtures: run the real `edgekit` CLI (in this process, or in a child process where a test
needs one), and the expensive things many tests read, built once per session."""

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


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900,
            process: bool = False) -> Result:
    """Run ``edgekit ARGS`` and return its exit code and output.

    By default the CLI runs in this process (``edgekit.cli.main``, exactly what the console script
    calls), which saves the ~5 s of importing torch and the converters per call. Exports convert
    in worker processes (side by side: a 40% shorter export of a model with many layers on 2
    cores), which the session keeps warm from one export to the next (``export_workers``).
    ``process=True`` runs a real child process, for what needs one: signals, a separate
    interpreter's state. ``EDGEKIT_TEST_PROCESS=1`` runs every call in a child process.
    """
    if process or os.environ.get("EDGEKIT_TEST_PROCESS") == "1":
        return _run_process(args, cwd, env, timeout)
    return _run_here(args, cwd, env)


def _run_process(args, cwd, env, timeout) -> Result:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or REPO, env=full_env, timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _run_here(args, cwd, env) -> Result:
    """``main(args)`` in this process with its stdout and stderr captured (Python-level: C++ logs of
    the runtimes are not seen, as they are not in a terminal's stderr that the tests read), and
    everything a command may change put back afterwards: the working folder, the environment,
    torch's thread count, modules imported from the test's own files."""
    import contextlib
    import io

    from edgekit.cli import main

    saved_env, saved_cwd, saved_modules = dict(os.environ), os.getcwd(), set(sys.modules)
    threads = _torch_threads()
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.chdir(cwd or REPO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        _torch_threads(threads)
        _forget_test_modules(saved_modules)
    return Result(code, out.getvalue(), err.getvalue())


def _torch_threads(n: int | None = None) -> int | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _forget_test_modules(before: set[str]) -> None:
    """Drop modules a command imported from outside the installed packages and this repository
    (a test's model files), so that the next test's file of the same name is imported afresh."""
    keep = (sys.prefix, sys.base_prefix, str(REPO))
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if name.startswith("edgekit_user_") or (file and not file.startswith(keep)):
            sys.modules.pop(name, None)


def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session", autouse=True)
def export_workers():
    """The in-process CLI's exports reuse their worker processes (edgekit.export.pool): the session
    imports the converters once, not per export; they are stopped when the session ends."""
    yield
    pool = sys.modules.get("edgekit.export.pool")
    if pool is not None:
        pool.POOL.shutdown()


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


# ---------------------------------------------------------------- built once per session
# What many tests read: a trained LeNet-5 and int8 runs of every format. Each is built once; tests
# only read them. A test that writes into a run (bench, eval, gate and report add to its manifest)
# works on its own copy: ``copy_run``.


@dataclass(frozen=True)
class Built:
    path: Path
    result: Result  # what the command that built it printed


def _build(tmp_path_factory, name: str, *args: str) -> Built:
    out = tmp_path_factory.mktemp(name) / (name + (".pt" if args[0] == "train" else ""))
    r = run_cli(*args, "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    return Built(out, r)


def copy_run(built: Built | Path, dest: Path) -> Path:
    """A copy of a shared run at ``dest`` (which must not exist), for a test that writes into it."""
    import shutil

    shutil.copytree(getattr(built, "path", built), dest)
    return dest


@pytest.fixture(scope="session")
def lenet5_ckpt(tmp_path_factory) -> Built:
    """LeNet-5 trained on real handwritten digits (scikit-learn's, 8 epochs; about 97% test top-1)."""
    return _build(tmp_path_factory, "lenet5", "train", "lenet5", "--dataset", "digits", "--epochs", "8")


@pytest.fixture(scope="session")
def lenet5_run(tmp_path_factory, lenet5_ckpt) -> Built:
    """That checkpoint exported to every default format, fp32 and int8 (16 calibration digits), with
    accuracy on the digits' test split (the same in a real process: `make gate` runs one)."""
    return _build(tmp_path_factory, "lenet5-run", "export", lenet5_ckpt.path, "--int8", "--calib-size", "16",
                  "--eval", "digits")


@pytest.fixture(scope="session")
def lstm_run(tmp_path_factory) -> Built:
    """The zoo LSTM (Embedded Reber grammar) exported to every default format, fp32 and int8."""
    return _build(tmp_path_factory, "lstm-run", "export", "lstm", "--int8", "--calib-size", "16")


TINY_RESNET = ("--width", "0.25", "--input-size", "64", "--num-classes", "10")


@pytest.fixture(scope="session")
def resnet_tiny_run(tmp_path_factory) -> Built:
    """ResNet-50's real architecture at a quarter of its width on 64x64 inputs, every format, int8."""
    return _build(tmp_path_factory, "resnet-tiny-run", "export", "resnet50", *TINY_RESNET, "--int8",
                  "--calib-size", "16")
