"""Vela's estimate for an Ethos-U NPU (``edgekit.mcu.vela``) against real Vela 5.2 compiles: the
session's LeNet-5 int8 (every operator on the NPU), its fp32 file (every operator on the CPU), a
tiny int8 model with a GATHER (which an Ethos-U55 cannot run), a damaged file and bad settings.
Each compile takes under a second; LeNet-5's is made once for the module."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from edgekit.errors import DataError, UsageError

pytest.importorskip("ethosu")

from edgekit.mcu.vela import VelaConfig, compile_estimate, version  # noqa: E402

U55 = VelaConfig("ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram")
U65 = VelaConfig("ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram")


@pytest.fixture(scope="module")
def lenet5(tmp_path_factory, lenet5_run):
    out = tmp_path_factory.mktemp("vela-lenet5")
    tflite = lenet5_run.path / "tflite" / "model.int8.tflite"
    return tflite, out, compile_estimate(tflite, U55, out)


def _ops(path: Path) -> list[str]:
    from ai_edge_litert import schema_py_generated as s

    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    found = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = max(code.builtinCode, code.deprecatedBuiltinCode)
        found.append(code.customCode.decode() if kind == s.BuiltinOperator.CUSTOM else names[kind])
    return found


def test_lenet5_int8_runs_wholly_on_an_ethos_u55(lenet5):
    tflite, out, e = lenet5
    assert e["estimated"] is True and e["tool"] == f"ethos-u-vela {version()}" == "ethos-u-vela 5.2.0"
    assert e["ops"]["cpu"] == 0 and e["ops"]["npu"] == e["ops"]["total"] == len(_ops(tflite))
    assert e["ops"]["npu_share"] == 1.0 and e["cpu_ops"] == []
    lenet = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TANH", "AVERAGE_POOL_2D"}
    assert lenet <= set(e["npu_op_types"])
    # the compiled model is one Ethos-U command stream, nothing left for the CPU
    compiled = Path(e["compiled"])
    assert compiled == out / "model.int8_vela.tflite" and compiled.stat().st_size == e["compiled_bytes"]
    assert _ops(compiled) == ["ethos-u"] and e["compiled_op_types"] == ["ethos-u"]
    json.dumps(e, allow_nan=False)  # goes into a manifest as it is


def test_the_estimate_is_vela_s_own_numbers(lenet5):
    _, out, e = lenet5
    summary = out / "model.int8_summary_Ethos_U55_High_End_Embedded.csv"
    assert e["files"]["summary_csv"] == str(summary)  # Vela's raw summary is kept
    row = next(csv.DictReader(summary.open()))
    assert e["cycles"] == int(row["cycles_total"]) > 0
    assert e["inference_ms"] == pytest.approx(e["cycles"] / 500e6 * 1e3)  # at the profile's 500 MHz
    assert e["inferences_per_s"] == pytest.approx(1e3 / e["inference_ms"])
    assert e["macs"] == int(row["nn_macs"]) > 400_000  # LeNet-5 does about 0.42 M MACs
    # LeNet-5's activations are a few KiB of SRAM; its 61,706 int8 weights sit in flash
    assert 4 * 1024 < e["sram_bytes"] < 32 * 1024
    assert 61_706 < e["flash_bytes"] < 2 * e["model_bytes"] and e["dram_bytes"] == 0
    assert e["weights_storage"] == "Off-chip Flash" and e["feature_map_storage"] == "SRAM"
    c = e["config"]
    assert (c["accelerator"], c["system_config"], c["memory_mode"]) == (
        "ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram")
    assert c["core_clock_hz"] == 500e6 and c["memory_clocks_hz"] == {"Sram": 500e6, "OffChipFlash": 62.5e6}
    assert (c["weights_in"], c["arena_in"]) == ("OffChipFlash", "Sram")


def test_per_layer_cycles_add_up_to_the_total(lenet5):
    _, _, e = lenet5
    layers = e["layers"]
    assert layers and all({"name", "op", "cycles", "macs", "share", "target"} <= set(x) for x in layers)
    assert sum(x["cycles"] for x in layers) == e["cycles"]
    assert sum(x["macs"] for x in layers) == e["macs"]
    assert sum(x["share"] for x in layers) == pytest.approx(1.0, abs=1e-3)
    assert {x["target"] for x in layers} == {"NPU"}
    assert max(layers, key=lambda x: x["macs"])["op"] == "Conv2D"  # C3, 16@5x5: most of the MACs


def _gather_model(path: Path) -> Path:
    """int8 ADD -> GATHER (channels 0 and 3) -> ADD: a valid LiteRT model whose GATHER an Ethos-U55
    cannot run."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as s

    def tensor(name, shape, ttype, buffer, scale=None):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buffer
        if scale is not None:
            t.quantization = s.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [scale], [0]
        return t

    def op(code, ins, outs, kind, options):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code, ins, outs
        o.builtinOptionsType, o.builtinOptions = kind, options
        return o

    m = s.ModelT()
    m.version = 3
    m.operatorCodes = []
    for builtin in (s.BuiltinOperator.ADD, s.BuiltinOperator.GATHER):
        code = s.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        code.version = 1
        m.operatorCodes.append(code)
    m.buffers = [s.BufferT() for _ in range(6)]
    m.buffers[3].data = np.array([0, 3], np.int32).tobytes()
    g = s.SubGraphT()
    i8 = s.TensorType.INT8
    g.tensors = [tensor("input", [1, 8, 8, 16], i8, 1, 0.05), tensor("added", [1, 8, 8, 16], i8, 2, 0.1),
                 tensor("indices", [2], s.TensorType.INT32, 3), tensor("gathered", [1, 8, 8, 2], i8, 4, 0.1),
                 tensor("output", [1, 8, 8, 2], i8, 5, 0.2)]
    g.inputs, g.outputs = [0], [4]
    gather = s.GatherOptionsT()
    gather.axis = 3
    add = s.BuiltinOptions.AddOptions
    g.operators = [op(0, [0, 0], [1], add, s.AddOptionsT()),
                   op(1, [1, 2], [3], s.BuiltinOptions.GatherOptions, gather),
                   op(0, [3, 3], [4], add, s.AddOptionsT())]
    m.subgraphs = [g]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(b.Output())
    return path


