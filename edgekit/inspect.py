"""Where int8 loses accuracy: per-layer error of each int8 artefact against its fp32 artefact.

For every layer the quantizer touched, the int8 artefact's output of that layer is compared with
the fp32 artefact's output of the same layer on the same samples (SQNR in dB and cosine). The
error accumulates through the network, so a layer's number is "how far off the int8 model is by
the time it leaves this layer". Each format uses its own toolchain's debugging hooks:

- ONNX: ``onnxruntime.quantization.qdq_loss_debug`` (intermediate outputs added to both models,
  activations matched by tensor name; the int8 value is the one after its QuantizeLinear ->
  DequantizeLinear pair). The reference is the fp32 file after ``quant_pre_process``, made as
  ``edgekit/formats/onnx.py`` makes it, because quantize_static quantized that graph: node names
  come from it, and they are what ``quantize_static(nodes_to_exclude=...)`` takes. For the dynamo
  exporter's graphs pre-processing renames nothing (BatchNorm is already folded into Conv), so
  the names are also those of ``onnx/model.fp32.onnx``.
- OpenVINO: ``Model.add_outputs`` on both IRs, ops matched by friendly name (NNCF keeps the
  names of the ops it quantizes and only inserts FakeQuantize/Convert/Multiply around them),
  fp32 run pinned to f32, int8 as the CPU plugin runs it by default. The int8 value is taken
  after the op's output FakeQuantize where there is one. Names are what
  ``nncf.IgnoredScope(names=[...])`` takes.
- TFLite: both flatbuffers run in ai-edge-litert with ``experimental_preserve_all_tensors`` and
  no default delegate (XNNPACK would hide intermediate tensors); int8 tensors are dequantized
  with their own scale and zero point. litert-torch names each op's output tensor after the
  module locations it came from ("pkg.Class/pkg.Class_attr/..."), so an int8 op is paired with
  the fp32 op of the same type, first location and shape (k-th with k-th where that repeats), and
  its name is the PyTorch module path rebuilt from that location, the handle a PT2E quantizer
  filters on (see ``LayerError.name``).
"""

from __future__ import annotations

import ast
import io
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekit import manifest as mf
from edgekit.errors import UsageError, require

DEFAULT_SAMPLES = 32
PLOT_LAYERS = 20
CONV_OPS = frozenset({"Conv", "ConvTranspose", "Convolution", "GroupConvolution", "ConvolutionBackpropData",
                      "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D"})
LINEAR_OPS = frozenset({"Gemm", "MatMul", "FULLY_CONNECTED", "BATCH_MATMUL"})


@dataclass(frozen=True)
class LayerError:
    """One layer's int8 error. ``name`` is the handle the format's quantizer excludes by:
    onnx: the node name (``quantize_static(nodes_to_exclude=[...])``); openvino: the op's friendly
    name (``nncf.IgnoredScope(names=[...])``); tflite: the PyTorch module path (PT2E module-name
    filters; litert-torch 0.10's ``set_module_name(name, None)`` asserts, so a caller drops the
    annotations of nodes whose ``nn_module_stack`` paths are or lie under ``name``)."""

    name: str
    op: str  # op type as the toolchain names it: Conv, Convolution, CONV_2D, ...
    torch_name: str | None  # module path in the PyTorch model, where it can be traced
    sqnr_db: float  # int8 output of this layer vs the fp32 one, same samples
    cosine: float

    def to_dict(self) -> dict:
        return asdict(self)


class _Stats:
    """Running sums for SQNR and cosine of ``out`` against ``ref`` over many samples."""

    def __init__(self):
        self.signal = self.noise = self.dot = self.out2 = 0.0

    def add(self, ref: np.ndarray, out: np.ndarray) -> None:
        r, o = np.asarray(ref, np.float64).ravel(), np.asarray(out, np.float64).ravel()
        keep = np.isfinite(r) & np.isfinite(o)  # fp32 max-pool padding is -inf
        r, o = r[keep], o[keep]
        self.signal += float(r @ r)
        self.noise += float((r - o) @ (r - o))
        self.dot += float(r @ o)
        self.out2 += float(o @ o)

    def error(self, name: str, op: str, torch_name: str | None) -> LayerError:
        sqnr = float("inf") if self.noise == 0 else 10.0 * np.log10(max(self.signal, 1e-30) / self.noise)
        denom = float(np.sqrt(self.signal * self.out2))
        cosine = self.dot / denom if denom else (1.0 if self.noise == 0 else 0.0)
        return LayerError(name, op, torch_name, float(sqnr), float(cosine))


