"""Will it run there? Real artefacts from tiny modules, exported by the real converters, checked against
devices described as the probe describes them: this machine (the real probe's answer) and an old
Raspberry Pi (tflite-runtime 2.14, onnxruntime 1.14, OpenVINO 2023.3: data, not a mock)."""

from __future__ import annotations

import importlib.metadata
import shutil
import struct

import pytest
import torch
import torch.nn as nn

from edgekit.compat import check_item, module, runtime_for
from edgekit.devices.local import LocalDevice
from edgekit.formats import get_format
from edgekit.formats.tflite.compat_ops import OP_RUNTIME, runtime_tf
from edgekit.targets import get_target
from tests.conftest import loaded_model as loaded
from tests.models import Cumsum

OLD_PI = {"python": "3.9.2", "machine": "aarch64", "numpy": "1.26.4", "runtimes": {
    "tflite-runtime": {"version": "2.14.0"}, "onnxruntime": {"version": "1.14.1"},
    "openvino": {"version": "2023.3.0"}, "executorch": {"version": "1.4.0"}}}


class Net(nn.Module):
    """Conv, average pool (OpenVINO writes it as opset14's AvgPool) and a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.tanh(self.conv(x))), 1))


@pytest.fixture(scope="module")
def here():
    """This machine as the probe sees it (with its ExecuTorch kernels), asked for the runtimes the
    registered formats declare, as ``edgekit check`` asks."""
    from edgekit.compat.device import probe

    return probe(LocalDevice(), ["executorch"])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("compat")
    model = loaded(Net(), (1, 1, 8, 8))
    out = {name: get_format(name).export_fp32(model, folder / f"m{get_format(name).extension}")
           for name in ("onnx", "openvino", "tflite")}
    out["executorch"] = get_format("executorch").export_fp32(loaded(Cumsum(), (1, 16)), folder / "m.pte")
    return out


def with_op_version(src, dst, op: str, version: int):
    """A copy of a real .tflite whose operator_codes entry for ``op`` says ``version``: a file made to
    need a newer op version, as a newer converter would write it (edited in place in the flatbuffer)."""
    from ai_edge_litert import schema_py_generated as schema

    shutil.copy(src, dst)
    buf = bytearray(dst.read_bytes())
    model = schema.Model.GetRootAs(buf, 0)
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == getattr(schema.BuiltinOperator, op):
            offset = oc._tab.Offset(8)  # OperatorCode.version
            assert offset, "the converter left the version field out"
            struct.pack_into("<i", buf, oc._tab.Pos + offset, version)
    dst.write_bytes(bytes(buf))
    return dst


def device_runtime(info: dict, name: str) -> dict:
    return {"name": name, **info["runtimes"][name], "numpy": info["numpy"]}


def test_the_probe_reports_this_machines_runtimes(here):
    from edgekit.compat.probe import PROBE_MARKER
    from edgekit.devices.base import PROBE_MARKER as EXPECTED

    assert PROBE_MARKER == EXPECTED
    for dist in ("onnxruntime", "openvino", "ai-edge-litert", "executorch"):
        assert here["runtimes"][dist]["version"] == importlib.metadata.version(dist)
    assert here["numpy"] == importlib.metadata.version("numpy")
    assert 14 in here["runtimes"]["openvino"]["opsets"]
    assert here["runtimes"]["executorch"]["program_identifier"] == "ET12"
    assert "XnnpackBackend" in here["runtimes"]["executorch"]["backends"]
    assert "aten::cumsum.out" in here["runtimes"]["executorch"]["operators"]


def test_tflite_ops_are_dated_by_litert_s_table(files, here):
    tfl = module("tflite")
    needs = tfl.needs(files["tflite"])
    assert needs["ops"]["FULLY_CONNECTED"] >= 1 and {"TANH", "AVERAGE_POOL_2D"} <= set(needs["ops"])
    assert needs["min_runtime_version"] == needs["required"]  # the converter dates it as the table does
    for info in (OLD_PI, here):
        name = "tflite-runtime" if info is OLD_PI else "ai-edge-litert"
        ok, why, fix = tfl.verdict(needs, device_runtime(info, name))
        assert ok is True and not fix, why


def test_a_newer_op_version_will_not_run_on_tflite_runtime_2_14(files, here, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    tfl = module("tflite")
    raised = with_op_version(files["tflite"], tmp_path / "fc13.tflite", "FULLY_CONNECTED", 13)
    needs = tfl.needs(raised)
    assert needs["required"] == OP_RUNTIME["FULLY_CONNECTED"][12] == "2.18.0"
    ok, why, fix = tfl.verdict(needs, device_runtime(OLD_PI, "tflite-runtime"))
    assert ok is False
    assert why == "FULLY_CONNECTED v13 needs TF Lite >= 2.18.0; the device has tflite-runtime 2.14.0"
    assert fix == "install ai-edge-litert >= 1.2 on the device"
    ok, _, _ = tfl.verdict(needs, device_runtime(here, "ai-edge-litert"))
    Interpreter(model_path=str(raised)).allocate_tensors()  # and this machine's LiteRT agrees: it loads
    assert ok is True


def test_an_op_version_newer_than_the_table(files, here, tmp_path):
    tfl = module("tflite")
    needs = tfl.needs(with_op_version(files["tflite"], tmp_path / "fc20.tflite", "FULLY_CONNECTED", 20))
    assert needs["beyond_table"] == ["FULLY_CONNECTED v20"]
    ok, why, fix = tfl.verdict(needs, device_runtime(OLD_PI, "tflite-runtime"))
    assert ok is False and "newer than TF Lite 2.20.0" in why
    assert fix == "install ai-edge-litert >= 2.0 on the device"
    ok, why, _ = tfl.verdict(needs, device_runtime(here, "ai-edge-litert"))
    assert ok is None and "cannot tell" in why  # LiteRT 2.x may or may not have it: edgekit does not guess


def test_tflite_runtime_needs_numpy_1(files):
    ok, why, fix = module("tflite").verdict(module("tflite").needs(files["tflite"]),
                                            {"name": "tflite-runtime", "version": "2.14.0", "numpy": "2.1.0"})
    assert ok is False and "numpy 2.1.0" in why and "numpy<2" in fix


def test_ai_edge_litert_versions_map_to_tf_lite_releases():
    assert runtime_tf("ai-edge-litert", "1.2.0") == "2.19.0"
    assert runtime_tf("ai-edge-litert", "1.3.0") == "2.20.0"
    assert runtime_tf("ai-edge-litert", "2.3.0") is None  # new enough for every op the table dates
    assert runtime_tf("tflite-runtime", "2.14.0") == "2.14.0"


def test_onnx_ir_10_is_too_new_for_onnxruntime_1_14(files, here):
    onx = module("onnx")
    needs = onx.needs(files["onnx"])
    assert needs == {"ir_version": 10, "opsets": {"ai.onnx": 18}}
    ok, why, fix = onx.verdict(needs, device_runtime(OLD_PI, "onnxruntime"))
    assert ok is False and "IR version 10 (reads up to 8)" in why
    assert fix == "upgrade onnxruntime on the device to >= 1.18"
    assert onx.verdict(needs, {"name": "onnxruntime", "version": "1.17.3"})[0] is False  # IR 9
    assert onx.verdict(needs, {"name": "onnxruntime", "version": "1.18.0"})[0] is True
    assert onx.verdict(needs, device_runtime(here, "onnxruntime"))[0] is True


def test_openvino_ir_and_opsets(files, here):
    ov = module("openvino")
    needs = ov.needs(files["openvino"])
    assert needs["ir_version"] == 11 and "AvgPool" in needs["opsets"]["14"]
    ok, why, fix = ov.verdict(needs, device_runtime(OLD_PI, "openvino"))
    assert ok is False and "opset14 (AvgPool" in why and "2024.0" in why
    assert fix == "upgrade openvino on the device to >= 2024.0"
    ok, why, _ = ov.verdict(needs, {"name": "openvino", "version": "2021.4.2"})
    assert ok is False and why.startswith("IR v11 needs OpenVINO >= 2022.1")
    # the device's own list of operation sets wins over the table
    shipped = {"name": "openvino", "version": "2025.1.0", "opsets": list(range(1, 14))}
    assert ov.verdict(needs, shipped)[0] is False
    assert ov.verdict(needs, device_runtime(here, "openvino"))[0] is True


def test_executorch_kernels_backends_and_writer(files, here):
    et = module("executorch")
    needs = et.needs(files["executorch"], {"executorch": importlib.metadata.version("executorch")})
    assert "aten::cumsum.out" in needs["operators"] and needs["delegates"] == ["XnnpackBackend"]
    current = device_runtime(here, "executorch")
    assert et.verdict(needs, current)[0] is True
    lacking = {**current, "operators": [op for op in current["operators"] if op != "aten::cumsum.out"]}
    ok, why, _ = et.verdict(needs, lacking)
    assert ok is False and why.endswith("registers no kernel for aten::cumsum.out")
    ok, why, _ = et.verdict(needs, {**current, "backends": ["QnnBackend"]})
    assert ok is False and "no XnnpackBackend" in why
    ok, why, fix = et.verdict(needs, device_runtime(OLD_PI, "executorch"))
    assert ok is False and why.startswith("written by executorch") and fix.startswith("install executorch >=")
    assert et.verdict(needs, {k: v for k, v in current.items() if k != "operators"})[0] is None


def test_the_runtime_that_would_run_follows_the_target_s_order(files, here):
    from edgekit.bench.core import collect

    pi = get_target("raspberrypi")
    both = {**here, "runtimes": {**here["runtimes"], "tflite-runtime": {"version": "2.14.0"}}}
    assert runtime_for("tflite", pi, both)[0]["name"] == "ai-edge-litert"
    assert runtime_for("tflite", pi, OLD_PI)[0]["name"] == "tflite-runtime"
    _, (item,) = collect(files["tflite"])
    row = check_item(item, pi, OLD_PI)
    assert row["verdict"] == "runs" and row["runtime"] == "tflite-runtime 2.14.0"
    _, (item,) = collect(files["onnx"])
    row = check_item(item, pi, {**OLD_PI, "runtimes": {}})
    assert row["verdict"] == "will not run" and row["kind"] == "no_runtime"
    assert row["fix"] == "pip install onnxruntime on the device"
    gpu = check_item(collect(files["tflite"])[1][0], get_target("local-gpu"), here)
    assert gpu["verdict"] == "not checked" and "runs no tflite" in gpu["why"]
