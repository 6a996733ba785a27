"""manifest.update under concurrent writers, and the staging folders killed runs leave behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.runs import manifest as mf
from edgekit.runs import staging as st
from tests.conftest import REPO

WRITERS = 4
UPDATES = 40

HAMMER = """
import sys
from pathlib import Path
from edgekit.runs import manifest as mf

run, who, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sys.stdin.readline()  # start together
for i in range(n):
    mf.update(run, lambda m: m.setdefault("bench", {}).__setitem__(f"{who}-{i}", {"i": i}))
"""


def test_concurrent_updates_from_several_processes_lose_nothing(tmp_path):
    mf.write_json_atomic(tmp_path / mf.MANIFEST, {"schema_version": 1, "artefacts": []})
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, str(tmp_path), f"w{k}", str(UPDATES)],
                              stdin=subprocess.PIPE, cwd=REPO, text=True) for k in range(WRITERS)]
    for p in procs:  # each has imported edgekit by now or soon; the line releases them together
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.stdin.close()
        assert p.wait(timeout=120) == 0
    bench = json.loads((tmp_path / mf.MANIFEST).read_text())["bench"]
    assert set(bench) == {f"w{k}-{i}" for k in range(WRITERS) for i in range(UPDATES)}
    assert (tmp_path / mf.LOCK).is_file()  # the lock lives beside manifest.json
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary file left


def test_update_refuses_a_folder_without_a_manifest(tmp_path):
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="not an edgekit run directory"):
        mf.update(tmp_path, lambda m: None)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # reaped: the PID names no process now
    return p.pid


def stage(folder: Path, name: str, pid: int, size: int = 1000, host: str | None = None) -> Path:
    path = folder / f".{name}.partial-{pid}"
    (path / "onnx").mkdir(parents=True)
    (path / "onnx" / "model.fp32.onnx").write_bytes(b"\0" * size)
    if host is not None:
        (path / st.STAGE_MARK).write_text(json.dumps({"host": host, "pid": pid}))
    return path


def test_only_dead_runs_own_folders_are_stale(tmp_path, sleeper):
    dead = dead_pid()
    old = stage(tmp_path, "old", dead, 2_500_000, host=socket.gethostname())
    legacy = stage(tmp_path, "legacy", dead)  # no mark: the user's, or an edgekit's from before marks
    live = stage(tmp_path, "live", sleeper, host=socket.gethostname())
    mine = stage(tmp_path, "mine", os.getpid())
    remote = stage(tmp_path, "remote", dead, host=socket.gethostname() + "-other")
    target = stage(tmp_path, "target", sleeper)
    (tmp_path / f".link.partial-{dead}").symlink_to(target)  # a symlink is never ours
    (tmp_path / f".file.partial-{dead}").write_text("x")  # a file neither
    for odd in (f"run.partial-{dead}", f".run.partial-{dead}x", f".run.partial-{dead}.bak",
                f".x.partial--{dead}"):
        (tmp_path / odd).mkdir()  # not exactly .<name>.partial-<digits>

    empty = tmp_path / f".crashed.partial-{dead}"  # a crash between mkdir and the mark
    empty.mkdir()
    torn = tmp_path / f".torn.partial-{dead}"  # ... or during the mark's write
    torn.mkdir()
    (torn / st.STAGE_MARK).write_text('{"ho')
    other = stage(tmp_path, "other", dead, host=socket.gethostname())  # marked by another process
    (other / st.STAGE_MARK).write_text(json.dumps({"host": socket.gethostname(), "pid": dead + 1}))

    stale = st.stale_stages(tmp_path)
    assert [s.path for s in stale] == [empty, old, torn]
    assert [s.marked for s in stale] == [False, True, False]
    assert stale[1].pid == dead and 2_500_000 < stale[1].bytes < 2_500_200  # and its mark
    assert st.stale_summary(stale) == ("found 3 stale staging folders of killed runs: "
                                       f".crashed.partial-{dead} (0 bytes), .old.partial-{dead} (2.5 MB), "
                                       f".torn.partial-{dead} (4 bytes)")
    assert st.unmarked_stages(tmp_path) == [
        (legacy, f"it has no {st.STAGE_MARK} mark of process {dead}, so edgekit did not make it"),
        (other, f"it has no {st.STAGE_MARK} mark of process {dead}, so edgekit did not make it"),
        (remote, f"its mark is of another machine ({socket.gethostname()}-other), where the run may "
                 "still be going")]
    assert [s.path for s in st.remove_stale(tmp_path)] == [empty, old, torn]
    assert not old.exists() and not empty.exists() and not torn.exists()
    for kept in (live, mine, remote, target, legacy, other, tmp_path / f".link.partial-{dead}"):
        assert kept.exists(), kept
    assert (legacy / "onnx" / "model.fp32.onnx").is_file()  # content without a mark: never removed
    assert (target / "onnx" / "model.fp32.onnx").is_file()
    assert st.remove_stale(tmp_path) == []


def test_pid_alive():
    assert not st.pid_alive(dead_pid())
    assert st.pid_alive(os.getpid()) and st.pid_alive(1)  # init: PermissionError or alive, both mean alive
    assert st.pid_alive(0) and st.pid_alive(10**30)  # unsure counts as alive


def test_staging_dir_names_stale_folders_and_leaves_no_mark(tmp_path):
    dead = dead_pid()
    stage(tmp_path, "old", dead, 220_000_000 // 1000, host=socket.gethostname())
    lines = []
    with st.staging_dir(tmp_path / "run", lines.append) as s:
        assert (s / st.STAGE_MARK).is_file()
        (s / "manifest.json").write_text("{}")
    assert lines == [f"warning: found 1 stale staging folder of a killed run: .old.partial-{dead} (220 kB); "
                     f"remove with `edgekit clean {tmp_path}`"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["manifest.json"]


def test_an_interrupted_stage_is_removed_and_names_its_output(tmp_path):
    from edgekit.errors import Terminated

    with pytest.raises(Terminated) as info, st.staging_dir(tmp_path / "run"):
        raise Terminated()
    assert info.value.untouched == tmp_path / "run"
    assert list(tmp_path.iterdir()) == []


def test_a_name_too_long_to_stage_is_cut_and_still_recognised(tmp_path):
    final = tmp_path / ("r" * 250)  # legal, but .<name>.partial-<pid> is not
    limit = st.name_max(tmp_path)
    with st.staging_dir(final) as s:
        assert len(s.name.encode()) <= limit and s.name.endswith(f".partial-{os.getpid()}")
        assert s.name.startswith(".rrr") and "~" in s.name
        assert json.loads((s / st.STAGE_MARK).read_text())["final"] == final.name
        (s / "manifest.json").write_text("{}")
    assert final.is_dir() and list(tmp_path.iterdir()) == [final]
    dead = dead_pid()
    cut = tmp_path / st._stage_name(tmp_path / ("q" * 250), dead)
    cut.mkdir()
    (cut / st.STAGE_MARK).write_text(json.dumps({"host": socket.gethostname(), "pid": dead}))
    assert [s.path for s in st.stale_stages(tmp_path)] == [cut]


def test_staging_never_removes_a_users_folder_that_has_its_name(tmp_path):
    from edgekit.errors import OutputExistsError

    users = tmp_path / f".run.partial-{os.getpid()}"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="was not made by edgekit"), st.staging_dir(tmp_path / "run"):
        pass
    assert (users / "notes.txt").read_text() == "mine" and not (tmp_path / "run").exists()


def test_the_mark_is_the_first_thing_in_a_stage(tmp_path):
    with st.staging_dir(tmp_path / "run") as s:
        assert [p.name for p in s.iterdir()] == [st.STAGE_MARK]
        mark = json.loads((s / st.STAGE_MARK).read_text())
        assert mark == {"host": socket.gethostname(), "pid": os.getpid(), "final": "run"}
