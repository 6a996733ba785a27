"""Full-integer int8 TFLite files for microcontrollers, run in the real TensorFlow Lite Micro."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import loaded_model

pytest.importorskip("tflite_micro")
pytest.importorskip("ai_edge_quantizer")


def _lstm(lstm_run):
    from edgekit.data.calibration import load_samples
    from edgekit.models.resolve import load_run_model

    manifest = json.loads((lstm_run.path / "manifest.json").read_text())
    model = load_run_model(manifest, lstm_run.path)
    return model, load_samples("reber", model, 16).x


def _tflm(path, x):
    """TFLM's outputs for the float samples ``x``, through the file's int8 input and output."""
    from tflite_micro.python.tflite_micro import runtime as rt

    interp = rt.Interpreter.from_file(str(path), arena_size=1 << 20)
    ins, outs = interp.get_input_details(0), interp.get_output_details(0)
    assert ins["dtype"] == np.int8 and outs["dtype"] == np.int8
    (i_scale,), (i_zero,) = (ins["quantization_parameters"][k] for k in ("scales", "zero_points"))
    (o_scale,), (o_zero,) = (outs["quantization_parameters"][k] for k in ("scales", "zero_points"))
    outs = []
    for sample in x:
        interp.set_input(np.clip(np.round(sample[None] / i_scale) + i_zero, -128, 127).astype(np.int8), 0)
        interp.invoke()
        outs.append((interp.get_output(0).astype(np.float32) - o_zero) * o_scale)
    return np.concatenate(outs)


def _litert(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for sample in x:
        interp.set_tensor(i["index"], sample[None].astype(np.float32))
        interp.invoke()
        outs.append(interp.get_tensor(o["index"]))
    return np.concatenate(outs)


def test_lstm_full_integer_runs_in_tflm_like_fp32(lstm_run, tmp_path):
    from edgekit.formats.tflite.micro_int8 import export_full_integer, full_integer_problems

    model, calib = _lstm(lstm_run)
    fp32 = lstm_run.path / "tflite" / "model.fp32.tflite"
    out = tmp_path / "model.mcu.tflite"
    result = export_full_integer(model, fp32, calib, out)

    assert full_integer_problems(out) == []
    scheme = result.scheme
    assert scheme["type"] == "full-integer" and scheme["io"] == "int8"
    assert scheme["activations"].startswith("int16") and "lstm (LSTM)" in scheme["activations"]
    assert scheme["calibration_samples"] == 16 and scheme["tool"].startswith("ai-edge-quantizer")
    assert any("CONCATENATION of 24 inputs" in r for r in scheme["tflm_rewrites"])  # TFLM takes 10 at most

    got, want = _tflm(out, calib[:8]), _litert(fp32, calib[:8])
    sqnr = 10 * np.log10((want**2).sum() / ((want - got) ** 2).sum())
    assert sqnr > 20, f"TFLM full-integer vs fp32: SQNR {sqnr:.1f} dB"


def test_problems_name_dynamic_range_and_float_files(lstm_run):
    from edgekit.formats.tflite.micro_int8 import full_integer_problems

    dynamic = full_integer_problems(lstm_run.path / "tflite" / "model.int8.tflite")
    assert any(p.startswith("dynamic-range ops") and "FULLY_CONNECTED x25" in p for p in dynamic), dynamic
    assert any("model input" in p and "float32" in p for p in dynamic), dynamic

    fp32 = full_integer_problems(lstm_run.path / "tflite" / "model.fp32.tflite")
    assert any(p.startswith("ops on float tensors") and "LOGISTIC" in p for p in fp32), fp32
    assert any("model output" in p and "float32" in p for p in fp32), fp32
    assert "CONCATENATION of 24 inputs (TFLM takes at most 10)" in fp32


def test_static_model_full_integer_and_no_exclusions(tmp_path):
    import torch.nn as nn

    from edgekit.errors import UsageError
    from edgekit.formats.base import Int8Options
    from edgekit.formats.tflite.convert import export_fp32
    from edgekit.formats.tflite.micro_int8 import export_full_integer, full_integer_problems

    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    model = loaded_model(module, (1, 1, 8, 8))
    calib = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
    fp32 = export_fp32(model, tmp_path / "fp32.tflite")
    with pytest.raises(UsageError, match="cannot keep layers in float"):
        export_full_integer(model, fp32, calib, tmp_path / "x.tflite", Int8Options(exclude=("0",)))
    assert not (tmp_path / "x.tflite").exists()

    result = export_full_integer(model, fp32, calib, tmp_path / "mcu.tflite")
    assert result.scheme["type"] == "full-integer" and result.scheme["io"] == "int8"
    assert full_integer_problems(tmp_path / "mcu.tflite") == []
    got = _tflm(tmp_path / "mcu.tflite", calib)
    want = module(__import__("torch").from_numpy(calib)).detach().numpy()
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.75


def test_a_bidirectional_grus_reverse_runs_on_the_integers(tmp_path):
    """ai-edge-quantizer leaves a bidirectional layer's REVERSE_V2 in float between a DEQUANTIZE and
    a QUANTIZE; for TFLM the reverse runs on the integers (it only moves values), with the same outputs."""
    import torch

    import edgekit.formats.tflite.quantize as quantize
    from edgekit.formats.tflite import TFLiteFormat
    from edgekit.formats.tflite.micro_int8 import _recurrent_recipe, fit_to_tflm, full_integer_problems
    from tests.models import BinaryGRU

    torch.manual_seed(0)
    model = loaded_model(BinaryGRU(), (1, 10, 6), static=False, task="binary", layout="NTC")
    fp32 = TFLiteFormat().export_fp32(model, tmp_path / "gru.fp32.tflite")
    calib = np.random.default_rng(0).standard_normal((8, 10, 6)).astype(np.float32)
    raw = quantize.aeq_quantize(model, fp32, calib, _recurrent_recipe("default"))
    (tmp_path / "raw.tflite").write_bytes(raw)
    assert any("REVERSE_V2" in p for p in full_integer_problems(tmp_path / "raw.tflite"))
    fixed, rewrites = fit_to_tflm(raw)
    assert any(r.startswith("REVERSE_V2 on the integers") for r in rewrites)
    (tmp_path / "fixed.tflite").write_bytes(fixed)
    assert not any("REVERSE_V2" in p for p in full_integer_problems(tmp_path / "fixed.tflite"))
    from edgekit.formats.tflite.runtime import Session

    def outputs(path):
        session = Session({"path": str(path)})
        return np.concatenate([session.run(sample[None]) for sample in calib])

    np.testing.assert_array_equal(outputs(tmp_path / "fixed.tflite"), outputs(tmp_path / "raw.tflite"))