def layer_errors(
    fmt_name: str, model, fp32_path: Path, int8_path: Path, samples: np.ndarray
) -> list[LayerError]:
    """Per-layer error of ``int8_path`` against ``fp32_path`` on ``samples``; worst (lowest SQNR) first."""
    if fmt_name not in _ERRORS:
        raise UsageError(f"edgekit inspect does not know the format {fmt_name!r}; "
                         f"known: {', '.join(_ERRORS)}")
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if len(x) == 0:
        raise UsageError("edgekit inspect needs at least one sample")
    errors = _ERRORS[fmt_name](model, Path(fp32_path), Path(int8_path), x)
    return sorted(errors, key=lambda e: (e.sqnr_db, e.name))


# --- ONNX ------------------------------------------------------------------------------------

ONNX_CHUNK = 8  # samples per collect_activations call: bounds the memory held for activations


def _onnx_errors(model, fp32_path: Path, int8_path: Path, x: np.ndarray) -> list[LayerError]:
    q = require("onnxruntime.quantization", "onnxruntime", "onnx")
    from onnxruntime.quantization import qdq_loss_debug as dbg

    from edgekit.formats._util import quiet

    onnx = require("onnx", "onnx", "onnx")
    with tempfile.TemporaryDirectory(prefix="edgekit-inspect-") as tmp:
        pre, aug_f, aug_q = (str(Path(tmp) / n) for n in ("pre.onnx", "f.onnx", "q.onnx"))
        with quiet():
            q.quant_pre_process(str(fp32_path), pre, skip_symbolic_shape=True)  # as formats/onnx.py
            dbg.modify_model_output_intermediate_tensors(pre, aug_f)
            dbg.modify_model_output_intermediate_tensors(str(int8_path), aug_q)
        graph, qgraph = onnx.load(pre).graph, onnx.load(str(int8_path)).graph
        layers = _onnx_quantized_nodes(graph, qgraph)
        feed = graph.input[0].name
        stats = {t: _Stats() for t in layers}
        for start in range(0, len(x), ONNX_CHUNK):
            batch = [{feed: x[i : i + 1]} for i in range(start, min(start + ONNX_CHUNK, len(x)))]
            with quiet():
                f_acts = dbg.collect_activations(aug_f, batch)
                q_acts = dbg.collect_activations(aug_q, batch)
            matched = dbg.create_activation_matching(q_acts, f_acts)
            for tensor, st in stats.items():
                post = matched[tensor]["post_qdq"] if tensor in matched else q_acts.get(tensor)
                for ref, out in zip(f_acts.get(tensor, []), post or [], strict=False):
                    st.add(ref, out)
    modules = dict(model.module.named_modules())
    return [stats[t].error(node.name, node.op_type, _onnx_torch_name(node, modules))
            for t, node in layers.items() if stats[t].signal or stats[t].noise]


def _onnx_quantized_nodes(graph, qgraph) -> dict:
    """{output tensor: node of the pre-processed graph} for nodes the int8 graph feeds through
    a DequantizeLinear (the nodes quantize_static quantized)."""
    from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX

    # Keyed by the int8 node's output: where quantize_static fused a Relu into a Conv, the Conv
    # writes the Relu's output tensor, and the fp32 value to compare with is that tensor.
    dq_outputs = {o for n in qgraph.node if n.op_type == "DequantizeLinear" for o in n.output}
    nodes = {n.name: n for n in graph.node}
    # A graph output is renamed "<name>_QuantizeLinear_Input" before its QDQ pair; match it by <name>.
    return {n.output[0].removesuffix(QUANT_INPUT_SUFFIX): nodes[n.name] for n in qgraph.node
            if n.name in nodes and n.output and n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and set(n.input) & dq_outputs}


def _onnx_torch_name(node, modules: dict) -> str | None:
    """The module the dynamo exporter recorded for a node (its innermost name scope)."""
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
    except (ValueError, SyntaxError):
        return None
    paths = [s for s in scopes[:-1] if s in modules and s]  # the last scope is the fx node's own name
    return _fit_module(paths[-1], node.op_type, modules) if paths else None


# --- OpenVINO --------------------------------------------------------------------------------

OV_SKIP = frozenset({"Parameter", "Constant", "Result", "FakeQuantize", "Convert"})
OV_MODULE = re.compile(r"^__module\.([^/]+)/")


