"""Formats exported side by side (edgekit/export_jobs.py), through the real CLI: the same lines and
manifest as one after another, and a worker process that dies fails only its own formats."""

from __future__ import annotations

import re

import numpy as np

from edgekit.export_jobs import JOBS_ENV
from tests.conftest import read_manifest, run_cli

# onnx stays in the main process, executorch goes to the worker (edgekit.export_jobs.split)
ARGS = ("--to", "onnx,executorch", "--int8", "--calib-size", "8")


def normalised(text: str, run_dir) -> list[str]:
    text = re.sub(r"\(\d+(\.\d+)?s\)", "(s)", text.replace(str(run_dir), "RUN"))
    return text.splitlines()


def test_side_by_side_prints_and_records_what_one_after_another_does(tmp_path):
    one = run_cli("export", "lenet5", *ARGS, "--out", tmp_path / "one", env={JOBS_ENV: "1"})
    two = run_cli("export", "lenet5", *ARGS, "--out", tmp_path / "two", env={JOBS_ENV: "2"})
    assert one.code == 0 and two.code == 0, one.stderr + two.stderr
    assert normalised(two.stdout, tmp_path / "two") == normalised(one.stdout, tmp_path / "one")
    arts = [read_manifest(tmp_path / run)["artefacts"] for run in ("one", "two")]
    assert [(a["format"], a["precision"], a["status"]) for a in arts[1]] == [
        ("onnx", "fp32", "ok"), ("onnx", "int8", "ok"),
        ("executorch", "fp32", "ok"), ("executorch", "int8", "ok"),
    ]
    for a, b in zip(*arts):
        assert (a["format"], a["precision"], a["path"]) == (b["format"], b["precision"], b["path"])
        assert (tmp_path / "two" / b["path"]).is_file()
        if a["precision"] == "fp32":  # the same file, verified the same way
            assert a["sha256"] == b["sha256"] and a["verify"] == b["verify"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no staging folder left


DIES_IN_WORKER = """
import multiprocessing
import os
import signal

import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        if multiprocessing.parent_process() is not None:  # only in edgekit's export worker
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        return self.fc(x)
"""


def test_a_killed_worker_fails_only_its_formats_and_the_run_keeps_the_others(tmp_path):
    (tmp_path / "net.py").write_text(DIES_IN_WORKER)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((16, 16), dtype=np.float32))
    out = tmp_path / "run"
    r = run_cli("export", f"{tmp_path / 'net.py'}:Net", "--input-shape", "1,16", *ARGS,
                "--calib", tmp_path / "calib.npy", "--out", out, env={JOBS_ENV: "2"})
    assert r.code != 0 and "Traceback" not in r.stderr
    assert "FAILED executorch fp32: the export worker process stopped (signal 9) before it finished" in (
        r.stdout + r.stderr)
    assert "2 artefact(s) failed: executorch fp32, executorch int8" in r.stderr
    arts = {(a["format"], a["precision"]): a for a in read_manifest(out)["artefacts"]}
    assert list(arts) == [("onnx", "fp32"), ("onnx", "int8"), ("executorch", "fp32"), ("executorch", "int8")]
    assert arts["onnx", "fp32"]["status"] == arts["onnx", "int8"]["status"] == "ok"
    assert (out / arts["onnx", "int8"]["path"]).is_file()
    assert arts["executorch", "fp32"]["status"] == "failed"
    assert arts["executorch", "int8"]["status"] == "skipped"
    assert not (out / "executorch" / "model.fp32.pte").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npy", "net.py", "run"]  # no staging folder
