"""The TFLite session (ai-edge-litert, or the older tflite-runtime): verify, eval, the
``--max-drop`` search and the device runner all run ``.tflite`` files through this one class
(standard library, numpy and the runtime only; see ``edgekit/bench/runtime_kit.py``).

Float32 in and out for edgekit: int8 inputs are quantized and int8 outputs dequantized with each
tensor's own scale and zero point. Several inputs and outputs are matched to the model's order
through the file's signature (litert-torch names them ``args_0``, ``args_1``... and
``output_0``...; the interpreter's own tensor order may differ). Both runtimes apply the XNNPACK
delegate by default; ``threads`` sets its thread count (default: one per core).
"""

from __future__ import annotations

import os

try:
    import edgekit_runtime_kit as kit  # beside the device runner
except ImportError:
    from edgekit.bench import runtime_kit as kit

RUNTIMES = ("ai-edge-litert", "tflite-runtime")  # tried in order; tflite-runtime needs numpy < 2
MODULES = {"ai-edge-litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter"}


def quiet_environment() -> None:
    """Defaults read when the runtimes and converters load: no C++ info logs, no progress lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")


def interpreter(order=RUNTIMES):
    """(Interpreter class, runtime name, version) from the first importable runtime of ``order``."""
    import importlib

    quiet_environment()
    tried = []
    for name in order:
        if name not in MODULES:
            tried.append(f"{name} (unknown)")
            continue
        try:
            module = importlib.import_module(MODULES[name])
        except ImportError as exc:
            tried.append(f"{name} ({exc})")
            continue
        return module.Interpreter, name, kit.version(name) or ""
    raise kit.RuntimeProblem("no_runtime", "no TFLite runtime: tried " + "; ".join(tried)
                             + "; install ai-edge-litert (or tflite-runtime)")


def signature_order(names: list) -> list:
    """A signature's input or output names in the model's order: ``args_2`` before ``args_10``."""
    import re

    def key(name: str) -> tuple:
        found = re.search(r"(\d+)$", name)
        return (int(found.group(1)) if found else -1, name)

    return sorted(names, key=key)


def ordered_details(interp) -> tuple:
    """The input and output tensor details in the model's order: by the signature's names where
    the file has one signature, else the interpreter's order (after any resize: current shapes)."""
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    try:
        signatures = interp.get_signature_list()
    except Exception:  # an old runtime without signatures
        return inputs, outputs
    if len(signatures) != 1 or (len(inputs) == 1 and len(outputs) == 1):
        return inputs, outputs
    runner = interp.get_signature_runner(next(iter(signatures)))
    by_index = {d["index"]: d for d in inputs + outputs}
    named_in, named_out = runner.get_input_details(), runner.get_output_details()
    return ([by_index[named_in[n]["index"]] for n in signature_order(list(named_in))],
            [by_index[named_out[n]["index"]] for n in signature_order(list(named_out))])


def dtype_name(dtype) -> str:
    import numpy as np

    return np.dtype(dtype).name


def dtype_names(details: list) -> str:
    """"int8", or e.g. "float32, int8" for tensors of several types (in order of first use)."""
    return ", ".join(dict.fromkeys(dtype_name(d["dtype"]) for d in details))


def quantize(x, detail: dict):
    """float32 -> the tensor's dtype with its own scale/zero point (unchanged if not quantized)."""
    return kit.quantize(x, dtype_name(detail["dtype"]), detail["quantization"])


def dequantize(y, detail: dict):
    return kit.dequantize(y, detail["quantization"])


class Session(kit.FixedShapeSession):
    device = "CPU XNNPACK"  # both runtimes apply the XNNPACK delegate by default
    what = "the TFLite model"

    def __init__(self, spec: dict):
        if spec.get("require_accelerator"):
            raise kit.RuntimeProblem("no_device", "edgekit has no TFLite GPU delegate path on this target")
        order = (spec.get("runtimes") or {}).get("tflite") or RUNTIMES
        interpreter_cls, self.runtime, self.runtime_version = interpreter(order)
        # no threads given: one per core, as onnxruntime and OpenVINO do by default (ai-edge-litert
        # turns None into 1 thread, which made eval's TFLite rows slower than bench's)
        threads = int(spec.get("threads") or os.cpu_count() or 1)
        kwargs = {"model_path": str(spec["path"]), "num_threads": threads}
        kwargs.update(spec.get("runtime_options") or {})
        self._interp = interpreter_cls(**kwargs)
        if spec.get("batch"):  # the runner: every input at the spec's batch
            self._resize(int(spec["batch"]), int(spec.get("batch_axis") or 0))
        self._interp.allocate_tensors()
        self._ordered()

    def _resize(self, batch: int, axis: int) -> None:
        self.batch = batch
        for detail in self._interp.get_input_details():
            shape = [int(d) for d in detail["shape"]]
            if shape and shape[axis] != batch:  # fails at allocate_tensors where an op cannot
                self._interp.resize_tensor_input(detail["index"], [*shape[:axis], batch, *shape[axis + 1:]])
        try:
            self._interp.allocate_tensors()
        except Exception as exc:
            raise kit.RuntimeProblem("bad_model", f"this TFLite file does not run with batch {batch}: "
                                     f"{exc}; bench it with --batch 1") from exc

    def _ordered(self) -> None:
        self.input_details, self.output_details = ordered_details(self._interp)
        self.fixed_shapes = tuple(tuple(int(d) for d in t["shape"]) for t in self.input_details)
        self.input_names = tuple(t["name"] for t in self.input_details)
        self.input_dtype = dtype_names(self.input_details)
        self.output_dtype = dtype_names(self.output_details)

    # ------------------------------------------------------------ edgekit's face

    def _invoke(self, x):
        for detail, a in zip(self.input_details, x if isinstance(x, tuple) else (x,)):
            self._interp.set_tensor(detail["index"], quantize(a, detail))
        self._interp.invoke()
        outputs = tuple(dequantize(self._interp.get_tensor(d["index"]), d) for d in self.output_details)
        return outputs[0] if len(outputs) == 1 else outputs

    # ------------------------------------------------------------ the runner's face

    def make_inputs(self, rng) -> None:
        self.input_shapes = []
        for detail in self.input_details:
            shape = [int(d) for d in detail["shape"]]
            name = dtype_name(detail["dtype"])
            quant = detail.get("quantization") if name in ("int8", "uint8") else None
            self._interp.set_tensor(detail["index"], kit.random_input(shape, name, rng, quant))
            self.input_shapes.append(shape)

    def infer(self) -> None:
        self._interp.invoke()

    def run_once(self, arrays):
        for detail, array in zip(self.input_details, arrays or []):
            self._interp.set_tensor(detail["index"], array.astype(detail["dtype"]))
        self._interp.invoke()
        inputs = [self._interp.get_tensor(d["index"]).copy() for d in self.input_details]
        outputs = [self._interp.get_tensor(d["index"]).copy() for d in self.output_details]
        return outputs, inputs
