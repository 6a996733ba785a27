"""`edgekit check`: will each artefact run there? On this machine, and over the real OpenSSH server of
sshd.py against this machine's Python and against an old Pi's (tflite-runtime 2.14, numpy 1.26).

``ssh`` and ``scp`` are wrapped (first on PATH) by scripts that log each call and the files a copy
takes, then run the real client: the probe must be one ssh call, and a check must copy nothing."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from edgekit.runs.manifest import sha256_file
from tests.conftest import read_manifest, run_cli
from tests.unit.test_compat import with_op_version

WRAPPER = """#!/bin/sh
for a in "$@"; do [ -d "$a" ] && find -L "$a" -type f >> "$EDGEKIT_TEST_SSH_LOG"; done
echo "{tool} $*" >> "$EDGEKIT_TEST_SSH_LOG"
exec {real} "$@"
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("check-run") / "run"
    r = run_cli("export", "lenet5", "--out", out)
    assert r.code == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def newer_run(run_dir, tmp_path_factory):
    """The run with its fp32 TFLite file made to need FULLY_CONNECTED v13 (TF Lite 2.18), as a newer
    converter writes it; the manifest records that file, so bench trusts it."""
    out = tmp_path_factory.mktemp("newer") / "run"
    shutil.copytree(run_dir, out)
    path = out / "tflite" / "model.fp32.tflite"
    with_op_version(run_dir / "tflite" / "model.fp32.tflite", path, "FULLY_CONNECTED", 13)
    manifest = read_manifest(out)
    for art in manifest["artefacts"]:
        if art["format"] == "tflite" and art["precision"] == "fp32":
            art["sha256"] = sha256_file(path)
            for entry in art.get("files", []):
                entry["sha256"] = sha256_file(path)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def test_everything_runs_here_and_the_manifest_records_it(run_dir):
    r = run_cli("check", run_dir, "--target", "local-cpu")
    assert r.code == 0, r.stderr
    assert "will it run on local-cpu" in r.stdout and "runtimes: onnxruntime" in r.stdout
    record = read_manifest(run_dir)["check"]["local-cpu"]
    formats = {x["format"] for x in record["results"]}
    assert {"onnx", "tflite", "openvino", "executorch"} <= formats
    assert all(x["verdict"] == "runs" for x in record["results"]), record["results"]
    assert record["device"]["runtimes"]["onnxruntime"]["version"]
    # on this machine each was loaded in its runtime and run once, as bench will
    assert all(x["loaded"]["runtime"] and "ran once here" in x["why"] for x in record["results"])


def _tensor_buffers_out_of_range(src, dst):
    """A copy of a real .tflite whose tensors point at a buffer that does not exist: a damaged
    third-party file. Its op codes and versions are untouched, so reading them says it runs."""
    import struct

    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(src.read_bytes())
    graph = schema.Model.GetRootAs(buf, 0).Subgraphs(0)
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        offset = tensor._tab.Offset(8)  # Tensor.buffer
        if offset:
            struct.pack_into("<I", buf, tensor._tab.Pos + offset, 9999)
    dst.write_bytes(bytes(buf))
    return dst


def test_a_file_its_runtime_cannot_load_never_runs_here(run_dir, tmp_path):
    """What the file says is not enough on this machine: a damaged file and one with an op this
    runtime lacks are loaded, fail, and are "will not run" in one line each, as bench then finds."""
    source = run_dir / "tflite" / "model.fp32.tflite"
    damaged = _tensor_buffers_out_of_range(source, tmp_path / "damaged.tflite")
    r = run_cli("check", damaged, "--json")
    assert r.code == 3 and "Traceback" not in r.stderr, r.stdout + r.stderr
    (row,) = json.loads(r.stdout)["results"]
    assert row["verdict"] == "will not run" and row["kind"] == "load_failed"
    assert row["summary"].startswith("TF Lite >= ")  # the op table alone would have said it runs
    (line,) = r.error_lines
    assert "tflite file will not run on this machine: ai-edge-litert" in line
    assert "cannot load and run it here: ValueError: Tensor 0 specifies out of range buffer 9999" in line
    r = run_cli("bench", damaged, "--iters", "1", "--warmup", "0")
    assert r.code == 1 and "out of range buffer 9999" in r.stderr  # bench agrees

    # an op version no runtime has
    newer = with_op_version(source, tmp_path / "newer.tflite", "FULLY_CONNECTED", 99)
    r = run_cli("check", newer)
    assert r.code == 3
    (line,) = r.error_lines
    assert "cannot load and run it here" in line and "FULLY_CONNECTED" in line


