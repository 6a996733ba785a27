"""The int8 configuration follows the CPU (edgekit.cpu) and the manifest's scheme records it."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekit.cpu import CpuInfo, ort_int8_choice, this_cpu
from edgekit.formats.onnx import OnnxFormat
from edgekit.models.spec import InputSpec, LoadedModel, Preprocessing

EPYC = {"sse4_2", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}  # this machine's kind
HASWELL = {"sse4_2", "avx2", "fma"}
PI5 = {"fp", "asimd", "asimddp", "crc32"}  # Raspberry Pi 5 (Cortex-A76) Features


@pytest.mark.parametrize("machine, flags, activations, reduce_range", [
    ("x86_64", EPYC, "uint8", False),  # VNNI: U8S8 is native (vpdpbusd)
    ("x86_64", {"avx2", "avx_vnni"}, "uint8", False),  # Alder Lake's AVX-VNNI counts too
    ("x86_64", HASWELL, "uint8", True),  # no VNNI: 7-bit weights against int16 saturation
    ("aarch64", PI5, "int8", False),  # ARM: S8S8, onnxruntime's default there
    ("riscv64", set(), "int8", False),
])
def test_onnx_int8_choice_follows_the_cpu(machine, flags, activations, reduce_range):
    choice = ort_int8_choice(CpuInfo(machine, frozenset(flags)))
    assert (choice.activations, choice.reduce_range) == (activations, reduce_range)
    assert choice.cpu.startswith(machine) and choice.why
    record = choice.record()
    assert record["activations"] == activations and record["weights"] == "int8"


def test_cpu_description_names_the_int8_flags():
    assert CpuInfo("x86_64", frozenset(EPYC)).describe() == "x86_64 avx512_vnni avx512bw avx2"
    assert CpuInfo("aarch64", frozenset(PI5)).describe() == "aarch64 asimddp"


def test_this_cpu_reads_flags_or_features(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert this_cpu(x86).flags == {"fpu", "avx2", "avx512_vnni"}
    assert "asimddp" in this_cpu(arm).flags
    assert this_cpu(tmp_path / "missing").flags == frozenset()


def test_onnx_int8_export_records_and_applies_the_choice(tmp_path):
    import onnx

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    model = LoadedModel("tiny", m, "classification", InputSpec((1, 3, 24, 24)), Preprocessing(), 10, {}, 0, 0,
                        None, None, True)
    fmt = OnnxFormat()
    fp32 = fmt.export_fp32(model, tmp_path / "m.onnx")
    calib = np.random.default_rng(0).random((8, 3, 24, 24), dtype=np.float32)
    q = fmt.export_int8(model, fp32, calib, tmp_path / "q.onnx")
    expected = ort_int8_choice(this_cpu())
    assert q.scheme["chosen"] == expected.record()
    assert q.scheme["activations"].startswith(expected.activations)
    # the activations' QuantizeLinear zero points carry the chosen type in the file itself
    graph = onnx.load(q.path).graph
    zero_points = {i.name: i.data_type for i in graph.initializer}
    types = {zero_points[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
             and n.input[2] in zero_points}
    wanted = onnx.TensorProto.UINT8 if expected.activations == "uint8" else onnx.TensorProto.INT8
    assert types == {wanted}
