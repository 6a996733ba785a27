"""Full-integer int8 ``.tflite`` files for microcontrollers (TensorFlow Lite Micro).

TFLM has integer kernels only: no float ops and no dynamic-range ("hybrid") kernels, so an MCU
file must be integer from its input to its output, with int8 model inputs and outputs (no
QUANTIZE/DEQUANTIZE at its ends).

- Models that take static int8 (``model.static_int8``): the format's own static int8
  (``quantize.export_int8``; litert-torch PT2E, or ai-edge-quantizer for the "aeq" method) is
  already full-integer with int8 IO.
- Recurrent models (the LSTM): ai-edge-quantizer on the fp32 flatbuffer (litert-torch unrolls
  ``nn.LSTM`` into FULLY_CONNECTED, SLICE, ADD, LOGISTIC, TANH, MUL, CONCATENATION), with int16
  activations (int8 weights, TFLM's int16x8 kernels) for the ops of the recurrent layers, whose
  cell state and gates are re-quantized at every step, and int8 everywhere else, the model's
  input and output included; the "int8" method makes the recurrent path int8 as well.

Then the file is fitted to TFLM's kernel limits (a CONCATENATION of more than 10 inputs, as the
unrolled LSTM's time steps give, becomes a tree of smaller ones with the same quantization) and
checked with ``full_integer_problems``; a file that is not full-integer is never written.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import DataError, UsageError
from edgekit.formats.base import Int8Options, Int8Result, scheme_options
from edgekit.layout import count

if TYPE_CHECKING:
    import numpy as np

    from edgekit.models.spec import LoadedModel

# Methods for recurrent models (static models take the TFLite int8 methods, quantize.METHODS).
RECURRENT_METHODS = {
    "default": "int16 activations on the recurrent layers' ops, int8 elsewhere (ai-edge-quantizer)",
    "int8": "int8 activations on every op, the recurrent layers' too (ai-edge-quantizer static_wi8_ai8)",
}
# litert-torch names an op's tensors by the module classes above it: "...torch.nn.modules.rnn.LSTM_lstm;27"
RECURRENT_SCOPE = r"torch\.nn\.modules\.rnn\."
TFLM_MAX_CONCAT_INPUTS = 10  # tensorflow/lite/micro/kernels/concatenation.cc kMaxInputNum
FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
EIGHT_BIT = {"INT8", "UINT8", "INT4"}


def export_full_integer(model: LoadedModel, fp32_path: Path, calib: np.ndarray, path: Path,
                        options: Int8Options | None = None) -> Int8Result:
    """A full-integer ``.tflite`` at ``path`` that TFLM runs: every op integer, int8 model IO.

    ``fp32_path`` is the fp32 flatbuffer (quantized by ai-edge-quantizer for recurrent models and
    the "aeq" method); ``calib`` the calibration samples. Raises DataError, writing nothing, if
    the result is not full-integer (``full_integer_problems``).
    """
    import edgekit.formats.tflite.quantize as quantize
    from edgekit.runs.manifest import write_atomic

    options = options or Int8Options()
    path, fp32_path = Path(path), Path(fp32_path)
    if options.exclude:
        raise UsageError("full-integer int8 cannot keep layers in float (TFLite Micro has no float "
                         "kernels to fall back to); leave out the excluded layers")
    if count(calib) == 0:
        raise DataError("full-integer int8 needs calibration samples, got none")
    if model.static_int8:
        if options.method not in quantize.METHODS:
            raise UsageError(f"unknown TFLite full-integer method {options.method!r}; known: "
                             f"{', '.join(quantize.METHODS)}")
        staged = path.with_name(f".{path.name}.static")
        try:
            base = quantize.export_int8(model, fp32_path, calib, staged, options).scheme
            data = staged.read_bytes()
        finally:
            staged.unlink(missing_ok=True)
        scheme = {"weights": base["weights"], "activations": f"{base['activations']}, every op",
                  "tool": base["tool"]}
    else:
        if options.method not in RECURRENT_METHODS:
            raise UsageError(f"unknown TFLite full-integer method {options.method!r} for a recurrent "
                             f"model; known: {', '.join(RECURRENT_METHODS)}")
        data = quantize.aeq_quantize(model, fp32_path, calib, _recurrent_recipe(options.method))
        scheme = {"weights": "int8 symmetric per-channel",
                  "tool": f"ai-edge-quantizer {quantize._version('ai-edge-quantizer')}".strip()}
    data, rewrites = fit_to_tflm(data)
    problems = _problems(_read(data))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"the full-integer TFLite file for {model.name} is not full-integer: "
                        f"{problems[0]}{more}; TFLite Micro could not run it")
    write_atomic(path, data)
    if not model.static_int8:
        scheme["activations"] = _activations(_read(data), model)
    scheme = {
        "type": "full-integer",
        **scheme,
        "io": quantize._io_dtypes(path),
        "calibration_samples": count(calib),
        **({"tflm_rewrites": rewrites} if rewrites else {}),
        **scheme_options(options),
    }
    if not model.static_int8:
        scheme["note"] = RECURRENT_METHODS[options.method]
    return Int8Result(path=path, scheme=scheme)


def full_integer_problems(path: Path) -> list[str]:
    """What keeps the ``.tflite`` at ``path`` from running as full-integer in TFLite Micro: float
    ops, dynamic-range ops, QUANTIZE/DEQUANTIZE at the model's IO, float model IO, a
    CONCATENATION of more inputs than TFLM takes. One line each; empty: truly full-integer."""
    return _problems(_read(Path(path).read_bytes()))


# ------------------------------------------------------------------ reading the flatbuffer


def _read(data: bytes) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(data, 0)


def _names() -> tuple[dict, dict]:
    """(tensor type names, builtin operator names) of the LiteRT schema, by value."""
    from ai_edge_litert import schema_py_generated as schema

    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    builtins = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return types, builtins


def _op_name(model: Any, op: Any, builtins: dict) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    name = builtins.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
    if name == "CUSTOM":
        return f"CUSTOM {(code.customCode or b'').decode(errors='replace')}"
    return name or f"builtin {code.builtinCode}"


def _has_data(model: Any, tensor: Any) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer else None
    if buffer is None:
        return False
    return (buffer.data is not None and len(buffer.data) > 0) or (buffer.size or 0) > 0


def _tally(counter: Counter) -> str:
    return ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(counter.items()))


def _problems(model: Any) -> list[str]:
    types, builtins = _names()
    floating, dynamic, wide_concat, off_scale = Counter(), Counter(), Counter(), Counter()
    problems = []
    for graph in model.subgraphs or []:
        tensors = graph.tensors or []
        for op in graph.operators or []:
            name = _op_name(model, op, builtins)
            ins = [tensors[i] for i in (op.inputs if op.inputs is not None else []) if i >= 0]
            outs = [tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0]
            if any(types.get(t.type) in FLOAT_TYPES for t in ins + outs):
                hybrid = any(types.get(t.type) in EIGHT_BIT and _has_data(model, t) for t in ins)
                (dynamic if hybrid and name not in ("DEQUANTIZE", "QUANTIZE") else floating)[name] += 1
            if name == "CONCATENATION" and len(ins) > TFLM_MAX_CONCAT_INPUTS:
                wide_concat[len(ins)] += 1
            fixed = FIXED_OUTPUT.get(name, {}).get(types.get(outs[0].type)) if outs else None
            if fixed and _quant(outs[0]) != fixed:
                off_scale[name] += 1
    if dynamic:
        problems.append(f"dynamic-range ops (float activations, int8 weights; TFLM has no such kernels): "
                        f"{_tally(dynamic)}")
    if floating:
        problems.append(f"ops on float tensors: {_tally(floating)}")
    if off_scale:
        problems.append(f"outputs not at the fixed scale TFLM's kernels assume (tanh 1/128, logistic 1/256 "
                        f"with zero point -128; int16 1/32768): {_tally(off_scale)}")
    for n in sorted(wide_concat):
        problems.append(f"CONCATENATION of {n} inputs (TFLM takes at most {TFLM_MAX_CONCAT_INPUTS})")
    if model.subgraphs:
        problems += _io_problems(model, model.subgraphs[0], types, builtins)
    return problems


def _io_problems(model: Any, graph: Any, types: dict, builtins: dict) -> list[str]:
    tensors = graph.tensors or []
    problems = []
    ends = {"input": list(graph.inputs if graph.inputs is not None else []),
            "output": list(graph.outputs if graph.outputs is not None else [])}
    for op in graph.operators or []:
        name = _op_name(model, op, builtins)
        ins = list(op.inputs if op.inputs is not None else [])
        outs = list(op.outputs if op.outputs is not None else [])
        float_in = bool(ins) and types.get(tensors[ins[0]].type) in FLOAT_TYPES
        if name == "QUANTIZE" and set(ins) & set(ends["input"]) and float_in:
            problems.append(f"QUANTIZE at the model's input {_tensor(tensors[ins[0]])}")
        if name == "DEQUANTIZE" and set(outs) & set(ends["output"]):
            problems.append(f"DEQUANTIZE at the model's output {_tensor(tensors[outs[0]])}")
    for end, indices in ends.items():
        for i in indices:
            kind = types.get(tensors[i].type, "")
            if kind in FLOAT_TYPES:
                problems.append(f"model {end} {_tensor(tensors[i])} is {kind.lower()}, not int8")
    return problems


def _tensor(tensor: Any) -> str:
    return (tensor.name or b"?").decode(errors="replace")


def _activations(model: Any, loaded: LoadedModel) -> str:
    """What the activations of a recurrent model's file are, read back from the file."""
    types, builtins = _names()
    wide = Counter()
    for graph in model.subgraphs or []:
        tensors = graph.tensors or []
        for op in graph.operators or []:
            name = _op_name(model, op, builtins)
            outs = [tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0]
            if name != "QUANTIZE" and any(types.get(t.type) == "INT16" for t in outs):
                wide[name] += 1
    if not wide:
        return "int8 asymmetric per-tensor, every op (the recurrent layers' too)"
    layers = ", ".join(loaded.recurrent) or "the recurrent layers"
    return (f"int16 symmetric per-tensor on the {sum(wide.values())} ops of {layers} ({_tally(wide)}), "
            "the recurrent path: its gates and cell state are re-quantized at every time step, where "
            "int8 errors build up (TFLM runs them with its int16x8 kernels); int8 asymmetric "
            "per-tensor elsewhere, the model's input and output included")


