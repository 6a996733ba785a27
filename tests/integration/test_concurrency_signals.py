"""Real `edgekit` processes at once and killed: concurrent benches keep both records, SIGTERM leaves
nothing half-written and no runner behind, and `edgekit clean` removes what killed runs left."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, read_manifest, run_cli


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgekit", *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(check, timeout: float = 300, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.is_file() else []


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("concurrent") / "run"
    r = run_cli("export", "lenet5", "--to", "onnx", "--int8", "--calib-size", "8", "--out", out)
    assert r.code == 0, r.stderr
    return out


def test_two_benches_of_one_run_at_once_both_keep_their_records(run_dir, tmp_path):
    (tmp_path / "second-cpu.toml").write_text((REPO / "targets" / "local-cpu.toml").read_text())
    first = start("bench", run_dir, "--iters", "20", "--no-torch", "--json")
    second = start("bench", run_dir, "--target", "second-cpu", "--targets-dir", tmp_path, "--iters", "20",
                   "--no-torch", "--json")
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    m = read_manifest(run_dir)
    assert {"local-cpu", "second-cpu"} <= set(m["bench"])
    for art in m["artefacts"]:
        assert {"local-cpu", "second-cpu"} <= set(art["bench"])
        assert art["bench"]["local-cpu"]["sha256"] == art["sha256"]
    # each row names the file it measured, relative to the run, with its sha256
    rows = json.loads(outs[0][0])["results"]
    arts = {(a["format"], a["precision"]): a for a in m["artefacts"]}
    assert [(r["format"], r["precision"]) for r in rows] == [("onnx", "fp32"), ("onnx", "int8")]
    for r in rows:
        art = arts[(r["format"], r["precision"])]
        assert r["path"] == art["path"] == f"onnx/model.{r['precision']}.onnx"
        assert r["sha256"] == art["sha256"]
    assert m["bench"]["second-cpu"]["results"][0]["path"] == "onnx/model.fp32.onnx"


def test_sigterm_mid_export_removes_the_staging_folder(tmp_path):
    out = tmp_path / "run"
    proc = start("export", "lenet5", "--to", "onnx,tflite", "--int8", "--calib-size", "8", "--out", out)
    staged = wait_for(lambda: list(tmp_path.glob(".run.partial-*")), what="the staging folder")
    assert staged == [tmp_path / f".run.partial-{proc.pid}"]
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == f"edgekit: stopped by SIGTERM; nothing was written to {out}"
    assert stderr.count("SIGTERM") == 1
    assert list(tmp_path.iterdir()) == []  # neither the run nor its staging folder


def test_sigterm_during_bench_stops_the_runner_and_writes_nothing(run_dir):
    before = (run_dir / "manifest.json").read_bytes()
    proc = start("bench", run_dir, "--seconds", "120", "--no-torch")
    runner = wait_for(lambda: children(proc.pid), what="the runner process")[0]
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "edgekit: stopped by SIGTERM" in stderr
    assert gone(runner)  # killed and reaped, not left timing on its own
    assert (run_dir / "manifest.json").read_bytes() == before


def test_the_next_export_names_a_killed_runs_folder_and_clean_removes_it(tmp_path, sleeper):
    reaped = subprocess.Popen([sys.executable, "-c", "pass"])
    reaped.wait()
    dead = tmp_path / f".old.partial-{reaped.pid}"
    live = tmp_path / f".busy.partial-{sleeper}"
    for folder in (dead, live):
        (folder / "onnx").mkdir(parents=True)
        (folder / "onnx" / "model.fp32.onnx").write_bytes(b"\0" * 2_000_000)
        (folder / ".edgekit-staging").write_text(json.dumps({"host": socket.gethostname()}))
    r = run_cli("export", "lenet5", "--to", "onnx", "--out", tmp_path / "run")
    assert r.code == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "stale" in line]
    assert warnings == [f"warning: found 1 stale staging folder of a killed run: {dead.name} (2 MB); "
                        f"remove with `edgekit clean {tmp_path}`"]

    r = run_cli("clean", tmp_path, "--dry-run")
    assert r.code == 0 and dead.is_dir()
    assert r.stdout.splitlines() == [f"would remove {dead} (2 MB)", "1 stale staging folder; would free 2 MB"]
    r = run_cli("clean", tmp_path)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == [f"removed {dead} (2 MB)", "1 stale staging folder; freed 2 MB"]
    assert not dead.exists() and live.is_dir() and (tmp_path / "run" / "manifest.json").is_file()
    r = run_cli("clean", tmp_path)
    assert r.code == 0 and r.stdout.strip() == f"no stale staging folders in {tmp_path}"
    r = run_cli("clean", tmp_path / "nowhere")
    assert r.code == 2 and "Traceback" not in r.stderr
    assert r.error_lines == [f"error: {tmp_path / 'nowhere'} is not a folder; pass the folder that holds "
                             "the run directories (the parent of --out)"]


def test_a_lone_file_row_names_the_file_as_given(run_dir):
    from edgekit.runs.manifest import sha256_file

    given = os.path.relpath(run_dir / "onnx" / "model.int8.onnx", REPO)
    r = run_cli("bench", given, "--iters", "3", "--json")
    assert r.code == 0, r.stderr
    (row,) = json.loads(r.stdout)["results"]
    assert row["path"] == given and row["sha256"] == sha256_file(run_dir / "onnx" / "model.int8.onnx")
