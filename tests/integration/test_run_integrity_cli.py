"""A run's records and artefacts are trusted only as far as they hold: every record of every command is
kept (commands at once, or again), a run folder that cannot be written still shows the results, and
an artefact missing or changed since export is named, never scored under its old entry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgekit.runs import manifest as mf
from tests.conftest import REPO, copy_run, read_manifest, run_cli


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """LeNet-5 to ONNX fp32 and int8 (random weights: these tests are about files, not accuracy)."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    r = run_cli("export", "lenet5", "--to", "onnx", "--int8", "--calib-size", "8", "--out", out)
    assert r.code == 0, r.stderr
    return out


@pytest.fixture
def run_dir(small_run, tmp_path):
    return copy_run(small_run, tmp_path / "run")


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgekit", *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# ---------------------------------------------------------------- every record kept


def test_four_commands_at_once_on_one_run_keep_every_record(run_dir):
    """Two benches of the same target, an eval and a gate, as real processes at once."""
    before = read_manifest(run_dir)
    procs = [start("bench", run_dir, "--iters", "5", "--no-torch", "--json"),
             start("bench", run_dir, "--iters", "5", "--no-torch", "--json"),
             start("eval", run_dir, "--dataset", "digits", "--limit", "32", "--json"),
             start("gate", run_dir, "--max-size-mb", "5", "--json")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1][-500:] for o in outs]
    m = read_manifest(run_dir)  # valid JSON, with what the export wrote untouched
    assert m["artefacts"][0]["sha256"] == before["artefacts"][0]["sha256"]
    benches = mf.records(m, "bench", "local-cpu")
    printed = {json.loads(outs[i][0])["id"] for i in (0, 1)}
    assert len(printed) == 2 and {b["id"] for b in benches} == printed  # both, neither replaced
    assert m["bench"]["local-cpu"]["id"] in printed  # the latest is where readers look
    assert [h["command"] for h in m["history"]] == ["bench"] and m["history"][0]["key"] == "local-cpu"
    assert m["eval"]["id"] == json.loads(outs[2][0])["id"] and m["eval"]["samples"] == 32
    assert m["gate"]["passed"] is True
    for art in m["artefacts"]:  # each artefact's figures name the record they come from
        assert art["bench"]["local-cpu"]["record"] == m["bench"]["local-cpu"]["id"]
        assert art["eval"]["record"] == m["eval"]["id"]


def test_a_rerun_keeps_the_earlier_record_in_the_history_and_readers_take_the_latest(run_dir):
    for limit in ("16", "32"):
        assert run_cli("eval", run_dir, "--dataset", "digits", "--limit", limit).code == 0
    r = run_cli("gate", run_dir, "--max-drop", "100")
    assert r.code == 0, r.stderr
    r = run_cli("gate", run_dir, "--min-accuracy", "1")  # random weights: fails, and is kept too
    assert r.code == 4
    m = read_manifest(run_dir)
    assert [e["samples"] for e in mf.records(m, "eval")] == [16, 32] and m["eval"]["samples"] == 32
    assert [g["passed"] for g in mf.records(m, "gate")] == [True, False]
    r = run_cli("report", run_dir)
    assert r.code == 0, r.stderr
    assert "(test, 32 samples)" in (run_dir / "report" / "report.md").read_text()


def test_a_manifest_written_before_the_history_still_reads_and_keeps_its_record():
    old = {"bench": {"local-cpu": {"created": "2025-01-01T00:00:00Z", "results": []}},
           "eval": {"created": "2025-01-01T00:00:00Z", "samples": 10}}  # no ids, no history
    assert mf.records(old, "bench", "local-cpu") == [old["bench"]["local-cpu"]]
    assert mf.records(old, "eval")[0]["samples"] == 10 and mf.records(old, "gate") == []
    first = old["bench"]["local-cpu"]
    mf.keep_record(old, "bench", {"results": [1]}, "local-cpu")
    assert mf.records(old, "bench", "local-cpu") == [first, old["bench"]["local-cpu"]]
    new_id = old["bench"]["local-cpu"]["id"]
    assert new_id.startswith("bench-") and new_id.endswith(f"-{os.getpid()}")


# ---------------------------------------------------------------- a run folder that cannot be written


def _readonly_mount_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs none /mnt && mount -o remount,ro /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _readonly_mount_works(), reason="needs root and mount namespaces (unshare --mount) "
                    "to mount the run read-only: root ignores file permissions")
def test_a_read_only_run_prints_the_results_then_one_line_and_exits_2(run_dir):
    """The run bind-mounted read-only (EROFS: even root cannot write it) for eval, bench, gate, report."""
    assert run_cli("eval", run_dir, "--dataset", "digits", "--limit", "16").code == 0  # for the gate
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    script = (f"mount --bind {run_dir} {run_dir} && mount -o remount,bind,ro {run_dir} && "
              f"for c in 'eval {run_dir} --dataset digits --limit 16' 'bench {run_dir} --iters 3 --no-torch' "
              f"'gate {run_dir} --max-size-mb 5' 'report {run_dir}'; "
              f"do {sys.executable} -m edgekit $c; echo \"rc=$?\"; echo ---- >&2; done")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    codes = [line for line in done.stdout.splitlines() if line.startswith("rc=")]
    assert codes == ["rc=2"] * 4, done.stdout + done.stderr
    line = f"error: results not stored: {run_dir} is not writable (Read-only file system); " \
           "make it writable or copy the run"
    for err in done.stderr.split("----\n")[:4]:
        assert "Traceback" not in err and "internal error" not in err
        assert err.strip().splitlines()[-1] == line
    tables = done.stdout.split("rc=2")
    assert "accuracy on digits" in tables[0] and "onnx" in tables[0]  # the results, printed first
    assert "latency on local-cpu" in tables[1] and "p50 ms" in tables[1]
    assert "edgekit gate: PASSED" in tables[2] and "JUnit: not written" in tables[2]
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")