def test_an_op_the_npu_lacks_falls_back_to_the_cpu_with_vela_s_reason(tmp_path):
    model = _gather_model(tmp_path / "gather.tflite")
    e = compile_estimate(model, U55, tmp_path / "out")
    assert e["ops"] == {"npu": 2, "cpu": 1, "total": 3, "npu_share": 0.6667}
    assert e["cpu_ops"] == [{"op": "GATHER", "name": "gathered", "why": "Unsupported opType"}]
    # the firmware's op resolver needs the Ethos-U operator and TFLM's GATHER
    assert e["compiled_op_types"] == ["GATHER", "ethos-u"] == sorted(set(_ops(Path(e["compiled"]))))
    targets = [(x["op"], x["target"]) for x in e["layers"]]
    assert targets == [("Add", "NPU"), ("GatherV2", "CPU"), ("Add", "NPU")]
    assert "CPU" in e["note"]  # Vela does not time the Cortex-M's share


def test_a_float_model_falls_back_entirely_and_says_why(tmp_path, lenet5_run):
    e = compile_estimate(lenet5_run.path / "tflite" / "model.fp32.tflite", U55, tmp_path)
    assert e["ops"]["npu"] == 0 and e["ops"]["cpu"] == e["ops"]["total"] > 0
    assert "FULLY_CONNECTED" in e["cpu_op_types"] and "CONV_2D" in e["cpu_op_types"]
    assert all("Float32" in c["why"] for c in e["cpu_ops"])
    assert e["cycles"] == 0 and e["inferences_per_s"] is None
    json.dumps(e, allow_nan=False)


