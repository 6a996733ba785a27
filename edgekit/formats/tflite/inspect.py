"""Per-layer int8 error in TFLite: both flatbuffers with every tensor preserved, ops paired by type,
location and shape (see the package docstring)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.inspect import LayerError, _Stats
from edgekit.inspect.trace import module_kind, trace_weights

TFLITE_SKIP = frozenset({"QUANTIZE", "DEQUANTIZE", "DELEGATE"})


def errors(model, fp32_path: Path, int8_path: Path, x: np.ndarray) -> list[LayerError]:
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
            torch_name = trace_weights(_tflite_weights(f_interp, f), modules)
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
    from edgekit.formats.tflite.runtime import interpreter

    interpreter_cls, _, _ = interpreter()
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
    from edgekit.formats.tflite.runtime import quantize as _quantize

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
    kind = module_kind(op)
    fitting = [p for p in paths if kind is not None and isinstance(modules.get(p), kind)]
    if fitting:
        return fitting[-1]
    return paths[0] if paths and paths[0] else None