# ------------------------------------------------------------------ fitting TFLM's kernels


def _recurrent_recipe(method: str) -> Any:
    """ai-edge-quantizer recipe: int8 weights and activations, int16 activations inside the
    recurrent layers (unless ``method`` is "int8"); it requantizes where the two meet."""
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    manager.add_static_config(regex=".*", operation_name=every, activation_num_bits=8, weight_num_bits=8)
    if method != "int8":
        manager.add_static_config(regex=RECURRENT_SCOPE, operation_name=every, activation_num_bits=16,
                                  weight_num_bits=8)
    return manager.get_quantization_recipe()


# Output quantization TFLM's TANH and LOGISTIC kernels assume, whatever the tensor says (TFLite's
# own converter always writes these; litert-torch's PT2E observers do not): (scale, zero point).
FIXED_OUTPUT = {"TANH": {"INT8": (1 / 128, 0), "INT16": (1 / 32768, 0)},
                "LOGISTIC": {"INT8": (1 / 256, -128), "INT16": (1 / 32768, 0)}}
# Ops whose int8 output must keep their input's quantization (TFLM computes them in the input's)
SAME_SCALE = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "SQUEEZE", "EXPAND_DIMS")


def _quant(tensor: Any) -> tuple[float, int] | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _fix_fixed_outputs(model: Any, builtins: dict) -> list[str]:
    """Set each TANH/LOGISTIC output to the quantization TFLM's kernels assume (``FIXED_OUTPUT``),
    and the same-scale ops that pass it on (a pooling after a tanh) with it. Without this TFLM
    reads LeNet-5's tanh outputs off by up to 16 int8 steps, and disagrees with LiteRT's."""
    import numpy as np

    types, _ = _names()
    fixed = Counter()
    for graph in model.subgraphs or []:
        tensors = graph.tensors or []
        readers: dict[int, list] = {}
        for op in graph.operators or []:
            for i in op.inputs if op.inputs is not None else []:
                readers.setdefault(int(i), []).append(op)
        for op in graph.operators or []:
            name = _op_name(model, op, builtins)
            outs = list(op.outputs if op.outputs is not None else [])
            want = FIXED_OUTPUT.get(name, {}).get(types.get(tensors[outs[0]].type)) if outs else None
            if not want or _quant(tensors[outs[0]]) in (None, want):
                continue
            todo, old = [outs[0]], _quant(tensors[outs[0]])
            while todo:
                index = todo.pop()
                q = tensors[index].quantization
                q.scale, q.zeroPoint = np.array([want[0]], np.float32), np.array([want[1]], np.int64)
                for reader in readers.get(index, []):
                    out = list(reader.outputs if reader.outputs is not None else [])
                    same = _op_name(model, reader, builtins) in SAME_SCALE
                    if same and out and _quant(tensors[out[0]]) == old:
                        todo.append(out[0])
            fixed[name] += 1
    return [f"{name} output at TFLM's fixed scale ({n})" for name, n in sorted(fixed.items())]