def test_an_ethos_u65_with_dram_keeps_weights_and_arena_in_dram(tmp_path):
    e = compile_estimate(_gather_model(tmp_path / "gather.tflite"), U65, tmp_path / "out")
    c = e["config"]
    assert c["core_clock_hz"] == 1e9 and c["memory_clocks_hz"] == {"Sram": 1e9, "Dram": 234_375_000.0}
    assert (c["weights_in"], c["arena_in"], c["cache_in"]) == ("Dram", "Dram", "Sram")
    assert e["dram_bytes"] > 0 and e["flash_bytes"] == 0
    assert e["inference_ms"] == pytest.approx(e["cycles"] / 1e9 * 1e3)
    assert e["arena_cache_size"] > 2**30  # no SRAM size given: Vela's whole address space
    sized = VelaConfig(U65.accelerator, U65.system_config, U65.memory_mode, arena_cache_size=384 * 1024)
    assert sized.args()[-2:] == ["--arena-cache-size", "393216"]
    sized_e = compile_estimate(tmp_path / "gather.tflite", sized, tmp_path / "sized")
    assert sized_e["arena_cache_size"] == 393216


def test_a_users_ini_sets_the_clock(tmp_path):
    """A board's own .ini (here an Alif Ensemble HE-like U55 at 160 MHz, inheriting Arm's timings):
    the same cycles, the time at the board's clock."""
    from edgekit.mcu.vela import _config_files_dir

    ini = tmp_path / "board.ini"
    arm = (_config_files_dir() / "Arm" / "vela.ini").read_text()
    ini.write_text(arm + "\n[System_Config.Board_HE]\ninherit=System_Config.Ethos_U55_High_End_Embedded\n"
                   "core_clock=160e6\n")
    board = VelaConfig("ethos-u55-128", "Board_HE", "Shared_Sram", config_file=str(ini))
    assert board.args()[board.args().index("--config") + 1] == str(ini.resolve())
    model = _gather_model(tmp_path / "gather.tflite")
    e = compile_estimate(model, board, tmp_path / "board")
    ref = compile_estimate(model, U55, tmp_path / "arm")
    assert e["config"]["core_clock_hz"] == 160e6 and e["config"]["memory_clocks_hz"]["OffChipFlash"] == 20e6
    assert e["cycles"] == ref["cycles"]
    assert e["inference_ms"] == pytest.approx(ref["inference_ms"] * 500 / 160)


def test_a_damaged_file_is_one_line_naming_it(tmp_path, lenet5_run):
    bad = tmp_path / "cut.tflite"
    bad.write_bytes((lenet5_run.path / "tflite" / "model.int8.tflite").read_bytes()[:20_000])
    with pytest.raises(DataError) as err:  # Vela itself dies with SIGSEGV here
        compile_estimate(bad, U55, tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and "cut.tflite" in msg and "ethos-u55-128" in msg
    assert "Failed to load TfLite model" in msg and "Traceback" not in msg


def test_bad_settings_and_missing_files_are_one_line(tmp_path, lenet5):
    tflite = lenet5[0]
    with pytest.raises(UsageError, match="no system config Nope.*known: .*Ethos_U55_High_End_Embedded"):
        compile_estimate(tflite, VelaConfig("ethos-u55-128", "Nope", "Shared_Sram"), tmp_path)
    with pytest.raises(UsageError, match="no Vela configuration file"):
        compile_estimate(tflite, VelaConfig("ethos-u55-128", "X", "Y", str(tmp_path / "none.ini")), tmp_path)
    with pytest.raises(UsageError, match="invalid choice: 'ethos-u55-99'"):
        compile_estimate(tflite, VelaConfig("ethos-u55-99", U55.system_config, U55.memory_mode), tmp_path)
    with pytest.raises(DataError, match="no such file"):
        compile_estimate(tmp_path / "none.tflite", U55, tmp_path)
    with pytest.raises(DataError, match="did not finish compiling model.int8.tflite .* within 0.01 s"):
        compile_estimate(tflite, U55, tmp_path, timeout=0.01)

