"""Output paths checked before any work, ``clean`` that removes only edgekit's own staging folders,
and the one-line messages of issue 23 item 9 (each: exit 2, no traceback, the problem and the fix)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

from edgekit.runs import staging as st
from tests.conftest import run_cli
from tests.integration.test_errors_cli import assert_usage_error


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------- clean: only what edgekit made


def test_clean_leaves_a_users_folder_named_like_a_stage_and_says_why(tmp_path):
    pid = dead_pid()
    mine = tmp_path / f".mydata.partial-{pid}"  # the user's, with content and no mark
    mine.mkdir()
    (mine / "f").write_text("precious")
    empty = tmp_path / f".run.partial-{pid}"  # a crash between mkdir and the mark: holds nothing
    empty.mkdir()
    r = run_cli("clean", tmp_path)
    assert r.code == 0, r.stderr
    assert (mine / "f").read_text() == "precious"
    assert not empty.exists()
    assert r.stdout.splitlines() == [
        f"removed {empty} (0 bytes)",
        f"left {mine}: it has no {st.STAGE_MARK} mark of process {pid}, so edgekit did not make it "
        "(remove it yourself if you know it is finished)",
        "1 stale staging folder; freed 0 bytes",
    ]
    assert run_cli("clean", tmp_path).stdout.splitlines()[-1] == f"no stale staging folders in {tmp_path}"
    assert (mine / "f").read_text() == "precious"


# ---------------------------------------------------------------- --out checked before any work


def test_a_dangling_symlink_out_is_refused_before_the_model_loads(tmp_path):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "gone")
    # a missing checkpoint as the model: had the model been loaded first, that would be the error
    r = run_cli("export", tmp_path / "missing.pt", "--out", link)
    assert_usage_error(r, f"--out {link} is a symlink to {tmp_path / 'gone'}, which does not exist",
                       "remove the link")
    assert link.is_symlink() and not (tmp_path / "gone").exists()

    r = run_cli("train", "lenet5", "--dataset", "digits", "--out", link)  # a checkpoint's --out too
    assert_usage_error(r, "is a symlink", "does not exist")


def test_an_out_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    r = run_cli("export", "lenet5", "--to", "onnx", "--out", out)
    assert_usage_error(r, f"output directory {out} already exists (a file)", "choose another --out")
    assert out.read_text() == "mine"


def test_a_long_legal_out_name_exports_with_a_shortened_staging_name(tmp_path):
    """A 250-byte name is legal (NAME_MAX 255) but ``.<name>.partial-<pid>`` is not: the staging
    name is cut and hashed, never the user's name."""
    out = tmp_path / ("r" * 250)
    assert st.name_max(tmp_path) < len(f".{out.name}.partial-{os.getpid()}")
    r = run_cli("export", "lenet5", "--to", "onnx", "--out", out)
    assert r.code == 0, r.stderr
    assert (out / "manifest.json").is_file() and (out / "onnx" / "model.fp32.onnx").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no staging folder left


def test_a_long_legal_checkpoint_name_is_written(tmp_path):
    out = tmp_path / ("c" * 247 + ".pt")  # 250 bytes: its temporary sibling gets a short name
    r = run_cli("prune", "lenet5", "--ratio", "0.3", "--out", out)
    assert r.code == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == [out.name] and out.stat().st_size > 10_000


def test_an_out_name_over_the_filesystems_limit_is_refused(tmp_path):
    out = tmp_path / ("r" * (st.name_max(tmp_path) + 1))
    r = run_cli("export", "lenet5", "--to", "onnx", "--out", out)
    assert_usage_error(r, "more than the", "choose a shorter name")


