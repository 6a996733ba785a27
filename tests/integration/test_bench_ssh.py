"""`edgekit bench --target raspberrypi --host ...` against a real OpenSSH server on 127.0.0.1.

The "device" is this machine reached over SSH: the runner and the model files are copied into a
temporary folder by scp and run there by ssh, exactly as on a Raspberry Pi.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time

import pytest

from edgekit.formats import default_names
from tests.conftest import REPO, copy_run, read_manifest, run_cli

FORMATS = default_names()  # what `export` writes without --to


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, lenet5_run):
    """The session's lenet5 int8 run of every format (tests/conftest.py), copied: bench writes into it."""
    return copy_run(lenet5_run, tmp_path_factory.mktemp("ssh-run") / "run")


def remote_folders() -> set[str]:
    return set(glob.glob("/tmp/edgekit-bench.*"))


def ssh_bench(server, run_dir, *extra, config=None, python=sys.executable):
    return run_cli("bench", run_dir, "--target", "raspberrypi", "--host", server.host,
                   "--ssh-config", config or server.config, "--python", python, *extra)


def test_bench_over_ssh_runs_every_artefact_on_the_device_and_cleans_up(server, run_dir):
    before = remote_folders()
    r = ssh_bench(server, run_dir, "--iters", "20", "--threads", "1")
    assert r.code == 0, r.stderr
    m = read_manifest(run_dir)
    key = f"raspberrypi@{server.host}"
    record = m["bench"][key]
    rows = {(x["format"], x["precision"]): x for x in record["results"]}
    # no PyTorch base on a device: it runs only the artefacts
    assert set(rows) == {(f, p) for f in FORMATS for p in ("fp32", "int8")}
    for row in rows.values():
        assert row["status"] == "ok" and row["iters"] == 20 and row["threads"] == 1
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert record["target"]["name"] == "raspberrypi" and record["target"]["host"] == server.host
    assert record["environment"]["cores"] == os.cpu_count()
    assert all(a["bench"][key]["status"] == "ok" for a in m["artefacts"])
    assert "latency on raspberrypi" in r.stdout
    assert remote_folders() == before  # the temporary folder on the device is gone


def test_a_device_without_a_runtime_is_a_clear_error(server, run_dir, tmp_path):
    # A Python on the "device" without numpy or any runtime (a bare virtual environment).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "bare"], check=True)
    before = (run_dir / "manifest.json").read_bytes()
    r = ssh_bench(server, run_dir, "--iters", "2", python=str(tmp_path / "bare" / "bin" / "python"))
    assert r.code == 3 and "Traceback" not in r.stderr
    (line,) = r.error_lines
    assert f"{server.host} has no usable runtime: numpy is not installed" in line
    assert (run_dir / "manifest.json").read_bytes() == before


def test_a_missing_python_on_the_device_is_named(server, run_dir):
    r = ssh_bench(server, run_dir, "--iters", "2", python="/nonexistent/python3")
    assert r.code == 3
    assert "/nonexistent/python3 was not found on" in r.stderr and "--python" in r.stderr


def test_an_unknown_host_key_is_refused_not_accepted(server, run_dir):
    config = server.client_config("cfg-unknown", known_hosts=server.folder / "empty_known_hosts")
    before = (run_dir / "manifest.json").read_bytes()
    r = ssh_bench(server, run_dir, config=config)
    assert r.code == 3
    (line,) = r.error_lines
    assert "host key of" in line and "host-key checking stays on" in line
    assert (server.folder / "empty_known_hosts").read_text() == ""  # nothing was added
    assert (run_dir / "manifest.json").read_bytes() == before


def test_a_refused_key_is_a_clear_error(server, run_dir):
    config = server.client_config("cfg-stranger", key=server.folder / "id_stranger")
    r = ssh_bench(server, run_dir, config=config)
    assert r.code == 3
    (line,) = r.error_lines
    assert f"{server.host} refused the login" in line and "authorized_keys" in line


def test_an_unreachable_host_is_a_clear_error(server, run_dir):
    from tests.integration.sshd import free_port

    r = run_cli("bench", run_dir, "--target", "raspberrypi", "--host", f"nobody@127.0.0.1:{free_port()}",
                "--ssh-config", server.config)
    assert r.code == 3 and "Traceback" not in r.stderr
    (line,) = r.error_lines
    assert "cannot reach nobody@127.0.0.1:" in line and "Connection refused" in line


def test_a_dropped_connection_is_reported_and_the_run_stays_intact(server, run_dir):
    before = (run_dir / "manifest.json").read_bytes()
    folders = remote_folders()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "bench", str(run_dir), "--target", "raspberrypi", "--host",
         server.host, "--ssh-config", str(server.config), "--python", sys.executable, "--seconds", "60"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the runner is timing on the "device"
        out = subprocess.run(["pgrep", "-f", "runner.py -"], capture_output=True, text=True).stdout
        if out.strip():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the runner never started on the device")
    time.sleep(1)
    server.drop_connections()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: lost the connection to {server.host} while running model.fp32.onnx")
    assert "the run directory is unchanged" in line and "/tmp/edgekit-bench." in line
    assert (run_dir / "manifest.json").read_bytes() == before
    # what a real device would keep until its reboot: the orphaned runner and its folder
    subprocess.run(["pkill", "-f", "runner.py -"])
    for folder in remote_folders() - folders:
        shutil.rmtree(folder, ignore_errors=True)


def test_host_key_checking_cannot_be_turned_off_from_a_profile(tmp_path, run_dir):
    (tmp_path / "lax.toml").write_text('connect = "ssh"\nhost = "pi@x"\n'
                                       'ssh_options = ["UserKnownHostsFile=/dev/null"]\n')
    r = run_cli("bench", run_dir, "--target", "lax", "--targets-dir", tmp_path)
    assert r.code == 2 and "turns host-key checking off" in r.stderr


def test_a_pi_with_only_the_old_tflite_runtime_runs_the_tflite_files(server, run_dir, old_pi_python):
    r = ssh_bench(server, run_dir, "--iters", "10", python=old_pi_python)
    assert r.code == 0, r.stderr  # formats the device cannot run are skipped, not failures
    rows = {(x["format"], x["precision"]): x
            for x in read_manifest(run_dir)["bench"][f"raspberrypi@{server.host}"]["results"]}
    for precision in ("fp32", "int8"):  # int8 in and out, quantized with the tensors' own scales
        row = rows[("tflite", precision)]
        assert row["status"] == "ok" and row["runtime"] == "tflite-runtime"
        assert row["runtime_version"] == "2.14.0"
        assert row["environment"]["numpy"].startswith("1.")
    for fmt in ("onnx", "openvino"):
        assert rows[(fmt, "fp32")]["status"] == "skipped" and "not installed" in rows[(fmt, "fp32")]["error"]
    assert "skipped" in r.stdout
