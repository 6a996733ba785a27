"""Formats exported side by side (edgekit/export/jobs.py), through the real CLI: the same lines and
manifest as one after another, and a worker process that dies fails only its own formats."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgekit.export.jobs import JOBS_ENV
from tests.conftest import read_manifest, run_cli

# with two workers onnx goes to one, executorch to the other (edgekit.export.jobs.split)
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


CRASHES_ONE_CONVERTER = """
import os
import signal
import sys

import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        frame = sys._getframe(1)
        while frame is not None:  # only while edgekit's CONVERTER traces it
            if frame.f_code.co_filename.endswith(os.path.join("formats", "CONVERTER", "convert.py")):
                os.kill(os.getpid(), signal.SIGABRT)  # as LLVM's abort() or a native crash would
            frame = frame.f_back
        return self.fc(x)
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_converter_that_crashes_fails_only_its_format_and_the_run_keeps_the_others(tmp_path, jobs):
    """Converters run in worker processes: an abort() fails that format with one line and a fresh
    worker takes the formats after it (one worker: onnx is first, executorch comes after)."""
    (tmp_path / "net.py").write_text(CRASHES_ONE_CONVERTER.replace("CONVERTER", "onnx"))
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((16, 16), dtype=np.float32))
    out = tmp_path / "run"
    r = run_cli("export", f"{tmp_path / 'net.py'}:Net", "--input-shape", "1,16", *ARGS,
                "--calib", tmp_path / "calib.npy", "--out", out, env={JOBS_ENV: jobs})
    assert r.code == 1 and "Traceback" not in r.stderr
    assert "FAILED onnx fp32: the onnx converter crashed its worker process (SIGABRT" in (r.stdout + r.stderr)
    assert "2 artefact(s) failed: onnx fp32, onnx int8" in r.stderr
    arts = {(a["format"], a["precision"]): a for a in read_manifest(out)["artefacts"]}
    assert list(arts) == [("onnx", "fp32"), ("onnx", "int8"), ("executorch", "fp32"), ("executorch", "int8")]
    assert arts["executorch", "fp32"]["status"] == arts["executorch", "int8"]["status"] == "ok"
    assert (out / arts["executorch", "int8"]["path"]).is_file()
    assert arts["onnx", "fp32"]["status"] == "failed"
    assert arts["onnx", "int8"]["status"] == "skipped"
    assert not list((out / "onnx").iterdir())  # nothing half-written kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npy", "net.py", "run"]  # no staging folder


NET_WITH_A_NEIGHBOUR = """
import torch.nn as nn
from scale import SCALE


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x) * SCALE
"""


def test_the_next_export_reuses_the_workers_and_sees_its_own_files_and_settings(tmp_path):
    """Within one process the workers stay warm from one export to the next (edgekit.export.pool),
    yet each export starts afresh: a neighbour of the user's model file that changed is imported
    again (a stale one would convert another model, which fails verification)."""
    from edgekit.export.pool import POOL

    POOL.shutdown()  # none parked by earlier tests
    (tmp_path / "net.py").write_text(NET_WITH_A_NEIGHBOUR)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((16, 16), dtype=np.float32))
    args = (f"{tmp_path / 'net.py'}:Net", "--input-shape", "1,16", "--to", "onnx", "--calib",
            tmp_path / "calib.npy")
    pids = []
    for scale in (1.0, -3.0):
        (tmp_path / "scale.py").write_text(f"SCALE = {scale}\n")
        r = run_cli("export", *args, "--out", tmp_path / f"run{scale}", env={JOBS_ENV: "1"})
        assert r.code == 0, r.stdout + r.stderr
        [art] = read_manifest(tmp_path / f"run{scale}")["artefacts"]
        assert art["status"] == "ok" and art["verify"]["passed"], art
        pids.append({w.proc.pid for w in POOL.parked})
    assert len(pids[0]) == 1 and pids[1] == pids[0]  # the same worker converted both
