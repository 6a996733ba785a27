"""Microcontroller targets through the CLI, with the real TensorFlow Lite Micro (``tflite-micro``) and
Vela (``ethos-u-vela``): export for a Cortex-M writes a full-integer int8 .tflite and the firmware
files, check says whether it fits the part's RAM and flash, eval scores it in TFLM beside LiteRT,
bench on an Ethos-U target gives Vela's estimate marked ESTIMATED, and the gate refuses latency
rules on it unless told --allow-estimates."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import copy_run, run_cli

pytest.importorskip("tflite_micro", reason="pip install 'edgekit[mcu]' (tflite-micro)")
pytest.importorskip("ethosu", reason="pip install 'edgekit[mcu]' (ethos-u-vela)")


@pytest.fixture(scope="module")
def m4_run(tmp_path_factory, lenet5_ckpt):
    """The trained LeNet-5 exported for a Cortex-M4 with 256 KB of RAM: tflite only, full-integer int8."""
    out = tmp_path_factory.mktemp("mcu") / "m4"
    r = run_cli("export", lenet5_ckpt.path, "--target", "cortex-m4-256k", "--calib-size", "16", "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    return out, r


def _manifest(run):
    return json.loads((run / "manifest.json").read_text())


def test_export_for_a_cortex_m4_is_full_integer_int8_with_firmware_files(m4_run):
    run, r = m4_run
    assert "exporting tflite only" in r.stderr + r.stdout
    assert "int8 on" in r.stderr + r.stdout  # --int8 was not given: the target asks for it
    m = _manifest(run)
    arts = {(a["format"], a["precision"]): a for a in m["artefacts"]}
    assert set(arts) == {("tflite", "fp32"), ("tflite", "int8")}
    scheme = arts[("tflite", "int8")]["scheme"]
    assert scheme["type"] == "full-integer" and scheme["io"] == "int8"
    assert "cortex-m4-256k" in scheme["chosen"]["why"]
    from edgekit.formats.tflite.micro_int8 import full_integer_problems

    assert full_integer_problems(run / arts[("tflite", "int8")]["path"]) == []
    firmware = m["target"]["firmware"]
    assert firmware["fits"]["fits"] is True and 4_000 < firmware["arena_bytes"] < 64_000
    assert "CONV_2D" in firmware["ops"] and "FULLY_CONNECTED" in firmware["ops"]
    names = {f["path"] for f in firmware["files"]}
    assert {"firmware/model_data.h", "firmware/model_data.cc"} <= names
    header = (run / "firmware" / "model_data.h").read_text()
    assert str(firmware["arena_bytes"]) in header
    # the C array is the artefact's bytes, in order, with their length
    source = (run / "firmware" / "model_data.cc").read_text()
    data = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-fA-F]{2})", source))
    assert data == (run / arts[("tflite", "int8")]["path"]).read_bytes()
    assert any("AddConv2D" in line for line in firmware["resolver"])
    from edgekit.runs.manifest import sha256_file

    for f in firmware["files"]:
        assert sha256_file(run / f["path"]) == f["sha256"]


def test_check_says_it_fits_a_cortex_m4_and_not_a_part_too_small(m4_run, tmp_path):
    run = copy_run(m4_run[0], tmp_path / "run")
    r = run_cli("check", run, "--target", "cortex-m4-256k", "--json")
    assert r.code == 0, r.stdout + r.stderr
    rows = {(x["format"], x["precision"]): x for x in json.loads(r.stdout)["results"]}
    int8 = rows[("tflite", "int8")]
    assert int8["verdict"] == "fits" and int8["why"].startswith("fits: ")
    assert int8["fit"]["ram_bytes"] == int8["tflm"]["arena_bytes"] < 256 * 1024
    assert int8["runtime"].startswith("tflite-micro")
    # the gate's memory rule reads the RAM check measured on a microcontroller (there is no bench)
    r = run_cli("gate", run, "--target", "cortex-m4-256k", "--max-peak-mb", "0.01", "--formats", "tflite",
                "--json")
    assert r.code == 4, r.stdout + r.stderr
    peak = {c["precision"]: c for c in json.loads(r.stdout)["checks"] if c["rule"] == "max_peak_mb"}
    assert peak["int8"]["measured"] == pytest.approx(int8["fit"]["ram_bytes"] / 1e6)
    assert peak["int8"]["status"] == "fail"
    small = tmp_path / "targets"
    small.mkdir()
    (small / "tiny-m0.toml").write_text(
        'description = "a part too small"\nconnect = "mcu"\ncpu = "cortex-m0"\nram_kb = 4\nflash_kb = 32\n'
        '[runtimes]\ntflite = ["tflite-micro"]\n')
    r = run_cli("check", run, "--target", "tiny-m0", "--targets-dir", small)
    assert r.code == 3, r.stdout + r.stderr
    line = next(x for x in r.stderr.splitlines() if "tflite int8" in x)
    assert re.search(r"does not fit: needs [\d.]+ KB RAM, has 4 KB; needs [\d.]+ KB flash, has 32 KB",
                     line), line
    assert "Traceback" not in r.stderr


def test_eval_in_tflm_matches_litert_on_the_same_file(m4_run, tmp_path):
    run = copy_run(m4_run[0], tmp_path / "run")
    r = run_cli("eval", run, "--dataset", "digits", "--target", "cortex-m4-256k", "--json")
    assert r.code == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["target"] == "cortex-m4-256k" and result["runtime"].startswith("tflite-micro")
    int8 = next(x for x in result["results"] if (x["format"], x["precision"]) == ("tflite", "int8"))
    assert int8["runtime"] == "tflite-micro"
    assert abs(int8["top1"] - int8["litert"]["top1"]) <= 0.001  # the goal: within 0.1 point
    assert int8["litert"]["agreement_with_tflm"] >= 0.99
    assert int8["top1"] > 0.85  # a trained LeNet-5 on digits, really computed in TFLM


def test_bench_on_an_ethos_u_is_velas_estimate_and_the_gate_refuses_latency_on_it(m4_run, tmp_path):
    run = copy_run(m4_run[0], tmp_path / "run")
    r = run_cli("bench", run, "--target", "ethos-u55-128")
    assert r.code == 0, r.stdout + r.stderr
    assert "ESTIMATED" in r.stdout
    record = _manifest(run)["bench"]["ethos-u55-128"]
    assert record["estimated"].startswith("ethos-u-vela")
    row = next(x for x in record["results"] if x["precision"] == "int8")
    assert row["estimated"].startswith("ESTIMATED") and row["npu_ops"]["npu_share"] == 1.0
    assert row["p50_ms"] > 0 and row["cycles"] > 0 and row["estimate"]["layers"]
    fp32 = next(x for x in record["results"] if x["precision"] == "fp32")
    assert fp32["status"] == "skipped" and "Vela" in fp32["error"]
    r = run_cli("gate", run, "--target", "ethos-u55-128", "--max-latency-ms", "5", "--formats", "tflite")
    assert r.code == 2 and "ESTIMATE" in r.stderr and "--allow-estimates" in r.stderr, r.stderr
    r = run_cli("gate", run, "--target", "ethos-u55-128", "--max-latency-ms", "5", "--allow-estimates",
                "--max-peak-mb", "1", "--formats", "tflite", "--json")
    checks = {(c["precision"], c["rule"]): c for c in json.loads(r.stdout)["checks"]}
    assert checks[("int8", "max_latency_ms")]["status"] == "pass"
    assert "ESTIMATED" in checks[("int8", "max_latency_ms")]["detail"]
    assert checks[("int8", "max_peak_mb")]["measured"] == pytest.approx(row["ram_bytes"] / 1e6)


def test_bench_on_a_plain_cortex_m_is_refused_in_one_line(m4_run):
    r = run_cli("bench", m4_run[0], "--target", "arduino-nano-33-ble")  # a board's alias of cortex-m4-256k
    assert r.code == 2 and len(r.error_lines) == 1 and "no timing model" in r.error_lines[0], r.stderr
    assert "bench on cortex-m4-256k" in r.error_lines[0]
    assert "Traceback" not in r.stderr


def test_export_for_an_mcu_refuses_formats_it_cannot_run(lenet5_ckpt, tmp_path):
    r = run_cli("export", lenet5_ckpt.path, "--to", "onnx", "--target", "cortex-m4-256k",
                "--out", tmp_path / "run")
    assert r.code == 2 and "takes .tflite files only" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()
    # an Ethos-U profile whose system config Vela's .ini lacks: refused before anything is exported
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "my-npu.toml").write_text('connect = "ethos-u"\nram_kb = 512\nflash_kb = 2048\n'
                                          'system_config = "No_Such_System"\n')
    r = run_cli("export", lenet5_ckpt.path, "--target", "my-npu", "--targets-dir", targets,
                "--out", tmp_path / "run")
    assert r.code == 2 and len(r.error_lines) == 1 and "No_Such_System" in r.error_lines[0], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()


def test_export_for_an_ethos_u_writes_the_vela_compiled_model_for_the_firmware(lenet5_ckpt, tmp_path):
    out = tmp_path / "u55"
    r = run_cli("export", lenet5_ckpt.path, "--target", "ethos-u55-128", "--calib-size", "16", "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    firmware = _manifest(out)["target"]["firmware"]
    assert firmware["ops"] == ["ETHOSU"] and firmware["resolver"][-1] == "resolver.AddEthosU();"
    assert firmware["vela"]["ops"]["npu_share"] == 1.0 and firmware["vela"]["estimated"] is True
    compiled = out / "firmware" / "model_vela.tflite"
    source = (out / "firmware" / "model_data.cc").read_text()
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-fA-F]{2})", source)) == compiled.read_bytes()
    assert "AddEthosU" in (out / "firmware" / "op_resolver.h").read_text()


def test_the_reber_lstm_for_a_cortex_m7_is_full_integer_with_int16_on_its_recurrent_path(tmp_path):
    out = tmp_path / "lstm"
    r = run_cli("export", "lstm", "--target", "cortex-m7-1m", "--calib-size", "16", "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    m = _manifest(out)
    int8 = next(a for a in m["artefacts"] if a["precision"] == "int8")
    assert int8["scheme"]["type"] == "full-integer" and int8["scheme"]["io"] == "int8"
    assert "int16" in int8["scheme"]["activations"]
    r = run_cli("check", out, "--target", "cortex-m7-1m", "--json")
    assert r.code == 0, r.stdout + r.stderr
    rows = {x["precision"]: x for x in json.loads(r.stdout)["results"]}
    # the fp32 file too: its 24-input CONCATENATION was split for TFLM's kernel (at most 10 inputs)
    assert rows["fp32"]["verdict"] == rows["int8"]["verdict"] == "fits"
    arena = rows["int8"]["fit"]["ram_bytes"]
    from edgekit.formats.tflite import micro

    micro.Session({"path": str(out / int8["path"]), "arena_bytes": arena})  # allocates in what it says
    assert m["target"]["firmware"]["arena_bytes"] == arena


def test_an_int8_file_tflm_would_read_wrong_is_refused_with_the_fix(lenet5_run, tmp_path):
    """edgekit's plain int8 LeNet-5 (PT2E) has tanh outputs at scales TFLM's kernel does not read:
    TFLM would run it with its outputs off by up to 16 steps, so check says so and how to fix it."""
    run = copy_run(lenet5_run, tmp_path / "run")
    r = run_cli("check", run, "--target", "cortex-m4-256k")
    assert r.code == 3, r.stdout + r.stderr
    line = next(x for x in r.error_lines if "tflite int8" in x)
    assert "TANH" in line and "export with --target cortex-m4-256k" in line
    assert not any("tflite fp32" in x for x in r.error_lines)  # the fp32 file runs in TFLM's float kernels
    assert not any(x.startswith(("error: onnx", "error: openvino")) for x in r.error_lines)  # not for TFLM
