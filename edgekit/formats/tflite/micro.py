"""The TensorFlow Lite Micro session: a ``.tflite`` file run by TFLM's Python interpreter
(``tflite-micro``), the reference kernels a microcontroller build runs, so eval's accuracy on an
MCU target is the device's accuracy (standard library, numpy and tflite-micro only; see
``edgekit/bench/runtime_kit.py``).

Float32 in and out for edgekit, as the LiteRT session: int8 and int16 inputs are quantized and
outputs dequantized with each tensor's own scale and zero point, several inputs and outputs in
the model's order (by the file's signature where it has one). TFLM does not resize: a batch larger
than the file's runs sample by sample, and a stateful file (variable tensors: TFLM's LSTM keeps its
state in them) is reset before each sample, so samples stay independent.

TFLM allocates everything in one tensor arena given at creation: ``arena_bytes`` in the spec (a
device's budget), else the session starts generous and grows until the model fits.
``allocations()`` reports what the arena holds (TFLM's RecordingMicroAllocator, which prints to
the C stderr: captured here).
"""

from __future__ import annotations

import contextlib
import os
import re

try:
    import edgekit_runtime_kit as kit  # beside the device runner
except ImportError:
    from edgekit.bench import runtime_kit as kit

RUNTIME = "tflite-micro"
ARENA_START = 1 << 20  # the first try without a given arena: 1 MiB, or 10x the file (TFLM's own default)
ARENA_CAP = 1 << 31  # growing stops here: no microcontroller has 2 GiB of RAM
SHORT_OF_ARENA = ("Failed to allocate", "Failed starting model allocation", "Failed to resize buffer",
                  "Failed to allocate memory")
NOT_FOUND = re.compile(r"(?:Failed to get registration from op code|Didn't find op for builtin opcode)"
                       r" '?([A-Za-z0-9_]+)'?")


def tflm_runtime():
    """TFLM's Python runtime module, or a RuntimeProblem saying how to install it."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        raise kit.RuntimeProblem("no_runtime", f"TensorFlow Lite Micro is not installed ({exc}); "
                                 "pip install 'edgekit[mcu]' (or tflite-micro)") from exc
    return runtime


def tflm_version() -> str:
    """tflite-micro's version with the commit it was built from (its wheels are nightlies)."""
    try:
        from tflite_micro.python.tflite_micro._version import __version__
    except ImportError:
        return kit.version(RUNTIME) or ""
    return __version__


@contextlib.contextmanager
def c_stderr():
    """The lines C code writes to file descriptor 2 inside the block (TFLM's MicroPrintf goes
    there, below Python's sys.stderr): a list, filled when the block ends."""
    import sys
    import tempfile

    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(line.strip() for line in tmp.read().decode(errors="replace").splitlines()
                         if line.strip())


def parse_allocations(lines: list[str]) -> dict:
    """{"arena_bytes", "arena_head", "arena_tail"} from RecordingMicroAllocator's lines
    ("[RecordingMicroAllocator] Arena allocation total 14176 bytes")."""
    found = {}
    for line in lines:
        m = re.search(r"Arena allocation (total|head|tail) (\d+) bytes", line)
        if m:
            found[m.group(1)] = int(m.group(2))
    if "total" not in found:
        raise kit.RuntimeProblem("bad_model", "TFLite Micro printed no arena allocation "
                                 f"({'; '.join(lines[:3]) or 'nothing'})")
    return {"arena_bytes": found["total"], "arena_head": found.get("head"), "arena_tail": found.get("tail")}


def schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def read_model(data: bytes):
    """The flatbuffer's Model, or a bad_model problem for a file that is not a complete TFLite file."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise kit.RuntimeProblem("bad_model", "this is not a TFLite flatbuffer (no 'TFL3' identifier); "
                                 "pass a .tflite file")
    fb = schema()
    try:
        model = fb.Model.GetRootAsModel(data, 0)
        for s in range(model.SubgraphsLength()):  # read the tables edgekit reads: a damaged one fails here
            graph = model.Subgraphs(s)
            for i in range(graph.OperatorsLength()):
                model.OperatorCodes(graph.Operators(i).OpcodeIndex())
            for i in range(graph.TensorsLength()):
                graph.Tensors(i).IsVariable()
    except Exception as exc:  # struct.error, IndexError... of a truncated or damaged file
        raise damaged(data, exc) from exc
    return model


def damaged(data: bytes, exc: Exception) -> kit.RuntimeProblem:
    return kit.RuntimeProblem("bad_model", f"this TFLite file is truncated or damaged ({len(data)} bytes; "
                              f"reading its flatbuffer: {(str(exc).splitlines() or [''])[0][:160]}); "
                              "export it again")


def layout(data: bytes) -> tuple[bool, list[int], list[int]]:
    """(stateful, input order, output order) of a TFLite file (see is_stateful and io_order)."""
    model = read_model(data)
    try:
        return (is_stateful(model), *io_order(model))
    except Exception as exc:  # a damaged table read only here
        raise damaged(data, exc) from exc


def is_stateful(model) -> bool:
    """Whether the model keeps state between invokes: variable tensors (TFLM's LSTM) or resource
    variables (VAR_HANDLE)."""
    var_handle = schema().BuiltinOperator.VAR_HANDLE
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        if any(graph.Tensors(i).IsVariable() for i in range(graph.TensorsLength())):
            return True
        for i in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == var_handle:
                return True
    return False


def signature_order(names: list) -> list:
    """A signature's names in the model's order: ``args_2`` before ``args_10`` (as runtime.py's)."""
    def key(name: str) -> tuple:
        found = re.search(r"(\d+)$", name)
        return (int(found.group(1)) if found else -1, name)

    return sorted(names, key=key)


def io_order(model) -> tuple[list[int], list[int]]:
    """The interpreter's input and output indices in the model's order: by the signature's names
    where the file has exactly one signature, else the subgraph's own order."""
    graph = model.Subgraphs(0)
    inputs = [graph.Inputs(i) for i in range(graph.InputsLength())]
    outputs = [graph.Outputs(i) for i in range(graph.OutputsLength())]
    if model.SignatureDefsLength() != 1:
        return list(range(len(inputs))), list(range(len(outputs)))
    sig = model.SignatureDefs(0)

    def ordered(count, get, tensors):
        by_name = {get(i).Name().decode(): get(i).TensorIndex() for i in range(count)}
        if sorted(by_name.values()) != sorted(tensors):
            return list(range(len(tensors)))
        return [tensors.index(by_name[name]) for name in signature_order(list(by_name))]

    return (ordered(sig.InputsLength(), sig.Inputs, inputs),
            ordered(sig.OutputsLength(), sig.Outputs, outputs))


def creation_problem(lines: list[str], arena: int, given: bool) -> kit.RuntimeProblem:
    """Why TFLM could not create the interpreter, from what it printed."""
    text = "; ".join(lines)
    missing = NOT_FOUND.search(text)
    if missing and missing.group(1) == "CUSTOM":
        return kit.RuntimeProblem("bad_model", "this file has a custom operator that this TFLite Micro "
                                  "build does not register (an Ethos-U operator runs only on the device, "
                                  "with its NPU driver)")
    if missing:
        return kit.RuntimeProblem("bad_model", f"TensorFlow Lite Micro has no kernel for {missing.group(1)}; "
                                  "export the model without it (edgekit check --target <mcu> lists them all)")
    if any(line.startswith(SHORT_OF_ARENA) for line in lines):
        if given:
            return kit.RuntimeProblem("bad_model", f"a tensor arena of {arena} bytes is too small for this "
                                      "model in TensorFlow Lite Micro; give more arena_bytes (or none)")
        return kit.RuntimeProblem("bad_model", f"this model needs more than {arena} bytes of tensor arena "
                                  "in TensorFlow Lite Micro")
    if "Hybrid models are not supported" in text or re.search(r"FLOAT32 with filter type: INT8", text):
        text += " (a dynamic-range int8 file: TFLM runs full-integer int8 or float32 files only)"
    return kit.RuntimeProblem("bad_model", "TensorFlow Lite Micro cannot run this file: "
                              + (text or "no reason given"))


def create(rt, data: bytes, arena: int | None):
    """(interpreter, arena bytes it was given): ``arena`` exactly, or from generous, growing
    fourfold while TFLM runs short of arena (up to ARENA_CAP)."""
    size = arena or max(ARENA_START, 10 * len(data))
    while True:
        with c_stderr() as lines:
            try:
                return rt.Interpreter.from_bytes(data, arena_size=size), size
            except RuntimeError as exc:  # what TFLM's C++ reports
                failure = exc
            except Exception as exc:  # the wrapper's own reading of the flatbuffer (struct.error...)
                raise damaged(data, exc) from exc
        if not lines:
            lines = [str(failure)]
        short = (any(line.startswith(SHORT_OF_ARENA) for line in lines)
                 and not NOT_FOUND.search(" ".join(lines)))
        if arena or not short or size >= ARENA_CAP:
            raise creation_problem(lines, size, bool(arena)) from failure
        size = min(size * 4, ARENA_CAP)


def dtype_name(detail: dict) -> str:
    import numpy as np

    return np.dtype(detail["dtype"]).name


def quant(detail: dict):
    """(scale, zero point) of a per-tensor quantized input or output, None where not quantized."""
    params = detail.get("quantization_parameters") or {}
    scales, zeros = params.get("scales"), params.get("zero_points")
    if scales is None or len(scales) == 0 or float(scales[0]) == 0.0:
        return None
    return float(scales[0]), int(zeros[0]) if zeros is not None and len(zeros) else 0


class Session(kit.FixedShapeSession):
    runtime = RUNTIME
    device = "CPU TFLM reference kernels"
    what = "the TFLite Micro model"

    def __init__(self, spec: dict):
        if spec.get("require_accelerator"):
            raise kit.RuntimeProblem("no_device", "TensorFlow Lite Micro runs on the CPU here (reference "
                                     "kernels); an Ethos-U target is estimated by Vela")
        rt = tflm_runtime()
        self.runtime_version = tflm_version()
        with open(spec["path"], "rb") as f:
            data = f.read()
        self.stateful, self._in, self._out = layout(data)
        given = spec.get("arena_bytes")
        self._data = data  # the interpreter reads the flatbuffer in place
        self._interp, self.arena_bytes = create(rt, data, int(given) if given else None)
        self.input_details = [self._interp.get_input_details(k) for k in self._in]
        self.output_details = [self._interp.get_output_details(k) for k in self._out]
        self.fixed_shapes = tuple(tuple(int(d) for d in t["shape"]) for t in self.input_details)
        self.input_names = tuple(f"input_{i}" for i in range(len(self.fixed_shapes)))
        self.input_dtype = ", ".join(dict.fromkeys(dtype_name(d) for d in self.input_details))
        self.output_dtype = ", ".join(dict.fromkeys(dtype_name(d) for d in self.output_details))
        if spec.get("batch"):  # the runner: TFLM runs the file's own batch only
            batch, axis = int(spec["batch"]), int(spec.get("batch_axis") or 0)
            own = self.fixed_shapes[0][axis] if self.fixed_shapes and self.fixed_shapes[0] else 1
            if batch != own:
                raise kit.RuntimeProblem("bad_model", "TensorFlow Lite Micro runs this file at its own "
                                         f"batch of {own} (it does not resize); bench it with --batch {own}")

    def allocations(self) -> dict:
        """What the arena holds (total, head: tensors, tail: persistent), as TFLM records it."""
        with c_stderr() as lines:
            self._interp.print_allocations()
        return parse_allocations(lines)

    def _set(self, arrays) -> None:
        for k, array in zip(self._in, arrays):
            self._interp.set_input(array, k)

    def _get(self) -> list:
        return [self._interp.get_output(k).copy() for k in self._out]

    def _call(self, arrays) -> list:
        if self.stateful:
            self._interp.reset()
        self._set(arrays)
        try:
            self._interp.invoke()
        except RuntimeError as exc:
            message = f"TensorFlow Lite Micro failed to run this file: {exc}"
            raise kit.RuntimeProblem("bad_model", message) from exc
        return self._get()

    # ------------------------------------------------------------ edgekit's face

    def _invoke(self, x):
        xs = x if isinstance(x, tuple) else (x,)
        arrays = [kit.quantize(a, dtype_name(d), quant(d)) for a, d in zip(xs, self.input_details)]
        outputs = [kit.dequantize(y, quant(d)) for y, d in zip(self._call(arrays), self.output_details)]
        return kit.as_outputs(outputs)

    # ------------------------------------------------------------ the runner's face

    def make_inputs(self, rng) -> None:
        """Random inputs of the file's shapes (zeros when ``rng`` is None)."""
        import numpy as np

        self.input_shapes = [list(s) for s in self.fixed_shapes]
        self.inputs = []
        for detail, shape in zip(self.input_details, self.input_shapes):
            name = dtype_name(detail)
            self.inputs.append(np.zeros(shape, name) if rng is None
                               else kit.random_input(shape, name, rng, quant(detail)))

    def infer(self) -> None:
        # TFLM's planner may reuse an input's memory for later tensors: set the inputs every time
        self._set(self.inputs)
        self._interp.invoke()

    def run_once(self, arrays):
        if arrays is not None:
            self.inputs = [a.astype(d["dtype"]) for a, d in zip(arrays, self.input_details)]
        return self._call(self.inputs), [a.copy() for a in self.inputs]
