"""TensorFlow Lite Micro: the session (edgekit/formats/tflite/micro.py), measure and the op resolver
(edgekit/mcu/tflm.py) and the firmware files (edgekit/mcu/firmware.py), on the real tflite-micro
interpreter with the session's trained LeNet-5 run (its LiteRT int8 and fp32 files as they are)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from edgekit.errors import UsageError

pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install 'edgekit[mcu]')")

from edgekit.bench.runtime_kit import RuntimeProblem  # noqa: E402
from edgekit.formats.tflite import micro  # noqa: E402
from edgekit.mcu import firmware, tflm  # noqa: E402

LENET5_OPS = ["RESHAPE", "DEPTHWISE_CONV_2D", "TANH", "AVERAGE_POOL_2D", "CONV_2D", "FULLY_CONNECTED"]


def int8_file(lenet5_run):
    return lenet5_run.path / "tflite" / "model.int8.tflite"


def fp32_file(lenet5_run):
    return lenet5_run.path / "tflite" / "model.fp32.tflite"


def digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    from edgekit.data import builtin
    from edgekit.models.spec import Preprocessing

    pre = Preprocessing(size=(32, 32), grayscale=True, mean=(0.5,), std=(0.5,))
    x, y = builtin.digits_arrays(pre, "test")
    return x[:n], y[:n]


def with_ops_replaced(data: bytes, replace: dict) -> bytes:
    """The flatbuffer with some operator codes swapped (builtin name -> name): a real file whose
    operators TFLM lacks, without a converter that writes them."""
    import flatbuffers

    fb = micro.schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    for code in model.operatorCodes:
        for old, new in replace.items():
            if code.builtinCode == getattr(fb.BuiltinOperator, old):
                code.builtinCode = getattr(fb.BuiltinOperator, new)
                code.deprecatedBuiltinCode = min(code.builtinCode, 127)  # 127: "see builtin_code"
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ---------------------------------------------------------------- measure


def test_measure_reports_the_arena_ops_and_flash_of_lenet5_int8_and_the_arena_is_exact(lenet5_run):
    path = int8_file(lenet5_run)
    m = tflm.measure(path)
    assert m["ran"] and m["error"] == ""
    assert m["ops"] == LENET5_OPS and m["missing_ops"] == []
    assert m["flash_bytes"] == path.stat().st_size
    assert 8_000 < m["arena_bytes"] < 32_000  # 14,176 bytes with tflite-micro 0.dev20261023
    assert m["arena_head"] + m["arena_tail"] == m["arena_bytes"]
    assert m["tflm"]
    # the figure is what TFLM really needs: it runs in exactly that much, and not in 16 bytes less
    x, _ = digits(2)
    assert micro.Session({"path": path, "arena_bytes": m["arena_bytes"]}).run(x).shape == (2, 10)
    with pytest.raises(RuntimeProblem, match=r"arena of \d+ bytes is too small") as err:
        micro.Session({"path": path, "arena_bytes": m["arena_bytes"] - 16})
    assert err.value.kind == "bad_model"


def test_measure_names_every_operator_tflm_lacks_and_the_session_stops_at_the_first(lenet5_run, tmp_path):
    bad = tmp_path / "gelu.tflite"
    bad.write_bytes(with_ops_replaced(int8_file(lenet5_run).read_bytes(), {"TANH": "GELU",
                                                                           "AVERAGE_POOL_2D": "TOPK_V2"}))
    m = tflm.measure(bad)
    assert m["missing_ops"] == ["GELU", "TOPK_V2"] and not m["ran"] and m["arena_bytes"] is None
    assert m["error"] == "TensorFlow Lite Micro has no kernel for GELU, TOPK_V2"
    with pytest.raises(RuntimeProblem, match="no kernel for GELU;"):  # TFLM itself stops at the first
        micro.Session({"path": bad})


def test_a_truncated_file_gives_one_line_from_measure_and_the_session(lenet5_run, tmp_path):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(int8_file(lenet5_run).read_bytes()[:5000])
    m = tflm.measure(cut)
    assert not m["ran"] and m["ops"] == [] and m["flash_bytes"] == 5000
    assert m["error"].startswith("this TFLite file is truncated or damaged (5000 bytes")
    assert "\n" not in m["error"]
    with pytest.raises(RuntimeProblem, match="truncated or damaged"):
        micro.Session({"path": cut})
    stopped = tflm.measure(int8_file(lenet5_run), timeout=0.001)  # a child that hangs is stopped
    assert not stopped["ran"] and "did not load and run this file within" in stopped["error"]


# ---------------------------------------------------------------- the session


def test_tflm_int8_agrees_with_litert_on_digits(lenet5_run):
    from edgekit.formats.tflite.runtime import Session as LiteRT

    path = int8_file(lenet5_run)
    x, y = digits(16)
    session = micro.Session({"path": path})
    got, want = session.run(x), LiteRT({"path": path}).run(x)  # TFLM: one digit at a time
    assert got.shape == want.shape == (16, 10) and got.dtype == np.float32
    step = float(session.output_details[0]["quantization_parameters"]["scales"][0])
    steps = np.abs(got - want) / step
    # TFLM's reference int8 kernels round differently from LiteRT's (XNNPACK): here 97% of the
    # outputs within one quantization step, none beyond three; every digit gets the same class
    assert (steps <= 1.01).mean() >= 0.9 and steps.max() <= 4.01
    assert (got.argmax(1) == want.argmax(1)).all() and (got.argmax(1) == y).mean() >= 0.8
    np.testing.assert_array_equal(session.run(x[3:4]), got[3:4])  # batch or not, the same numbers
    assert session.input_info()["input_shape"] == [1, 1, 32, 32]
    assert session.info["runtime"] == "tflite-micro" and session.input_dtype == session.output_dtype == "int8"
    assert not session.stateful  # no variable tensors: nothing reset between digits


def test_fp32_tflite_runs_in_tflm_float_kernels(lenet5_run):
    from edgekit.formats.tflite.runtime import Session as LiteRT

    path = fp32_file(lenet5_run)
    x, _ = digits(4)
    got = micro.Session({"path": path}).run(x)
    np.testing.assert_allclose(got, LiteRT({"path": path}).run(x), atol=1e-4)
    m = tflm.measure(path)
    assert m["ran"] and m["ops"] == LENET5_OPS
    assert m["arena_bytes"] > tflm.measure(int8_file(lenet5_run))["arena_bytes"]  # float activations


def test_runner_face_runs_the_files_batch_only(lenet5_run):
    path = int8_file(lenet5_run)
    session = micro.Session({"path": path, "batch": 1})
    session.make_inputs(np.random.default_rng(0))
    session.infer()
    outputs, inputs = session.run_once(None)
    assert session.input_shapes == [[1, 1, 32, 32]]
    assert inputs[0].dtype == np.int8 and outputs[0].dtype == np.int8 and outputs[0].shape == (1, 10)
    again, _ = session.run_once(inputs)
    np.testing.assert_array_equal(again[0], outputs[0])
    with pytest.raises(RuntimeProblem, match="own batch of 1.*--batch 1"):
        micro.Session({"path": path, "batch": 4})
    with pytest.raises(RuntimeProblem, match=r"input of shape \[2, 32, 32\] does not fit") as err:
        micro.Session({"path": path}).run(np.zeros((2, 32, 32), np.float32))
    assert err.value.kind == "bad_input"


# ---------------------------------------------------------------- op resolver


def test_resolver_lines_use_tflms_method_names():
    assert tflm.resolver_lines(LENET5_OPS + ["TANH"]) == [
        "static tflite::MicroMutableOpResolver<6> resolver;", "resolver.AddReshape();",
        "resolver.AddDepthwiseConv2D();", "resolver.AddTanh();", "resolver.AddAveragePool2D();",
        "resolver.AddConv2D();", "resolver.AddFullyConnected();"]
    assert [tflm.resolver_method(op) for op in ("MAX_POOL_2D", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM",
                                                "ETHOSU", "ethos-u", "PADV2", "BATCH_MATMUL")] == [
        "AddMaxPool2D", "AddLogistic", "AddUnidirectionalSequenceLSTM", "AddEthosU", "AddEthosU", "AddPadV2",
        "AddBatchMatMul"]
    with pytest.raises(UsageError, match="no kernel for operator GELU") as err:
        tflm.resolver_lines(["CONV_2D", "GELU"])
    assert "\n" not in str(err.value)


def test_every_builtin_in_the_resolver_table_has_a_kernel_in_this_tflm_build():
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed: cannot list the kernels in TFLM's library")
    from tflite_micro.python.tflite_micro import _runtime

    symbols = subprocess.run(["nm", "-C", _runtime.__file__], capture_output=True, text=True).stdout
    kernels = set(re.findall(r"Register_([A-Z0-9_]+)\(", symbols))
    assert kernels, "no Register_ symbols: the library is stripped"
    assert sorted(set(tflm.BUILTIN_METHODS) - kernels) == []


# ---------------------------------------------------------------- firmware files


def parse_c_array(text: str, name: str) -> bytes:
    body = re.search(rf"alignas\(16\) const unsigned char {name}\[\] = \{{(.*?)\}};", text, re.S).group(1)
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_firmware_files_round_trip_and_compile(lenet5_run, tmp_path):
    import hashlib

    path = int8_file(lenet5_run)
    data = path.read_bytes()
    out = tmp_path / "fw"
    got = firmware.write_firmware(path, out, arena_bytes=14176, ops=LENET5_OPS, extra={"model": "lenet5"})
    assert set(got["files"]) == {"model_data.h", "model_data.cc", "op_resolver.h"}
    for name, sha in got["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha
    assert got["model_sha256"] == hashlib.sha256(data).hexdigest() and got["arena_bytes"] == 14176
    cc, h, ops_h = ((out / n).read_text() for n in ("model_data.cc", "model_data.h", "op_resolver.h"))
    assert parse_c_array(cc, "g_model_data") == data
    assert all(len(line.split(",")) - 1 <= 12 for line in cc.splitlines() if line.startswith("  0x"))
    assert f"const unsigned int g_model_data_len = {len(data)};" in cc
    assert "constexpr int kTensorArenaSize = 14176;" in h and got["model_sha256"] in h
    assert "// model: lenet5" in h
    assert "#ifndef EDGEKIT_MODEL_DATA_H_" in h and "//   resolver.AddConv2D();" in h
    assert "tflite::MicroMutableOpResolver<kNumOps>" in ops_h and "constexpr int kNumOps = 6;" in ops_h
    assert "if (resolver.AddUnidirectionalSequenceLSTM()" not in ops_h and "resolver.AddTanh()" in ops_h
    # a name that is no C identifier is made one; bytes work as well as a path
    named = firmware.write_firmware(data[:40], tmp_path / "fw2", name="3-digit model", arena_bytes=1, ops=[])
    assert named["array"] == "g__3_digit_model" and (tmp_path / "fw2" / "_3_digit_model.cc").is_file()
    with pytest.raises(UsageError, match="no kernel for operator GELU"):
        firmware.write_firmware(data, tmp_path / "fw3", arena_bytes=1, ops=["GELU"])
    assert not (tmp_path / "fw3").exists()

    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++) here: the C array's compilation is not checked")
    (out / "main.cc").write_text("\n".join([
        "#include <cstdint>", "#include <cstdio>", '#include "model_data.h"',
        "int main() {",
        "  if (reinterpret_cast<std::uintptr_t>(g_model_data) % 16 != 0) return 2;",
        f"  if (g_model_data_len != {len(data)}u || kTensorArenaSize != 14176) return 3;",
        "  fwrite(g_model_data, 1, g_model_data_len, stdout);",
        "  return 0;", "}", ""]))
    subprocess.run([compiler, "-std=c++17", "-Wall", "-Werror", "-c", "model_data.cc"], cwd=out, check=True)
    subprocess.run([compiler, "-std=c++17", "-Wall", "-Werror", "-o", "check", "main.cc", "model_data.o"],
                   cwd=out, check=True)
    run = subprocess.run([str(out / "check")], capture_output=True)
    assert run.returncode == 0 and run.stdout == data