@contextlib.contextmanager
def read_only_mount(folder):
    """A real read-only tmpfs at ``folder`` (root ignores permission bits, so chmod proves nothing)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_out_parent_is_refused_before_any_work(tmp_path):
    with read_only_mount(tmp_path / "ro") as ro:
        for args in (("export", tmp_path / "missing.pt", "--out", ro / "run"),
                     ("export", "lenet5", "--to", "onnx", "--out", ro / "deeper" / "run"),
                     ("train", "lenet5", "--dataset", "digits", "--out", ro / "lenet5.pt")):
            r = run_cli(*args)
            assert_usage_error(r, f"cannot write in {ro}, it is on a read-only filesystem",
                               "in a writable folder")
        assert list(ro.iterdir()) == []


def test_run_checks_the_recipes_out_before_any_work(tmp_path):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "gone")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'model = "lenet5"\nto = "onnx"\nout = "{link}"\n')
    r = run_cli("run", recipe)
    assert_usage_error(r, "is a symlink", "does not exist")


# ---------------------------------------------------------------- messages (item 9)


def test_a_moved_checkpoint_says_the_file_does_not_exist_and_where_one_is(tmp_path, monkeypatch):
    (tmp_path / "lenet5.pt").write_bytes(b"moved here")
    monkeypatch.chdir(tmp_path)
    r = run_cli("export", tmp_path / "some" / "dir" / "lenet5.pt", "--out", tmp_path / "x")
    line = assert_usage_error(r, f"checkpoint {tmp_path / 'some' / 'dir' / 'lenet5.pt'} does not exist",
                              "a file of that name is at", "check the path")
    assert "unknown model" not in line
    r = run_cli("export", tmp_path, "--out", tmp_path / "x")
    assert_usage_error(r, f"{tmp_path} is a folder", "pass the checkpoint file inside it")


def test_negative_labels_name_the_value_and_where(tmp_path):
    y = np.arange(20) % 10
    y[7] = -1
    np.savez(tmp_path / "neg.npz", x=np.random.default_rng(0).random((20, 1, 32, 32), np.float32), y=y)
    r = run_cli("export", "lenet5", "--to", "onnx", "--eval", tmp_path / "neg.npz", "--out", tmp_path / "x")
    line = assert_usage_error(r, "labels in neg.npz must be class indices 0..9", "label -1 (sample 7)",
                              "map the labels to 0..9")
    assert "--num-classes" not in line


def test_a_short_calibration_source_says_what_was_asked_and_used(tmp_path):
    from edgekit.data.calibration import load_samples
    from edgekit.models.resolve import ModelPlan, load_planned_model

    np.save(tmp_path / "six.npy", np.random.default_rng(0).random((6, 1, 32, 32), np.float32))
    model = load_planned_model(ModelPlan("lenet5"))
    warning = load_samples(tmp_path / "six.npy", model, 40, calib_size=32).warning
    assert warning == (f"only 6 samples in {tmp_path / 'six.npy'}: 3 used for calibration (--calib-size "
                       "32 asked for), 3 held out for verification (--verify-samples 8); pass more data "
                       "with --calib")


def test_the_warnings_split_is_the_pipelines():
    from edgekit.export.plan import split_samples
    from edgekit.layout import split_counts

    for n in range(2, 30):
        for calib, verify in ((0, 8), (4, 8), (32, 8), (32, 64), (1, 1)):
            parts = split_samples(np.arange(n), calib, verify)
            assert split_counts(n, calib, verify) == (len(parts[0]), len(parts[1])), (n, calib, verify)


def test_a_short_calibration_source_on_the_command_line(tmp_path):
    np.save(tmp_path / "six.npy", np.random.default_rng(0).random((6, 1, 32, 32), np.float32))
    r = run_cli("export", "lenet5", "--to", "onnx", "--int8", "--calib", tmp_path / "six.npy",
                "--calib-size", "32", "--verify-samples", "8", "--out", tmp_path / "x")
    assert r.code == 0, r.stderr
    assert "3 used for calibration (--calib-size 32 asked for), 3 held out for verification" in r.stderr


@pytest.mark.parametrize(("shape", "item"), [("1,x,28", "item 'x'"), ("1,,28", "an empty item"),
                                             ("1,28.5", "item '28.5'")])
def test_a_bad_input_shape_item_is_named(tmp_path, shape, item):
    r = run_cli("export", "lenet5", "--input-shape", shape, "--out", tmp_path / "x")
    assert_usage_error(r, f"--input-shape '{shape}': {item} is not a size", "e.g. 1,3,224,224")


def test_a_negative_max_drop_is_refused_on_the_command_line_and_in_a_recipe(tmp_path):
    r = run_cli("export", "lenet5", "--int8", "--eval", "digits", "--max-drop", "-1", "--out", tmp_path / "x")
    assert_usage_error(r, "--max-drop must be an accuracy budget in points, 0 or more", "got -1")
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "lenet5"\nint8 = true\nmax-drop = -0.5\n[eval]\ndataset = "digits"\n')
    r = run_cli("run", recipe)
    assert_usage_error(r, "r.toml: max-drop must be an accuracy budget in points, 0 or more", "got -0.5")
    assert not (tmp_path / "x").exists()


def test_weights_that_are_a_directory_say_so(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.pt").write_bytes(b"")
    r = run_cli("export", "lenet5", "--weights", tmp_path / "w", "--out", tmp_path / "x")
    line = assert_usage_error(r, f"--weights {tmp_path / 'w'} is a directory", "pass a weights file",
                              f"e.g. {tmp_path / 'w' / 'model.pt'}")
    assert "does not exist" not in line