def _openvino_errors(model, fp32_path: Path, int8_path: Path, x: np.ndarray) -> list[LayerError]:
    ov = require("openvino", "openvino", "openvino")
    core = ov.Core()
    f_model, q_model = core.read_model(str(fp32_path)), core.read_model(str(int8_path))
    f_ops = {op.get_friendly_name(): op for op in f_model.get_ordered_ops()}
    layers = []  # (name, type, fp32 output, int8 output)
    for op in q_model.get_ordered_ops():
        name, kind = op.get_friendly_name(), op.get_type_name()
        ref = f_ops.get(name)
        if kind in OV_SKIP or ref is None or ref.get_type_name() != kind or not _ov_quantized(op, f_ops):
            continue
        out = op.output(0)
        fq = [t.get_node() for t in out.get_target_inputs() if t.get_node().get_type_name() == "FakeQuantize"]
        layers.append((name, kind, ref.output(0), fq[0].output(0) if len(fq) == 1 else out))
    f_out = _ov_run(core, f_model, [r for _, _, r, _ in layers], x, {"INFERENCE_PRECISION_HINT": "f32"})
    q_out = _ov_run(core, q_model, [o for _, _, _, o in layers], x, {})
    modules = dict(model.module.named_modules())
    errors = []
    for (name, kind, _, _), fa, qa in zip(layers, f_out, q_out, strict=True):
        st = _Stats()
        for a, b in zip(fa, qa, strict=True):
            st.add(a, b)
        errors.append(st.error(name, kind, _ov_torch_name(f_ops[name], modules)))
    return errors


def _ov_quantized(op, f_ops: dict) -> bool:
    """An op NNCF quantized: one of its inputs comes from a node NNCF inserted."""
    for i in range(op.get_input_size()):
        src = op.input_value(i).get_node()
        if src.get_type_name() == "FakeQuantize" or src.get_friendly_name() not in f_ops:
            return True
    return False


def _ov_run(core, ov_model, outputs: list, x: np.ndarray, config: dict) -> list[list[np.ndarray]]:
    """Values of ``outputs`` for every sample: [output][sample]."""
    def key(port) -> tuple[str, int]:
        return port.get_node().get_friendly_name(), port.get_index()

    ov_model.add_outputs(outputs)  # a port that already is a model output is not added twice
    index: dict[tuple[str, int], int] = {}
    for i, out in enumerate(ov_model.outputs):  # each model output is a Result fed by the port
        result = out.get_node()
        index.setdefault(key(result.input_value(0) if result.get_type_name() == "Result" else out), i)

    compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    values: list[list[np.ndarray]] = [[] for _ in outputs]
    for i in range(len(x)):
        result = request.infer({0: x[i : i + 1]})
        for j, port in enumerate(outputs):
            values[j].append(np.array(result[compiled.outputs[index[key(port)]]]))
    return values


def _ov_torch_name(op, modules: dict) -> str | None:
    """From the friendly name ("__module.layer1.0.conv1/aten::_convolution/Convolution"); a
    Convolution/MatMul renamed by BatchNorm folding is traced by its weights."""
    match = OV_MODULE.match(op.get_friendly_name())
    if match and match.group(1) in modules:
        return _fit_module(match.group(1), op.get_type_name(), modules)
    if op.get_type_name() in CONV_OPS | LINEAR_OPS and op.get_input_size() > 1:
        weights = op.input_value(1).get_node()
        if weights.get_type_name() == "Constant":
            return _trace_weights(weights.get_data(), modules)
    return None


# --- TFLite ----------------------------------------------------------------------------------

TFLITE_SKIP = frozenset({"QUANTIZE", "DEQUANTIZE", "DELEGATE"})


def _tflite_errors(model, fp32_path: Path, int8_path: Path, x: np.ndarray) -> list[LayerError]:
    locations = _tflite_locations(model.module)
    f_interp, q_interp = _tflite_interpreter(fp32_path), _tflite_interpreter(int8_path)
    pairs = [(q, f) for q, f in _tflite_pairs(_tflite_ops(f_interp), _tflite_ops(q_interp)) if q["quantized"]]
    stats = [_Stats() for _ in pairs]
    for i in range(len(x)):
        f_vals = _tflite_invoke(f_interp, x[i : i + 1], [f["tensor"] for _, f in pairs])
        q_vals = _tflite_invoke(q_interp, x[i : i + 1], [q["tensor"] for q, _ in pairs])
        for st, a, b in zip(stats, f_vals, q_vals, strict=True):
            st.add(a, b)
    modules = dict(model.module.named_modules())
    errors = []
    for (q, f), st in zip(pairs, stats, strict=True):
        paths = [locations[loc] for loc in q["locations"] + f["locations"] if loc in locations]
        torch_name = _tflite_torch_name(paths, q["op"], modules)
        if torch_name is None and q["op"] in TFLITE_LAYOUT:  # e.g. the model's output layer
            torch_name = _trace_weights(_tflite_weights(f_interp, f), modules)
        errors.append(st.error(torch_name or q["locations"][0], q["op"], torch_name))
    return errors