def test_a_bad_path_is_one_line():
    r = run_cli("check", "/nonexistent/run")
    assert r.code == 2 and "Traceback" not in r.stderr
    (line,) = r.error_lines
    assert "does not exist" in line


@pytest.fixture
def logged(tmp_path):
    """(env with logging ssh/scp first on PATH, the log)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("ssh", "scp"):
        (folder / tool).write_text(WRAPPER.format(tool=tool, real=shutil.which(tool)))
        (folder / tool).chmod(0o755)
    log = tmp_path / "ssh.log"
    log.write_text("")
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "EDGEKIT_TEST_SSH_LOG": str(log)}, log


def over_ssh(command, server, run, env, python=sys.executable, *extra):
    return run_cli(command, run, "--target", "raspberrypi", "--host", server.host, "--ssh-config",
                   server.config, "--python", python, *extra, env=env)


def test_check_over_ssh_asks_once_and_copies_nothing(server, run_dir, logged):
    env, log = logged
    r = over_ssh("check", server, run_dir, env)
    assert r.code == 0, r.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("ssh ")
    assert f"{sys.executable} - --runtimes " in calls[0]  # the probe on stdin, asked for what formats run on
    assert calls[0].endswith(" --executorch-ops")
    record = read_manifest(run_dir)["check"][f"raspberrypi@{server.host}"]
    assert all(x["verdict"] == "runs" for x in record["results"]), record["results"]
    assert record["device"]["runtimes"]["executorch"]["operators"]  # read on the "device"


def test_a_newer_op_version_will_not_run_on_the_old_pi(server, newer_run, logged, old_pi_python):
    env, log = logged
    r = over_ssh("check", server, newer_run, env, old_pi_python)
    assert r.code == 3 and "Traceback" not in r.stderr
    (line,) = [x for x in r.error_lines if "tflite fp32" in x]
    assert ("FULLY_CONNECTED v13 needs TF Lite >= 2.18.0; the device has tflite-runtime 2.14.0; "
            "install ai-edge-litert >= 1.2 on the device") in line
    assert not [x for x in r.error_lines if "tflite int8" in x]
    assert len(log.read_text().splitlines()) == 1  # one ssh call, no scp
    rows = {(x["format"], x["precision"]): x for x in
            read_manifest(newer_run)["check"][f"raspberrypi@{server.host}"]["results"]}
    assert rows[("tflite", "fp32")]["kind"] == "incompatible"
    assert rows[("onnx", "fp32")]["kind"] == "no_runtime"  # the old Pi has no onnxruntime


def test_bench_does_not_copy_what_will_not_run(server, newer_run, logged, old_pi_python):
    env, log = logged
    r = over_ssh("bench", server, newer_run, env, old_pi_python, "--iters", "5")
    assert r.code == 1 and "Traceback" not in r.stderr  # one artefact failed: the incompatible one
    text = log.read_text()
    assert "model.fp32.onnx" in text  # the others were copied (and skipped there: no onnxruntime)
    assert "model.fp32.tflite" not in text
    rows = {(x["format"], x["precision"]): x for x in
            read_manifest(newer_run)["bench"][f"raspberrypi@{server.host}"]["results"]}
    row = rows[("tflite", "fp32")]
    assert row["status"] == "failed" and row["kind"] == "incompatible"
    assert "FULLY_CONNECTED v13 needs TF Lite >= 2.18.0" in row["error"]
    assert "ai-edge-litert >= 1.2" in row["error"]
    assert rows[("onnx", "fp32")]["status"] == "skipped"


def test_a_missing_python_is_named(server, run_dir, logged):
    env, _ = logged
    r = over_ssh("check", server, run_dir, env, "/nonexistent/python3")
    assert r.code == 3
    (line,) = r.error_lines
    assert "/nonexistent/python3 was not found on" in line and "--python" in line
