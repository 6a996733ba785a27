"""`edgekit inspect`: per-layer int8 error of a real run, in each format's real runtime, and proof
that the names it ranks are the handles each quantizer excludes layers by."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgekit import inspect as insp
from edgekit.errors import UsageError
from edgekit.export.plan import ExportPlan, plan_from_manifest, run_export
from edgekit.formats.tflite import inspect as insp_tflite
from edgekit.models.resolve import load_planned_model
from edgekit.models.spec import ModelOptions

FORMATS = ("onnx", "openvino", "tflite")
CONV_OPS = {"Conv", "Convolution", "CONV_2D", "DEPTHWISE_CONV_2D"}


def _export(root: Path, model: str, options: ModelOptions | None = None, formats=FORMATS) -> Path:
    plan = ExportPlan(model=model, options=options or ModelOptions(), int8=True, calib_size=16,
                      formats=formats, out=root / "run", verify_samples=4)
    outcome = run_export(plan, report=lambda _: None)
    assert not outcome.failed, outcome.failed
    return outcome.run_dir


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    run_dir = _export(tmp_path_factory.mktemp("inspect"), "lenet5")
    lines: list[str] = []
    result = insp.inspect_run(run_dir, samples=8, report=lines.append)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    model = load_planned_model(plan_from_manifest(manifest, run_dir))
    return run_dir, result, lines, model


def _graph_names(fmt: str, run_dir: Path, model) -> set[str]:
    """Names an exclusion can take, read from the artefacts (and the model for TFLite)."""
    if fmt == "onnx":
        import onnx

        return {n.name for n in onnx.load(str(run_dir / "onnx/model.fp32.onnx")).graph.node}
    if fmt == "openvino":
        import openvino as ov

        ir = ov.Core().read_model(str(run_dir / "openvino/model.fp32.xml"))
        return {op.get_friendly_name() for op in ir.get_ordered_ops()}
    return set(dict(model.module.named_modules()))


def test_inspect_ranks_every_layer_of_every_int8_artefact(lenet_run):
    run_dir, result, lines, model = lenet_run
    modules = dict(model.module.named_modules())
    assert set(result["formats"]) == set(FORMATS)
    assert result["samples"] == 8 and result["source"].startswith("builtin:")
    for fmt in FORMATS:
        r = result["formats"][fmt]
        assert r["status"] == "ok", r
        layers = r["layers"]
        assert len(layers) >= 5, (fmt, layers)
        sqnr = [e["sqnr_db"] for e in layers]
        assert all(math.isfinite(s) for s in sqnr), (fmt, sqnr)
        assert sqnr == sorted(sqnr), fmt  # worst first
        assert all(-1.0 <= e["cosine"] <= 1.0 + 1e-9 for e in layers)
        assert {e["name"] for e in layers} <= _graph_names(fmt, run_dir, model), fmt
        convs = [e for e in layers if e["op"] in CONV_OPS]
        assert len(convs) == 3, (fmt, convs)  # LeNet-5: C1, C3, C5
        assert {e["torch_name"] for e in convs} == {"features.0", "features.3", "features.6"}, fmt
        assert all(e["torch_name"] is None or e["torch_name"] in modules for e in layers)
        assert (run_dir / r["plot"]).stat().st_size > 1000
        assert r["plot"] == f"report/inspect_{fmt}.png"
    assert len(lines) == 3 and all(line.startswith("ok ") for line in lines)
    # stored in the manifest, beside what export wrote
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stored = manifest["inspect"]["formats"]["onnx"]["layers"]
    assert stored[0]["name"] == result["formats"]["onnx"]["layers"][0]["name"]
    assert len(manifest["artefacts"]) == 6
    head, rows = insp.table_rows(manifest["inspect"], top=3)
    assert head[0] == "format" and len(rows) == 9 and all(len(r) == len(head) for r in rows)


def test_layer_errors_matches_the_artefacts_own_output_error(lenet_run):
    """The last layer's number is the error of the artefact's output, as export verified it."""
    run_dir, result, _, model = lenet_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for fmt in ("onnx", "tflite"):  # (OpenVINO's int8 run may pick bf16 for float ops: not exact)
        x, _ = insp.inspect_samples(manifest, model, 8)
        errors = insp.layer_errors(fmt, model, run_dir / f"{fmt}/model.fp32.{_ext(fmt)}",
                                   run_dir / f"{fmt}/model.int8.{_ext(fmt)}", x)
        last = [e for e in errors if e.torch_name == "classifier.3"]
        assert len(last) == 1
        from edgekit.export.verify import compare, run_session
        from edgekit.formats import get_format

        f = get_format(fmt)
        ref = run_session(f.open(run_dir / f"{fmt}/model.fp32.{_ext(fmt)}"), x)
        out = run_session(f.open(run_dir / f"{fmt}/model.int8.{_ext(fmt)}"), x)
        assert last[0].sqnr_db == pytest.approx(compare(ref, out, judge=False).sqnr_db, abs=1.0)


def _ext(fmt: str) -> str:
    return {"onnx": "onnx", "openvino": "xml", "tflite": "tflite"}[fmt]


def _sqnr(ref: np.ndarray, out: np.ndarray) -> float:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - out) ** 2)))


def test_onnx_names_are_nodes_to_exclude_and_the_ranking_means_something(lenet_run):
    """Quantize again keeping the worst-ranked weighted node in float: its weights really stay
    float, and the output gets closer to fp32 than when the best-ranked one is kept instead."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    from edgekit.export.verify import run_session
    from edgekit.formats import get_format
    from edgekit.formats._util import calibration_batches
    from edgekit.formats.onnx.quantize import _reader

    run_dir, result, _, model = lenet_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    from edgekit.data.calibration import load_samples

    batches = calibration_batches(load_samples(None, model, 16, seed=0).x, model, torch_tensors=False)
    x, _ = insp.inspect_samples(manifest, model, 8)
    fmt = get_format("onnx")
    ref = run_session(fmt.open(run_dir / "onnx/model.fp32.onnx"), x)
    layers = [e for e in result["formats"]["onnx"]["layers"] if e["op"] in CONV_OPS | {"Gemm"}]
    sqnr = {}
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(run_dir / "onnx/model.fp32.onnx"), str(pre), skip_symbolic_shape=True)
        for which, node in (("worst", layers[0]["name"]), ("best", layers[-1]["name"])):
            out_path = Path(tmp) / f"{which}.onnx"
            quantize_static(str(pre), str(out_path), _reader(batches), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                            nodes_to_exclude=[node], extra_options={"WeightSymmetric": True})
            assert _onnx_weights_quantized(run_dir / "onnx/model.int8.onnx", node)
            assert not _onnx_weights_quantized(out_path, node), (which, node)
            sqnr[which] = _sqnr(ref, run_session(fmt.open(out_path), x))

    assert sqnr["worst"] >= sqnr["best"], sqnr


