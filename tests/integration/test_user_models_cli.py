"""Users' models as public repositories write them, through the whole CLI: a CIFAR ResNet-20 built by
a factory function (with a lambda shortcut), named by file and by module path; export to every
default format with int8, each verified; eval on the real CIFAR-10 test images; bench."""

from __future__ import annotations

import shutil

import pytest

from edgekit.formats import default_names
from tests.conftest import REPO, read_manifest, run_cli

CIFAR_MODEL = REPO / "tests" / "data" / "user_models" / "cifar_resnet.py"
CIFAR_TEST = REPO.parent / "shared" / "data" / "cifar10" / "test"
CIFAR_PRE = ["--mean", "0.4914,0.4822,0.4465", "--std", "0.247,0.243,0.261", "--resize", "squash"]


@pytest.fixture(scope="module")
def resnet20_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("factory") / "run"
    r = run_cli("export", f"{CIFAR_MODEL}:resnet20", "--input-shape", "1,3,32,32", "--int8",
                "--calib-size", "16", *CIFAR_PRE, "--out", out)
    return r, out


def test_a_factory_function_exports_to_every_format_and_verifies(resnet20_run):
    r, out = resnet20_run
    assert r.code == 0, r.stderr
    m = read_manifest(out)
    got = {(a["format"], a["precision"]): a for a in m["artefacts"]}
    assert set(got) == {(f, p) for f in default_names() for p in ("fp32", "int8")}
    for (fmt, precision), a in got.items():
        assert a["status"] == "ok", (fmt, precision, a.get("error"))
        if precision == "fp32":
            assert a["verify"]["passed"], (fmt, a["verify"])
        else:  # int8 is measured against the PyTorch model, not passed or failed
            assert a["verify"]["top1_agreement"] >= 0.5 and a["verify"]["sqnr_db"] > 10, (fmt, a["verify"])
    assert m["model"]["name"].endswith("cifar_resnet.py:resnet20")
    assert m["model"]["options"]["code"]["path"] == str(CIFAR_MODEL)


@pytest.mark.skipif(not CIFAR_TEST.is_dir(), reason="CIFAR-10 test images are in ../shared/data")
def test_eval_and_bench_rebuild_the_factory_model(resnet20_run):
    _, out = resnet20_run
    r = run_cli("eval", out, "--dataset", CIFAR_TEST, "--split", "all", "--limit", "64", "--json")
    assert r.code == 0, r.stderr
    result = read_manifest(out)["eval"]
    assert result["samples"] == 64
    rows = {(x["format"], x["precision"]) for x in result["results"] if x["status"] == "ok"}
    assert rows == {("pytorch", "fp32")} | {(f, p) for f in default_names() for p in ("fp32", "int8")}
    r = run_cli("bench", out, "--iters", "3", "--warmup", "1")
    assert r.code == 0, r.stderr
    assert read_manifest(out)["bench"]["local-cpu"]["results"][0]["format"] == "pytorch"  # rebuilt model


def test_a_module_path_from_the_current_folder(tmp_path):
    pkg = tmp_path / "zoo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(CIFAR_MODEL, pkg / "cifar.py")
    r = run_cli("export", "zoo.cifar:resnet8_narrow", "--model-args", '{"num_classes": 4}', "--input-shape",
                "1,3,32,32", "--to", "onnx", "--out", tmp_path / "run", cwd=tmp_path)
    assert r.code == 0, r.stderr
    m = read_manifest(tmp_path / "run")
    assert m["model"]["name"] == "zoo.cifar:resnet8_narrow" and m["model"]["num_classes"] == 4
    r = run_cli("export", "zoo.cifar:nothing", "--input-shape", "1,3,32,32", "--out", tmp_path / "r2",
                cwd=tmp_path)
    assert r.code == 2 and "Traceback" not in r.stderr
    (line,) = r.error_lines
    assert "nothing not found in module zoo.cifar" in line and "resnet20()" in line
    assert not (tmp_path / "r2").exists()
