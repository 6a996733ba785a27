"""What `edgekit eval` prints around its table, as a user sees it in a terminal: no third-party
library noise (torchao's failed .so loads, torch's pytree deprecation, ExecuTorch's cpuinfo lines,
TF Lite's XNNPACK line) unless --debug, and a split that would score training images refused."""

from __future__ import annotations

from PIL import Image

from tests.conftest import copy_run, run_cli


def test_eval_in_a_real_process_prints_no_library_noise(lenet5_run, tmp_path):
    """A real child process (noise from native code reaches its file descriptor 2, which an
    in-process run does not capture), on a run with every default format, fp32 and int8."""
    run = copy_run(lenet5_run, tmp_path / "run")
    r = run_cli("eval", run, "--dataset", "digits", "--limit", "32", process=True)
    assert r.code == 0, r.stderr
    assert "accuracy on digits (test, 32 samples)" in r.stdout and "executorch" in r.stdout
    noise = [line for line in r.stderr.splitlines() if line.strip()]
    assert not noise, "library noise on stderr:\n" + "\n".join(noise)


def test_split_all_of_a_folder_with_its_own_train_part_is_refused(lenet5_run, tmp_path):
    data = tmp_path / "digits"
    for part, n in (("train", 3), ("test", 2)):
        for label in ("0", "1"):
            for i in range(n):
                (data / part / label).mkdir(parents=True, exist_ok=True)
                Image.new("L", (32, 32), 40 * i).save(data / part / label / f"{i}.png")
    run = copy_run(lenet5_run, tmp_path / "run")
    r = run_cli("eval", run, "--dataset", data, "--split", "all")
    assert r.code == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    (line,) = r.error_lines
    assert f"{data} has its own parts (test 4, train 6 samples), so split 'all' would score its training " \
           "samples too; pass --split test to score its test part in full" in line
    r = run_cli("eval", run, "--dataset", data, "--split", "test", "--json")
    assert r.code == 0, r.stderr  # what it names works: the 4 test images
    assert '"samples": 4' in r.stdout