def _onnx_weights_quantized(path: Path, node_name: str) -> bool:
    import onnx

    graph = onnx.load(str(path)).graph
    node = next(n for n in graph.node if n.name == node_name)
    return node.input[1] not in {i.name for i in graph.initializer}


def test_openvino_names_are_nncf_ignored_scope_names(lenet_run):
    """nncf validates IgnoredScope names against the graph (an unknown name raises), and the
    ignored ops get no FakeQuantize on their inputs."""
    import nncf
    import openvino as ov

    run_dir, result, _, model = lenet_run
    worst = [e["name"] for e in result["formats"]["openvino"]["layers"] if e["op"] in CONV_OPS][:2]
    from edgekit.data.calibration import load_samples

    calib = load_samples(None, model, 8, seed=0).x
    ir = ov.Core().read_model(str(run_dir / "openvino/model.fp32.xml"))
    q = nncf.quantize(ir, nncf.Dataset([s[None] for s in calib]), subset_size=8,
                      ignored_scope=nncf.IgnoredScope(names=worst))
    ops = {op.get_friendly_name(): op for op in q.get_ordered_ops()}
    for name in worst:
        op = ops[name]
        srcs = [op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())]
        assert "FakeQuantize" not in srcs, (name, srcs)
    with pytest.raises(Exception, match="not-a-layer"):
        nncf.quantize(ir, nncf.Dataset([s[None] for s in calib]), subset_size=8,
                      ignored_scope=nncf.IgnoredScope(names=["not-a-layer"]))


