"""--ray: eval shards and --max-drop search trials as Ray tasks on a real local cluster of 2 workers give
the numbers and the choice of the local run; a clear error for an unreachable address or missing Ray;
without --ray nothing imports Ray."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, read_manifest, run_cli

pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgekit[ray]'; make setup installs it)")

EXPORT = ("export", "lenet5", "--to", "onnx,openvino", "--int8", "--calib", "digits")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray sends a token to an explicit address only with RAY_AUTH_MODE=token; the head and every client
# share one, as a user's `ray start --head` and `edgekit ... --ray ADDRESS` would.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
# The commands that use Ray run in child processes (process=True): a Ray client stays connected for
# the life of its process, and the next test must start without one.


@pytest.fixture(scope="module")
def cluster():
    """A real Ray head of 2 CPUs on a free port (`ray start --block`: SIGTERM stops all it started)."""
    port = _free_port()
    ray = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen([str(ray), "start", "--head", "--block", "--num-cpus=2", f"--port={port}",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env={**os.environ, **AUTH})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("ray start did not listen within 60 s")
    yield f"127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "run"
    r = run_cli(*EXPORT, "--out", out)
    assert r.code == 0, r.stderr
    return out


def _eval(run_dir, *extra) -> dict:
    r = run_cli("eval", run_dir, "--dataset", "digits", "--json", *extra, env=AUTH, process=bool(extra))
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


def test_eval_on_two_ray_workers_gives_the_local_numbers(run_dir, cluster):
    local = _eval(run_dir)
    remote = _eval(run_dir, "--ray", cluster)
    strip = ("seconds",)  # wall time differs; every number a user reads must not
    assert [{k: v for k, v in r.items() if k not in strip} for r in remote["results"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in local["results"]]
    assert len(remote["results"]) == 5  # pytorch + onnx and openvino, fp32 and int8
    assert local["backend"] == {"backend": "local"}
    assert remote["backend"]["backend"] == "ray" and remote["backend"]["workers"] == 2
    assert remote["backend"]["ray_version"]
    assert read_manifest(run_dir)["eval"]["backend"]["workers"] == 2


@pytest.fixture(scope="module")
def search_args(tmp_path_factory, lenet5_ckpt) -> tuple:
    """A budget no attempt meets, so every stage runs with several trials: the session's trained
    LeNet-5 calibrated on black images (int8 then loses points) and a budget of 0 points."""
    black = tmp_path_factory.mktemp("black") / "black.npy"
    np.save(black, np.zeros((8, 32, 32), np.uint8))
    return ("export", str(lenet5_ckpt.path), "--to", "onnx,openvino", "--int8", "--calib", str(black),
            "--calib-size", "6", "--eval", "digits", "--max-drop", "0")


@pytest.fixture(scope="module")
def local_search(tmp_path_factory, search_args):
    """The search run without --ray, in a child process that logs its imports (-X importtime): the
    reference of the Ray search and the proof that a run without --ray imports no Ray."""
    out = tmp_path_factory.mktemp("local-search") / "run"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgekit", *search_args, "--out",
                           str(out)], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def _imported(proc) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


def test_max_drop_search_with_ray_picks_the_local_attempt(tmp_path, cluster, local_search, search_args):
    # A budget no attempt meets (search_args): every stage runs, several trials each.
    r = run_cli(*search_args, "--ray", cluster, "--out", tmp_path / "ray", env=AUTH, process=True)
    assert r.code == 0, r.stderr
    runs = {name: {a["format"]: a["search"] for a in read_manifest(out)["artefacts"] if a.get("search")}
            for name, out in (("local", local_search[0]), ("ray", tmp_path / "ray"))}
    assert set(runs["ray"]) == set(runs["local"]) == {"onnx", "openvino"}
    for fmt, local in runs["local"].items():
        remote = runs["ray"][fmt]
        assert remote["chosen"] == local["chosen"]
        picked = ("index", "stage", "settings", "status", "drop_pp", "accuracy", "agreement")
        assert [{k: a.get(k) for k in picked} for a in remote["attempts"]] == \
            [{k: a.get(k) for k in picked} for a in local["attempts"]]
        assert remote["backend"]["workers"] == 2
        if not local["met"]:  # every stage ran, its attempts as Ray tasks
            assert remote["backend"]["trials"] >= 4
        assert "backend" not in local
    assert not all(search["met"] for search in runs["local"].values())  # onnx: 0.37 pp at best
    assert not [p for p in (tmp_path / "ray").rglob(".search-*")]  # the attempts not kept are removed


def test_unreachable_address_is_a_one_line_error(run_dir):
    r = run_cli("eval", run_dir, "--dataset", "digits", "--ray", f"127.0.0.1:{_free_port()}", timeout=120,
                process=True)
    assert r.code != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the Ray cluster" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_missing_ray_says_how_to_install(run_dir):
    # Ray is installed here; hiding it from the import system is how a user without it runs.
    argv = ["edgekit", "eval", str(run_dir), "--dataset", "digits", "--ray", "auto"]
    code = f"import sys; sys.modules['ray'] = None; from edgekit.cli import main; sys.argv = {argv!r}; main()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode != 0
    assert "pip install 'edgekit[ray]'" in proc.stderr and "Traceback" not in proc.stderr


def test_without_ray_nothing_imports_ray(run_dir, local_search):
    evaluated = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgekit", "eval", str(run_dir),
                                "--dataset", "digits", "--limit", "20"],
                               capture_output=True, text=True, cwd=REPO, timeout=900)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    for proc in (evaluated, local_search[1]):  # eval, and an export with a --max-drop search
        modules = _imported(proc)
        assert "edgekit.measure.evaluate" in modules  # the eval code ran in this process
        assert not {m for m in modules if m == "ray" or m.startswith("ray.")}, proc.args