MOVES = ("REVERSE_V2", "TRANSPOSE", "GATHER")  # ops that move values without computing on them


def _integer_moves(model: Any, builtins: dict) -> list[str]:
    """A data-movement op that ai-edge-quantizer left in float between a DEQUANTIZE and a QUANTIZE
    of the same quantization (a bidirectional GRU's REVERSE_V2) runs on the integers instead: it
    moves the values, so their quantization stays. The two conversions go."""
    moved = Counter()
    for graph in model.subgraphs or []:
        ops, tensors = list(graph.operators or []), graph.tensors or []
        made = {int(o): op for op in ops for o in (op.outputs if op.outputs is not None else [])}
        readers: dict[int, list] = {}
        for op in ops:
            for i in op.inputs if op.inputs is not None else []:
                readers.setdefault(int(i), []).append(op)
        drop = set()
        for op in ops:
            name = _op_name(model, op, builtins)
            if name not in MOVES or op.inputs is None or len(op.outputs) != 1:
                continue
            src, out = made.get(int(op.inputs[0])), int(op.outputs[0])
            after = readers.get(out, [])
            if src is None or _op_name(model, src, builtins) != "DEQUANTIZE" or len(after) != 1 \
                    or _op_name(model, after[0], builtins) != "QUANTIZE" \
                    or len(readers.get(int(src.outputs[0]), [])) != 1:
                continue
            q_in, q_out = tensors[int(src.inputs[0])], tensors[int(after[0].outputs[0])]
            if q_in.type != q_out.type or _quant(q_in) is None or _quant(q_in) != _quant(q_out):
                continue
            op.inputs = [int(src.inputs[0]), *list(op.inputs)[1:]]
            op.outputs = [int(after[0].outputs[0])]
            drop.update((id(src), id(after[0])))
            moved[name] += 1
        graph.operators = [op for op in ops if id(op) not in drop]
    return [f"{name} on the integers, its DEQUANTIZE/QUANTIZE gone ({n})"
            for name, n in sorted(moved.items())]