def test_tflite_torch_names_are_pt2e_module_handles(lenet_run):
    """litert-torch 0.10's ``set_module_name(name, None)`` asserts ("not supported yet"), so a
    module is kept in float by dropping the PT2E annotations of the nodes whose
    ``nn_module_stack`` paths are ``name``; the worst-ranked conv then comes out float."""
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekit.formats.tflite import quantize as tfl

    run_dir, result, _, model = lenet_run
    conv = next(e for e in result["formats"]["tflite"]["layers"] if e["op"] in CONV_OPS)
    with pytest.raises(AssertionError, match="not supported"):
        pq.PT2EQuantizer().set_module_name(conv["torch_name"], None)

    class Excluding(pq.PT2EQuantizer):
        def annotate(self, gm):
            gm = super().annotate(gm)
            for n in gm.graph.nodes:
                if conv["torch_name"] in [path for path, _ in n.meta.get("nn_module_stack", {}).values()]:
                    n.meta.pop("quantization_annotation", None)
            return gm

    quantizer = Excluding().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))
    example = model.example_input()
    graph, _ = tfl._capture(model.module.eval(), example)
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        prepared = prepare_pt2e(graph, quantizer)
        for _ in range(4):
            prepared(torch.randn_like(example))
        quantized = tfl._mark_eval(convert_pt2e(prepared, fold_quantize=False))
        edge = litert_torch.convert(quantized, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tflite"
        edge.export(str(path))
        ops = insp_tflite._tflite_ops(insp_tflite._tflite_interpreter(path))
    locations = {v: k for k, v in insp_tflite._tflite_locations(model.module).items()}
    mine = [op for op in ops if op["op"] == conv["op"] and locations[conv["torch_name"]] in op["locations"]]
    assert mine and all(not op["quantized"] for op in mine), mine
    assert any(op["quantized"] for op in ops)  # the rest is still int8


def test_inspect_refuses_runs_without_int8_and_unknown_formats(lenet_run, tmp_path):
    run_dir, *_ = lenet_run
    with pytest.raises(UsageError, match="no int8 executorch"):
        insp.inspect_run(run_dir, formats=("executorch",), report=lambda _: None)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    fp32_only = tmp_path / "fp32"
    fp32_only.mkdir()
    manifest["artefacts"] = [a for a in manifest["artefacts"] if a["precision"] == "fp32"]
    (fp32_only / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="export with --int8"):
        insp.inspect_run(fp32_only, report=lambda _: None)
    with pytest.raises(UsageError, match="does not know the format"):
        insp.layer_errors("coreml", None, Path("a"), Path("b"), np.zeros((1, 1)))


def test_dequantize_uses_each_channels_own_scale():
    y = np.array([[[[10, -20]], [[30, 40]]]], dtype=np.int8)  # (1, 2, 1, 2), channels last
    detail = {"quantization_parameters": {"scales": np.array([0.5, 0.25], np.float32),
                                          "zero_points": np.array([0, 2]), "quantized_dimension": 3}}
    out = insp_tflite._dequantize(y, detail)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [5.0, 15.0])
    np.testing.assert_allclose(out[0, :, 0, 1], [-5.5, 9.5])


def test_resnet50_every_conv_traced_to_its_module_in_every_format(tmp_path, resnet_tiny_run):
    """BatchNorm folding renames convs (OpenVINO "Multiply_123"; ONNX scopes name the BN):
    still every one of ResNet-50's 53 convs is traced to its own Conv2d."""
    import torch

    from tests.conftest import copy_run

    # the session's int8 run of ResNet-50 at a quarter width on 64x64 (tests/conftest.py), copied:
    # inspect writes into it
    run_dir = copy_run(resnet_tiny_run, tmp_path / "run")
    result = insp.inspect_run(run_dir, samples=4, formats=FORMATS, report=lambda _: None)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    modules = dict(load_planned_model(plan_from_manifest(manifest, run_dir)).module.named_modules())
    for fmt in FORMATS:
        convs = [e for e in result["formats"][fmt]["layers"] if e["op"] in CONV_OPS]
        names = {e["torch_name"] for e in convs}
        assert len(convs) == 53 and len(names) == 53, fmt
        assert all(isinstance(modules.get(n), torch.nn.Conv2d) for n in names), fmt