def _tflite_pairs(f_ops: list[dict], q_ops: list[dict]) -> list[tuple[dict, dict]]:
    """(int8 op, fp32 op) pairs. litert-torch writes both graphs in the same op order (Q/DQ ops
    aside), so they pair by position when the op types and shapes agree throughout; else by
    (op, first location, shape), the k-th with the k-th where that repeats."""
    def sig(op):
        return op["op"], op["shape"]

    if [sig(o) for o in f_ops] == [sig(o) for o in q_ops]:
        return list(zip(q_ops, f_ops, strict=True))

    def keyed(ops):
        seen: dict[tuple, int] = {}
        out = {}
        for op in ops:
            key = (op["op"], op["locations"][0], op["shape"])
            seen[key] = seen.get(key, -1) + 1
            out[(*key, seen[key])] = op
        return out

    f_keyed = keyed(f_ops)
    return [(q, f_keyed[k]) for k, q in keyed(q_ops).items() if k in f_keyed]


# (O, H, W, I) conv and (1, H, W, O) depthwise weights to PyTorch's (O, I, H, W)
TFLITE_LAYOUT = {"FULLY_CONNECTED": None, "CONV_2D": (0, 3, 1, 2), "DEPTHWISE_CONV_2D": (3, 0, 1, 2)}


def _tflite_weights(interp, op: dict) -> np.ndarray:
    """An fp32 op's weights in PyTorch's layout."""
    w = interp.get_tensor(op["inputs"][1])
    order = TFLITE_LAYOUT[op["op"]]
    return w if order is None else w.transpose(order)


def _tflite_locations(module) -> dict[str, str]:
    """{litert-torch location string: module path}, e.g. "features.0" for
    "pkg.LeNet5/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_0"."""

    def cls(m) -> str:
        return f"{type(m).__module__}.{type(m).__qualname__}"

    out = {cls(module): ""}
    for path, mod in module.named_modules():
        if not path:
            continue
        parts, cur, loc = path.split("."), module, [cls(module)]
        for part in parts:
            cur = getattr(cur, part)
            loc.append(f"{cls(cur)}_{part}")
        out["/".join(loc)] = path
        del mod
    return out


