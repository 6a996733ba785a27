"""A user's own model (file.py:Class) on their own data (the real MNIST test files), as the CLI
runs it: declared preprocessing at export, reused by eval, calibration from the IDX files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, read_manifest

MNIST = REPO.parent / "shared" / "data" / "mnist"
MODEL = REPO / "benchmarks" / "user_model" / "lenet_user.py"
WEIGHTS = REPO / "benchmarks" / "user_model" / "lenet_user.pt"
DECLARED = ["--resize", "squash", "--mean", "0.1307", "--std", "0.3081", "--grayscale"]

pytestmark = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                reason="the real MNIST files are in ../shared/data/mnist on project machines")


def plain_pytorch_top1() -> float:
    """The same model scored on all 10k digits with Pillow + numpy + torch, no edgekit."""
    import importlib.util

    import torch

    from edgekit.data.idx import read_idx

    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    x = np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.BILINEAR), np.float32) / 255.0
                  for im in images])
    x = ((x - 0.1307) / 0.3081)[:, None].astype(np.float32)
    spec = importlib.util.spec_from_file_location("lenet_user", MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net()
    net.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    with torch.no_grad():
        pred = net.eval()(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == labels).mean())


def test_user_model_on_idx_declared_once_reused_by_eval(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("export", f"{MODEL}:Net", "--input-shape", "1,1,32,32", "--weights", WEIGHTS, "--int8",
            "--to", "onnx", "--calib", MNIST, "--calib-size", "32", "--out", run, *DECLARED)
    assert r.code == 0, r.stderr
    assert "declares no preprocessing" not in r.stderr
    m = read_manifest(run)
    pre = m["model"]["preprocessing"]
    assert (pre["resize"], pre["mean"], pre["std"], pre["grayscale"]) == ("squash", [0.1307], [0.3081], True)
    assert m["calibration"]["source"] == f"dataset:{MNIST.resolve()}" and m["calibration"]["split"] == "train"

    r = cli("eval", run, "--dataset", MNIST, "--split", "all", "--json")
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["preprocessing"] == pre and result["preprocessing_overrides"] == {}
    torch_row = result["results"][0]
    assert result["samples"] == 10000
    assert torch_row["top1"] == pytest.approx(plain_pytorch_top1(), abs=1e-9)  # the same numbers
    assert all(row["drop_pp"] < 1.0 for row in result["results"])

    r = cli("eval", run, "--dataset", MNIST, "--limit", "200", "--resize", "pad", "--json")
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["preprocessing"]["resize"] == "pad"
    assert result["preprocessing_overrides"] == {"resize": "pad"}
    assert read_manifest(run)["eval"]["preprocessing_overrides"] == {"resize": "pad"}


def test_undeclared_preprocessing_warns_and_bad_declarations_exit_2(cli, tmp_path):
    r = cli("export", f"{MODEL}:Net", "--input-shape", "1,1,32,32", "--to", "onnx", "--calib", MNIST,
            "--out", tmp_path / "a")
    assert r.code == 0, r.stderr
    assert "declares no preprocessing" in r.stderr and "--mean" in r.stderr
    toml = tmp_path / "pre.toml"
    toml.write_text('[preprocess]\nresize = "stretch"\n')
    for args, message in [
        (["--preprocess", tmp_path / "missing.toml"], "does not exist"),
        (["--preprocess", toml], "resize 'stretch'"),
        (["--std", "0"], "--std values must not be 0"),
        (["--mean", "a,b"], "--mean 'a,b' is not a comma-separated list"),
    ]:
        out = tmp_path / f"bad{len(message)}"
        r = cli("export", f"{MODEL}:Net", "--input-shape", "1,1,32,32", "--to", "onnx", "--out", out, *args)
        assert r.code == 2 and len(r.error_lines) == 1 and message in r.error_lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr and not Path(out).exists()


NHWC_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):  # a Keras habit: channels last
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Linear(4 * 30 * 30, 10)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x.permute(0, 3, 1, 2))).flatten(1))
'''


def test_nhwc_model_end_to_end_and_declarations_that_contradict_the_input(cli, tmp_path):
    model = tmp_path / "nhwc.py"
    model.write_text(NHWC_MODEL)
    run = tmp_path / "run"
    r = cli("export", f"{model}:Net", "--input-shape", "1,32,32,1", "--layout", "NHWC", "--to", "onnx",
            "--int8", "--calib", MNIST, "--calib-size", "8", "--out", run, *DECLARED)
    assert r.code == 0, r.stderr
    pre = read_manifest(run)["model"]["preprocessing"]
    assert (pre["layout"], pre["size"], pre["grayscale"]) == ("NHWC", [32, 32], True)
    r = cli("eval", run, "--dataset", MNIST, "--limit", "50", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["preprocessing"] == pre
    r = cli("eval", run, "--dataset", MNIST, "--limit", "50", "--layout", "NCHW")
    assert r.code == 2 and "--layout NCHW, but" in r.error_lines[0], r.stderr

    toml = tmp_path / "pre.toml"
    toml.write_text("input-size = 28\n")
    for args, message in [(["--preprocess", toml], "resizes to 28x28 but"),
                          (["--rgb"], "--rgb, but"),
                          (["--layout", "NHWC"], "--layout NHWC applies to your own models")]:
        out = tmp_path / f"bad{len(message)}"
        name = "lenet5" if "own models" in message else f"{MODEL}:Net"
        shape = [] if name == "lenet5" else ["--input-shape", "1,1,32,32"]
        r = cli("export", name, *shape, "--to", "onnx", "--out", out, *args)
        assert r.code == 2 and message in r.error_lines[0] and not out.exists(), (args, r.stderr)