def _nobody_can_run_edgekit(tmp: Path) -> bool:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import edgekit"], cwd=REPO, capture_output=True,
                           env={**os.environ, "HOME": str(tmp)})
    return probe.returncode == 0


def test_a_run_folder_of_another_user_prints_the_eval_then_one_line(run_dir):
    """The issue's case: chmod'ed read-only, run by a user who is not root (``nobody`` via setpriv),
    with the lock file already there (opened read-only, so the failure is the folder's, named)."""
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-ro-"))  # pytest's own tmp is root's only (0700)
    try:
        if not _nobody_can_run_edgekit(tmp):
            pytest.skip("needs root with setpriv, and this Python readable by the user nobody")
        run = copy_run(run_dir, tmp / "run")
        (run / ".manifest.lock").touch()
        subprocess.run(["chmod", "-R", "a-w", str(run)], check=True)
        os.chmod(tmp, 0o755)
        before = (run / "manifest.json").read_bytes()
        done = subprocess.run([*NOBODY, sys.executable, "-m", "edgekit", "eval", run, "--dataset", "digits",
                               "--limit", "16"],
                              cwd=REPO, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "HOME": str(tmp), "MPLCONFIGDIR": str(tmp)})
        assert done.returncode == 2, done.stderr
        assert "accuracy on digits" in done.stdout and "pytorch" in done.stdout
        assert done.stderr.strip().splitlines() == [
            f"error: results not stored: {run} is not writable (Permission denied); "
            "make it writable or copy the run"]
        assert (run / "manifest.json").read_bytes() == before
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(tmp)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- artefacts as exported, or named


def _swap(run: Path) -> Path:
    """Put another model's file (the fp32 one) in place of the int8 artefact, as a careless copy would."""
    target = run / "onnx" / "model.int8.onnx"
    target.write_bytes((run / "onnx" / "model.fp32.onnx").read_bytes())
    return target


def test_eval_refuses_a_swapped_artefact_unless_accepted_and_records_it(run_dir):
    swapped = _swap(run_dir)
    before = (run_dir / "manifest.json").read_bytes()
    recorded = read_manifest(run_dir)["artefacts"][1]["sha256"]
    r = run_cli("eval", run_dir, "--dataset", "digits", "--limit", "16")
    assert r.code == 2 and r.stdout == ""
    assert r.error_lines == [f"error: {swapped} changed since export (sha256 {mf.sha256_file(swapped)[:12]}, "
                             f"exported as {recorded[:12]}); re-export or pass --accept-changed"]
    assert (run_dir / "manifest.json").read_bytes() == before  # nothing filed under the old entry
    for command in (("bench", run_dir, "--iters", "2", "--no-torch"), ("inspect", run_dir, "--samples", "2")):
        r = run_cli(*command)
        assert r.code == 2 and r.error_lines[0].endswith("re-export or pass --accept-changed"), command
    r = run_cli("eval", run_dir, "--dataset", "digits", "--limit", "16", "--accept-changed")
    assert r.code == 0, r.stderr
    row = next(x for x in read_manifest(run_dir)["eval"]["results"] if x["precision"] == "int8")
    assert row["status"] == "ok" and row["accepted_changed"] == {
        "path": "onnx/model.int8.onnx", "sha256": mf.sha256_file(swapped), "exported_sha256": recorded}


def test_a_missing_artefact_is_one_row_and_the_others_are_still_scored(run_dir):
    (run_dir / "onnx" / "model.int8.onnx").unlink()
    r = run_cli("eval", run_dir, "--dataset", "digits", "--limit", "16")
    assert r.code == 1 and "internal error" not in r.stderr
    assert r.error_lines[-1] == (f"error: missing from {run_dir}: onnx int8 (onnx/model.int8.onnx); the "
                                 "other artefacts were scored; export the run again to have them all")
    (row,) = [line for line in r.stdout.splitlines() if "int8" in line]
    assert "missing" in row
    rows = {x["precision"]: x for x in read_manifest(run_dir)["eval"]["results"] if x["format"] == "onnx"}
    assert rows["int8"]["status"] == "missing" and rows["fp32"]["status"] == "ok" and "top1" in rows["fp32"]
    r = run_cli("bench", run_dir, "--iters", "2", "--no-torch")
    assert r.code == 1 and r.error_lines[-1].startswith(f"error: missing from {run_dir}: onnx int8")
    rows = {x["precision"]: x for x in read_manifest(run_dir)["bench"]["local-cpu"]["results"]}
    assert rows["int8"]["status"] == "missing" and rows["fp32"]["status"] == "ok"


def test_check_exits_3_naming_a_missing_or_changed_artefact(run_dir):
    swapped = _swap(run_dir)
    r = run_cli("check", run_dir)
    assert r.code == 3
    assert [line for line in r.error_lines if "will not run" in line] == [
        f"error: onnx int8 will not run on this machine: {swapped} changed since export (sha256 "
        f"{mf.sha256_file(swapped)[:12]}, exported as "
        f"{read_manifest(run_dir)['artefacts'][1]['sha256'][:12]}); re-export or pass --accept-changed"]
    r = run_cli("check", run_dir, "--accept-changed")
    assert r.code == 0, r.stderr
    assert read_manifest(run_dir)["check"]["local-cpu"]["results"][1]["accepted_changed"]["sha256"] == \
        mf.sha256_file(swapped)
    swapped.unlink()
    r = run_cli("check", run_dir)
    assert r.code == 3 and r.error_lines == [
        f"error: onnx int8 will not run on this machine: {swapped} is missing; export the run again"]