def _tflite_interpreter(path: Path):
    from edgekit.formats.tflite import _interpreter

    interpreter_cls, _, _ = _interpreter()
    module = __import__(interpreter_cls.__module__, fromlist=["OpResolverType"])
    resolver = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = interpreter_cls(model_path=str(path), experimental_op_resolver_type=resolver,
                             experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    return interp


def _tflite_ops(interp) -> list[dict]:
    """The graph's ops with one output, in order, with the module locations in its tensor's name."""
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = []
    for op in interp._get_ops_details():
        if op["op_name"] in TFLITE_SKIP or len(op["outputs"]) != 1:
            continue
        tensor = details[op["outputs"][0]]
        ops.append({"op": op["op_name"], "tensor": tensor, "inputs": list(op["inputs"]),
                    "shape": tuple(int(d) for d in tensor["shape"]),
                    "locations": [s for s in tensor["name"].split(";") if s and not s.isdigit()] or [""],
                    "quantized": np.dtype(tensor["dtype"]).kind in "iu"})
    return ops


def _tflite_invoke(interp, x: np.ndarray, tensors: list[dict]) -> list[np.ndarray]:
    from edgekit.formats.tflite import _quantize

    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], _quantize(x, detail))
    interp.invoke()
    return [_dequantize(interp.get_tensor(t["index"]), t) for t in tensors]


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """int tensor -> float32 with its own scales and zero points, per tensor or per channel."""
    q = detail["quantization_parameters"]
    scales, zeros = np.asarray(q["scales"], np.float32), np.asarray(q["zero_points"], np.float32)
    if np.dtype(y.dtype).kind == "f" or scales.size == 0:
        return y.astype(np.float32)
    shape = [1] * y.ndim
    if scales.size > 1:
        shape[q["quantized_dimension"]] = scales.size
    return ((y.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def _tflite_torch_name(paths: list[str], op: str, modules: dict) -> str | None:
    """Of the modules an op was fused from, the one its type names (the Conv2d of conv+bn+relu)."""
    kind = _module_kind(op)
    fitting = [p for p in paths if kind is not None and isinstance(modules.get(p), kind)]
    if fitting:
        return fitting[-1]
    return paths[0] if paths and paths[0] else None


# --- tracing to the PyTorch module -----------------------------------------------------------

def _module_kind(op: str):
    from torch import nn

    if op in CONV_OPS:
        return nn.modules.conv._ConvNd
    if op in LINEAR_OPS:
        return nn.Linear
    return None


def _fit_module(path: str, op: str, modules: dict) -> str:
    """Narrow a module path to the Conv/Linear module an op of that type came from: a BatchNorm
    folded into a conv names the conv before it; a block with one conv names that conv."""
    kind = _module_kind(op)
    if kind is None or isinstance(modules[path], kind):
        return path
    parent = path.rpartition(".")[0]
    siblings = [p for p in modules if p.rpartition(".")[0] == parent and p != parent]
    before = [p for p in siblings[: siblings.index(path)] if isinstance(modules[p], kind)]
    if before and type(modules[path]).__name__.startswith("BatchNorm"):
        return before[-1]

    inside = [p for p in modules if p.startswith(path + ".") and isinstance(modules[p], kind)]
    return inside[0] if len(inside) == 1 else path


def _trace_weights(weights: np.ndarray, modules: dict) -> str | None:
    """The Conv/Linear module whose weight rows match ``weights`` up to a per-row scale (what
    folding a BatchNorm into the conv does)."""
    w = np.asarray(weights, np.float64)
    best, best_score = None, 0.999
    for path, mod in modules.items():
        mw = getattr(mod, "weight", None)
        if mw is None or not hasattr(mw, "shape") or mw.numel() != w.size or mw.dim() < 2:
            continue
        a = mw.detach().double().reshape(mw.shape[0], -1).numpy()
        for b in (w.reshape(a.shape), w.reshape(w.shape[0], -1).T.reshape(a.shape) if w.ndim == 2 else None):
            if b is None:
                continue
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            ok = norms > 0
            if not ok.any():
                continue
            score = float(np.min(np.abs(np.sum(a * b, axis=1)[ok]) / norms[ok]))
            if score > best_score:
                best, best_score = path, score
    return best


_ERRORS: dict[str, Callable] = {"onnx": _onnx_errors, "openvino": _openvino_errors, "tflite": _tflite_errors}


# --- the command -----------------------------------------------------------------------------

def inspect_run(run_dir: Path, samples: int = DEFAULT_SAMPLES, formats: tuple[str, ...] | None = None,
                report: Callable[[str], None] = print) -> dict:
    """Per-layer errors of every int8 artefact of a run (or of ``formats``); store and return them.

    The samples come from the run's recorded calibration source with the run's seed (see
    ``inspect_samples``). Each format also gets ``report/inspect_<format>.png``, a bar chart of
    its worst layers. The result is stored as ``manifest["inspect"]``.
    """
    from edgekit.pipeline import load_planned_model, plan_from_manifest

    run_dir = Path(run_dir)
    manifest = mf.read_manifest(run_dir)
    pairs = _int8_pairs(manifest, formats)
    model = load_planned_model(plan_from_manifest(manifest, run_dir))
    x, source = inspect_samples(manifest, model, samples)
    results = {}
    for fmt, (fp32, int8) in pairs.items():
        start = time.perf_counter()
        try:
            errors = layer_errors(fmt, model, run_dir / fp32["path"], run_dir / int8["path"], x)
        except Exception as exc:  # noqa: BLE001 - one format's tool failing must not lose the others
            text = " ".join(str(exc).split())[:300]
            results[fmt] = {"status": "failed", "error": f"{type(exc).__name__}: {text}"}
            report(f"FAILED inspect {fmt}: {results[fmt]['error']}")
            continue
        plot = write_plot(errors, f"{fmt} int8: worst layers", run_dir / "report" / f"inspect_{fmt}.png")
        results[fmt] = {"status": "ok", "artefact": int8["path"], "reference": fp32["path"],
                        "plot": str(plot.relative_to(run_dir)), "layers": [e.to_dict() for e in errors],
                        "seconds": round(time.perf_counter() - start, 2)}
        report(_summary_line(fmt, errors, results[fmt]["seconds"]))
    result = {"created": mf.utc_now(), "samples": int(len(x)), "source": source, "formats": results}
    manifest = mf.read_manifest(run_dir)  # another command may have written it meanwhile
    manifest["inspect"] = result
    mf.write_json_atomic(run_dir / mf.MANIFEST, manifest)
    return result


def _int8_pairs(manifest: dict, formats: tuple[str, ...] | None) -> dict[str, tuple[dict, dict]]:
    """{format: (fp32 artefact, int8 artefact)} for the formats with both exported ok."""
    ok = {(a["format"], a["precision"]): a for a in manifest["artefacts"] if a.get("status") == "ok"}
    pairs = {f: (ok[(f, "fp32")], ok[(f, "int8")]) for f, p in ok if p == "int8" and (f, "fp32") in ok}
    if formats:
        unknown = [f for f in formats if f not in pairs]
        if unknown:
            raise UsageError(f"the run has no int8 {', '.join(unknown)} artefact with its fp32 one; "
                             f"it has: {', '.join(pairs) or 'none'}")
        pairs = {f: pairs[f] for f in formats}
    if not pairs:
        raise UsageError("the run has no int8 artefact with its fp32 one to compare; "
                         "export with --int8 first")
    return pairs


def inspect_samples(manifest: dict, model, n: int) -> tuple[np.ndarray, str]:
    """``n`` samples from the run's calibration source, drawn with the run's seed.

    As many as calibration + verification + ``n`` are loaded and the last ``n`` kept, so that for
    sources that list samples in a fixed order they are not the ones the calibrator saw. Where
    the source has fewer, the last ``n`` it has (possibly calibration samples) are used.
    """
    from edgekit.data.calibration import load_samples

    if n < 1:
        raise UsageError(f"--samples must be at least 1, got {n}")
    recorded = (manifest.get("calibration") or {}).get("source")
    source = None
    if recorded:
        kind, _, where = recorded.partition(":")
        source = recorded if kind == "builtin" else where
    seen = int((manifest.get("calibration") or {}).get("samples", 0))
    seen += int((manifest.get("verification") or {}).get("samples", 0))
    loaded = load_samples(source, model, seen + n, seed=int(manifest["settings"].get("seed", 0)))
    return loaded.x[-n:], loaded.source


def write_plot(errors: list[LayerError], title: str, path: Path, top: int = PLOT_LAYERS) -> Path:
    """Horizontal bars of the worst ``top`` layers' SQNR (worst at the top); returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    worst = errors[:top]
    values = [min(e.sqnr_db, 100.0) for e in worst]  # an exact layer (inf dB) drawn at 100 dB
    labels = [f"{_short(e.torch_name or e.name)} ({e.op})" for e in worst]
    fig = Figure(figsize=(8, 1.2 + 0.3 * max(len(worst), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(range(len(worst)), values, color="tab:red")
    ax.set_yticks(range(len(worst)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("SQNR vs fp32 (dB, higher is better)")
    ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    return mf.write_atomic(path, buffer.getvalue())


def _short(name: str, width: int = 48) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _summary_line(fmt: str, errors: list[LayerError], seconds: float) -> str:
    if not errors:
        return f"ok {fmt:<8} no quantized layers found  ({seconds}s)"
    w = errors[0]
    return (f"ok {fmt:<8} {len(errors)} layers; worst {w.torch_name or w.name} ({w.op}) "
            f"SQNR {w.sqnr_db:.1f} dB, cosine {w.cosine:.4f}  ({seconds}s)")


def table_rows(result: dict, top: int = 10) -> tuple[list[str], list[list[str]]]:
    """Columns and formatted rows for printing an inspect result: each format's ``top`` worst layers."""
    head = ["format", "rank", "layer", "op", "torch module", "SQNR (dB)", "cosine"]
    rows = []
    for fmt, r in result["formats"].items():
        if r.get("status") != "ok":
            rows.append([fmt, "-", f"failed: {r.get('error', '')}"[:80], "-", "-", "-", "-"])
            continue
        for rank, e in enumerate(r["layers"][:top], 1):
            sqnr = float(e["sqnr_db"])  # "inf" once read back from the manifest
            rows.append([fmt, str(rank), _short(e["name"]), e["op"], e["torch_name"] or "-",
                         f"{sqnr:.1f}", f"{float(e['cosine']):.4f}"])
    return head, rows