def fit_to_tflm(data: bytes) -> tuple[bytes, list[str]]:
    """``data`` rewritten where TFLM's kernels need it, and what was rewritten: TANH and LOGISTIC
    outputs at the fixed quantization TFLM's kernels assume (``_fix_fixed_outputs``); a
    CONCATENATION of more than 10 inputs (the unrolled LSTM's time steps) becomes a tree of
    concatenations of at most 10, whose intermediate tensors take the output's type and quantization."""
    import copy

    import flatbuffers

    model = _read(data)
    _, builtins = _names()
    rewrites = _fix_fixed_outputs(model, builtins) + _integer_moves(model, builtins)
    for graph in model.subgraphs or []:
        operators = []
        for op in graph.operators or []:
            inputs = list(op.inputs if op.inputs is not None else [])
            if _op_name(model, op, builtins) != "CONCATENATION" or len(inputs) <= TFLM_MAX_CONCAT_INPUTS:
                operators.append(op)
                continue
            out = graph.tensors[op.outputs[0]]
            axis = op.builtinOptions.axis % len(out.shape)
            added = 0
            while len(inputs) > TFLM_MAX_CONCAT_INPUTS:
                grouped = []
                for start in range(0, len(inputs), TFLM_MAX_CONCAT_INPUTS):
                    group = inputs[start:start + TFLM_MAX_CONCAT_INPUTS]
                    if len(group) == 1:
                        grouped.append(group[0])
                        continue
                    part = copy.deepcopy(out)
                    part.shape = list(out.shape)
                    part.shape[axis] = sum(int(graph.tensors[i].shape[axis]) for i in group)
                    part.shapeSignature = None
                    part.buffer = 0
                    part.name = (out.name or b"concat") + f"/part{added}".encode()
                    graph.tensors.append(part)
                    step = copy.deepcopy(op)
                    step.inputs, step.outputs = group, [len(graph.tensors) - 1]
                    step.builtinOptions.fusedActivationFunction = 0  # the activation applies once, at the end
                    operators.append(step)
                    grouped.append(len(graph.tensors) - 1)
                    added += 1
                inputs = grouped
            rewrites.append(f"CONCATENATION of {len(op.inputs)} inputs split into {added + 1} "
                            f"(TFLM takes at most {TFLM_MAX_CONCAT_INPUTS})")
            op.inputs = inputs
            operators.append(op)
        graph.operators = operators
    if not rewrites:
        return data, []
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), rewrites
