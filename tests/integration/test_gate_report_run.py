"""`edgekit gate`, `baseline`, `report` and `run` through the real CLI, on a trained LeNet-5.

The failing case is real: int8 artefacts calibrated on a handful of black images lose accuracy,
and the gate must catch it with its own exit status and name the rule.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, Result, read_manifest, run_cli

FORMATS = "onnx,tflite"  # the two whose int8 the constant calibration spoils (OpenVINO's NNCF copes)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lenet5_ckpt):
    tmp = tmp_path_factory.mktemp("gate")
    ckpt = tmp / "lenet5.pt"
    shutil.copy(lenet5_ckpt.path, ckpt)  # the session's trained LeNet-5 (tests/conftest.py)
    np.save(tmp / "black.npy", np.zeros((8, 32, 32), np.uint8))  # a deliberately bad calibration set
    good, bad = tmp / "good", tmp / "bad"
    for out, calib in ((good, "digits"), (bad, str(tmp / "black.npy"))):
        r = run_cli("export", ckpt, "--int8", "--to", FORMATS, "--calib", calib, "--calib-size", "6",
                    "--eval", "digits", "--out", out)
        assert r.code == 0, r.stderr
    return tmp, good, bad


def _junit(path):
    suite = ET.parse(path).getroot().find("testsuite")
    cases = suite.findall("testcase")
    return suite, {(c.get("classname"), c.get("name")): c for c in cases}


def test_a_good_run_passes_and_writes_junit_markdown_json(runs, tmp_path):
    _, good, _ = runs
    summary = tmp_path / "step-summary.md"
    r = run_cli("gate", good, "--max-drop", "1", "--min-agreement", "0.95",
                env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.code == 0, r.stdout + r.stderr
    assert "edgekit gate: PASSED" in r.stdout
    suite, cases = _junit(good / "gate" / "junit.xml")
    assert suite.get("tests") == "8" and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert ("edgekit.ci.gate.onnx.int8", "max_drop") in cases
    assert ("edgekit.ci.gate.tflite.fp32", "min_agreement") in cases
    assert "## edgekit gate: PASSED" in (good / "gate" / "summary.md").read_text()
    assert "## edgekit gate: PASSED" in summary.read_text()  # appended for the GitHub job summary
    assert json.loads((good / "gate" / "gate.json").read_text())["passed"] is True
    assert read_manifest(good)["gate"]["passed"] is True


def test_bad_calibration_fails_the_gate_with_its_own_code_naming_the_rule(runs):
    _, _, bad = runs
    r = run_cli("gate", bad, "--max-drop", "1")
    assert r.code == 4, r.stdout + r.stderr  # not 1 (export failures) or 2 (usage)
    assert "edgekit gate: FAILED" in r.stdout
    failed = [line for line in r.error_lines if "max_drop" in line]
    assert failed and all("is not <= 1 points below PyTorch fp32" in line for line in failed)
    assert any(line.startswith("error: gate: onnx/int8 max_drop: ") for line in failed)
    suite, cases = _junit(bad / "gate" / "junit.xml")
    assert int(suite.get("failures")) >= 1
    assert cases[("edgekit.ci.gate.onnx.int8", "max_drop")].find("failure") is not None
    assert cases[("edgekit.ci.gate.onnx.fp32", "max_drop")].find("failure") is None
    checks = json.loads((bad / "gate" / "gate.json").read_text())["checks"]
    assert {c["format"]: c["measured"] for c in checks if c["precision"] == "int8"}["onnx"] > 1


def test_a_missing_measurement_fails_rather_than_passes(runs, tmp_path):
    _, good, _ = runs
    r = run_cli("gate", good, "--min-speedup", "1.0", "--junit", tmp_path / "j.xml")
    assert r.code == 4
    want = "missing: no latency for target local-cpu: run `edgekit bench RUN --target local-cpu` first"
    assert want in r.stderr
    suite, _ = _junit(tmp_path / "j.xml")
    assert suite.get("errors") == "2"  # one per int8 artefact


def test_baseline_rules_catch_a_regression(runs, tmp_path):
    _, good, bad = runs
    r = run_cli("bench", good, "--iters", "20", "--no-torch")
    assert r.code == 0, r.stderr
    r = run_cli("baseline", good, "--out", tmp_path / "baseline.json")
    assert r.code == 0, r.stderr
    base = json.loads((tmp_path / "baseline.json").read_text())
    assert base["kind"] == "edgekit-baseline" and base["artefacts"]["onnx/int8"]["p50_ms"] > 0
    assert base["dataset"]["dataset"] == "digits" and "accuracy" in base["artefacts"]["tflite/int8"]
    r = run_cli("gate", good, "--baseline", tmp_path / "baseline.json", "--max-accuracy-regression", "0.5",
                "--max-latency-regression", "300")
    assert r.code == 0, r.stdout + r.stderr
    r = run_cli("gate", bad, "--baseline", tmp_path / "baseline.json", "--max-accuracy-regression", "1")
    assert r.code == 4 and "onnx/int8 max_accuracy_regression" in r.stderr
    assert "max_latency_regression" not in r.stdout  # only the rules asked for


def test_rules_from_a_file_and_mistakes_in_rules(runs, tmp_path):
    _, good, _ = runs
    (tmp_path / "gates.toml").write_text("[gate]\nmax-dorp = 1\n")
    r = run_cli("gate", good, "--rules", tmp_path / "gates.toml")
    assert r.code == 2 and "unknown gate rules max_dorp" in r.stderr
    (tmp_path / "gates.toml").write_text('[gate]\nmax-drop = "1"\n')
    r = run_cli("gate", good, "--rules", tmp_path / "gates.toml")
    assert r.code == 2 and "max-drop must be a number" in r.stderr
    (tmp_path / "gates.toml").write_text("[gate]\nmax-drop = 1\nmax_size_mb = 0.0001\n")  # either spelling
    r = run_cli("gate", good, "--rules", tmp_path / "gates.toml")
    assert r.code == 4 and "max_size_mb" in r.stderr  # a 1 kB ceiling no artefact meets
    r = run_cli("gate", good, "--rules", REPO / "examples" / "lenet5.toml")  # a recipe's [gate] works too
    assert r.code == 0, r.stdout + r.stderr
    r = run_cli("gate", good)
    assert r.code == 2 and "no gate rule given" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("gate", good, "--min-agreement", "95")
    assert r.code == 2 and "fraction between 0 and 1" in r.stderr
    r = run_cli("gate", good, "--max-drop", "1", "--baseline", tmp_path / "nope.json")
    assert r.code == 2 and "edgekit baseline RUN_DIR --out" in r.stderr


def test_report_draws_plots_and_an_html_page(runs):
    _, good, _ = runs
    shutil.rmtree(good / "report", ignore_errors=True)
    r = run_cli("report", good, "--html")
    assert r.code == 0, r.stderr
    folder = good / "report"
    for name in ("latency", "tradeoff", "size"):
        with Image.open(folder / f"{name}.png") as img:
            assert img.format == "PNG" and img.size[0] > 300
    md = (folder / "report.md").read_text()
    for row in ("onnx int8", "tflite fp32", "pytorch fp32"):
        assert f"| {row} |" in md
    assert "![tradeoff](tradeoff.png)" in md and "```mermaid" in md and "| onnxruntime |" in md
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<td>onnx int8</td>" in page


def test_run_a_recipe_end_to_end(tmp_path):
    # `make test` runs the main job's recipe once, as `make gate` (our CI's own gate), before pytest,
    # and names its run here (EDGEKIT_CI_GATE_RUN); run by hand, pytest runs the recipe itself.
    given = os.environ.get("EDGEKIT_CI_GATE_RUN")
    if given:
        out = Path(given).resolve()
        log = out.with_name(out.name + ".log")  # the recipe's stdout and stderr, and its exit code
        code, _, text = log.read_text().partition("\n")
        r = Result(int(code.removeprefix("exit code ")), text, text)
    else:
        out = tmp_path / "run"
        r = run_cli("run", REPO / "examples" / "lenet5.toml", "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    m = read_manifest(out)
    formats = {"onnx", "tflite", "openvino", "executorch"}  # the recipe's `to`
    assert m["settings"]["int8"] and {a["format"] for a in m["artefacts"]} == formats
    assert m["eval"]["dataset"] == "digits" and m["bench"]["local-cpu"]["settings"]["threads"] == 1
    assert m["gate"]["passed"] is True and (out / "gate" / "junit.xml").is_file()
    assert (out / "report" / "report.html").is_file()
    assert out.with_name(out.name + ".ckpt.pt").is_file()  # the [train] step's checkpoint, beside the run
    assert "gate: PASSED" in r.stdout


def test_recipe_mistakes_and_a_failing_recipe_gate(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "lenet5"\nto = "onnx"\ncalib-sise = 8\n')
    r = run_cli("run", recipe)
    assert r.code == 2 and "unknown keys calib_sise" in r.stderr
    recipe.write_text('model = "lenet5"\nto = "onnx"\n[gate]\nmax-dorp = 1\n')
    r = run_cli("run", recipe, "--out", tmp_path / "x")
    assert r.code == 2 and "max_dorp" in r.stderr and not (tmp_path / "x").exists()  # checked before work
    for text, match in [('int8 = "no"', "int8 must be true or false"), ("bench = 3", "bench must be a table"),
                        ('[[bench]]\ntarget = "nowhere"', "unknown target 'nowhere'"),
                        ('[gate]\nmax-drop = "1"', "max-drop must be a number"),
                        ('[preprocess]\nresize = "stretch"', "resize 'stretch'"),
                        ('[preprocess]\ncolour = "red"', "unknown preprocessing key 'colour'"),
                        ('max-drop = 0.5\nint8 = true', "max-drop needs int8 = true and an [eval]")]:
        recipe.write_text(f'model = "lenet5"\nto = "onnx"\n{text}\n')
        r = run_cli("run", recipe, "--out", tmp_path / "z")
        assert r.code == 2 and match in r.stderr and not (tmp_path / "z").exists(), (text, r.stderr)
    # paths in a recipe are relative to the recipe, wherever it is run from
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).integers(0, 255, (12, 32, 32), dtype=np.uint8))
    recipe.write_text('model = "lenet5"\nto = "onnx"\nint8 = true\ncalib = "calib.npy"\ncalib-size = 4\n')
    (tmp_path / "pre.toml").write_text('resize = "pad"\npad-value = 114\n')
    recipe.write_text('model = "lenet5"\nto = "onnx"\nint8 = true\ncalib = "calib.npy"\ncalib-size = 4\n'
                      'preprocess = "pre.toml"\n')
    r = run_cli("run", recipe, "--out", tmp_path / "rel")
    assert r.code == 0, r.stderr
    m = read_manifest(tmp_path / "rel")
    assert m["calibration"]["source"] == f"file:{tmp_path / 'calib.npy'}"
    assert m["model"]["preprocessing"]["resize"] == "pad" and m["model"]["preprocessing"]["pad_value"] == 114
    recipe.write_text('model = "lenet5"\nto = "onnx"\nint8 = true\n[eval]\ndataset = "digits"\n'
                      '[gate]\nmin-accuracy = 0.5\n')
    r = run_cli("run", recipe, "--out", tmp_path / "y")  # random weights: about 10% on digits
    assert r.code == 4 and "FAILED gate onnx/int8 min_accuracy" in r.stderr
    assert (tmp_path / "y" / "gate" / "junit.xml").is_file()


def test_max_drop_search_remedies_a_spoilt_int8_and_gate_fails_an_unmet_budget(runs, tmp_path):
    tmp, _, _ = runs
    out = tmp_path / "searched"
    r = run_cli("export", tmp / "lenet5.pt", "--int8", "--to", FORMATS, "--calib", tmp / "black.npy",
                "--calib-size", "6", "--max-drop", "1", "--eval", "digits", "--out", out)
    assert r.code == 0, r.stderr
    for art in (a for a in read_manifest(out)["artefacts"] if a["precision"] == "int8"):
        search = art["search"]
        attempts = search["attempts"]
        assert attempts[0]["drop_pp"] > 1  # the black calibration spoils the default...
        assert search["met"] and search["chosen"] > 0  # ...and a remedy brings it within 1 point
        assert attempts[search["chosen"]]["drop_pp"] <= 1 and search["held_out"]["split"] == "val"
        assert all({"settings", "drop_pp", "latency_p50_ms", "seconds"} <= set(a) for a in attempts)
        assert art["scheme"]["excluded"] == attempts[search["chosen"]]["settings"]["exclude"]
    assert f"{FORMATS.split(',')[0]} int8 kept attempt" in r.stdout
    assert sorted(p.name for p in (out / "onnx").iterdir()) == ["model.fp32.onnx", "model.int8.onnx"]
    r = run_cli("gate", out, "--min-agreement", "0.5")
    assert r.code == 0 and "max_drop_search" in r.stdout, r.stdout + r.stderr

    out = tmp_path / "unmet"  # a budget that no int8 artefact can meet
    r = run_cli("export", tmp / "lenet5.pt", "--int8", "--to", "onnx", "--calib", tmp / "black.npy",
                "--calib-size", "6", "--max-drop", "0", "--eval", "digits", "--out", out)
    assert r.code == 0, r.stderr
    assert "warning: onnx int8 misses the budget: best drop" in r.stderr
    m = read_manifest(out)
    search = next(a["search"] for a in m["artefacts"] if a["precision"] == "int8")
    assert not search["met"] and "exceeds the budget 0 pp" in search["reason"]
    assert len(search["attempts"]) >= 4  # every remedy was tried and recorded
    fp32 = next(a for a in m["artefacts"] if a["precision"] == "fp32")
    from edgekit.runs.manifest import sha256_file

    assert sha256_file(out / fp32["path"]) == fp32["sha256"]  # remedies never touch fp32
    r = run_cli("gate", out)  # no rule given: the run's own budget is the rule
    assert r.code == 4 and any("max_drop_search" in line for line in r.error_lines), r.stdout + r.stderr
    r = run_cli("report", out)
    assert r.code == 0 and "int8 search: onnx" in (out / "report" / "report.md").read_text()
