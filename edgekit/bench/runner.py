"""Benchmark one model file in this process and print one JSON line: edgekit's device runner.

This file is copied as it is to devices (a Raspberry Pi, a Jetson, this machine) and run there:

    python3 runner.py SPEC.json        (or "-" to read the spec from stdin)

It imports only the standard library, numpy and the runtime that runs the file (the table
SESSIONS at the end of the sessions section: one class per format, which names its runtimes in
the order tried and its companion files; edgekit's Format classes must agree). Nothing from
edgekit. It prints exactly one line that starts with RESULT_MARKER, then a JSON object: either
the measurements or {"error": ..., "kind": ...} with kind "no_runtime", "no_device", "bad_model"
or "failed". The exit status is 0 when the measurement succeeded.

The spec (JSON): path, format (a key of SESSIONS), threads (int or null: the
runtime's default), batch, batch_axis (where the batch is, default 0), warmup, iters (int or
null), seconds (float or null), min_iters,
seed, "return_outputs" (one more run whose inputs and outputs come back, base64; with
"inputs" given in the same form they are used instead of random ones), and per format the
runtimes to try ("runtimes": {"tflite": ["ai-edge-litert",
"tflite-runtime"], ...}), onnxruntime execution providers ("providers"), the OpenVINO device
("openvino_device") and whether only an accelerator will do ("require_accelerator"). Optional
"runtime_options" tune the session (benchmarks/raw_best.py tries them): onnxruntime session config
entries ({"session.intra_op.allow_spinning": "0", ...}) plus "graph_optimization_level" ("basic",
"extended", "all"); OpenVINO compile properties ({"PERFORMANCE_HINT": "THROUGHPUT", ...}); LiteRT
Interpreter keyword arguments ({"experimental_default_delegate_latest_features": true, ...}).

Timing: the model is loaded (runtime import and session creation timed apart), one first
inference is timed on its own, ``warmup`` more are run untimed, then the steady state is timed
per inference with time.perf_counter until ``iters`` runs or ``seconds`` pass (at least
``min_iters``). Inputs are random, set once before the loop; only the inference call is timed
(onnxruntime's run() includes copying the inputs in and the outputs out, as any caller pays).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time

RESULT_MARKER = "EDGEKIT_BENCH_RESULT "
RUNNER_VERSION = 1
ACCELERATOR_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
                         "DmlExecutionProvider", "CoreMLExecutionProvider", "OpenVINOExecutionProvider")


class BenchError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------- environment


def rss_bytes() -> int:
    """Resident memory now (Linux /proc), else the peak so far."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes; Linux: KiB


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(
                (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in f) if v.strip()
            )
    except OSError:
        fields = {}
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def device_model() -> str | None:
    """Board name where the kernel has one (Raspberry Pi, Jetson: the device tree)."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            with open(path, "rb") as f:
                return f.read().rstrip(b"\0").decode(errors="replace").strip() or None
        except OSError:
            continue
    return None


def emulation() -> str | None:
    """How this process is emulated, when the kernel says so: QEMU user mode through binfmt_misc
    (an emulated Pi). Its figures are functional evidence, never device latency."""
    machine = platform.machine()
    machine = {"arm64": "aarch64", "armv7l": "arm", "armv6l": "arm"}.get(machine, machine)
    entry = f"/proc/sys/fs/binfmt_misc/qemu-{machine}"
    try:
        with open(entry) as f:
            if f.readline().strip() == "enabled":
                return f"qemu-user ({entry})"
    except OSError:
        pass
    return None


def environment() -> dict:
    import numpy as np

    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "board": device_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "emulated": emulation(),
    }


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver with at least one GPU (so a CPU-only runtime is the thing to fix)."""
    try:
        return bool(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        import shutil

        return shutil.which("nvidia-smi") is not None


# ---------------------------------------------------------------- sessions


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def _random_input(shape, dtype_name: str, rng, quant=None):
    import numpy as np

    dtype = np.dtype(dtype_name)
    if quant and quant[0]:  # an int8/uint8 input of a quantized TFLite model: quantize N(0, 1)
        scale, zero = quant
        info = np.iinfo(dtype)
        q = np.round(rng.standard_normal(shape) / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        return np.zeros(shape, dtype)
    if dtype.kind == "b":
        return np.zeros(shape, dtype)
    raise BenchError("bad_model", f"cannot make inputs of type {dtype_name}")


def _fix_shape(name: str, shape, batch: int, fmt: str, axis: int = 0) -> list[int]:
    """A concrete input shape: the batch dimension (``axis``) set to ``batch``; other dims must be static."""
    out = []
    for i, dim in enumerate(shape):
        if i == axis:
            out.append(batch)
        elif isinstance(dim, int) and dim > 0:
            out.append(dim)
        else:
            raise BenchError(
                "bad_model",
                f"input {name!r} of this {fmt} file has a dynamic dimension {i} ({dim}); "
                "export it with a fixed input shape",
            )
    return out


class OnnxSession:
    runtimes = ("onnxruntime",)
    companions = ()

    def __init__(self, spec: dict):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if spec.get("threads"):
            opts.intra_op_num_threads = int(spec["threads"])
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        for key, value in (spec.get("runtime_options") or {}).items():
            if key == "graph_optimization_level":
                level = f"ORT_ENABLE_{value.upper()}"
                opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            else:
                opts.add_session_config_entry(key, str(value))
        available = ort.get_available_providers()
        wanted = spec.get("providers") or ["CPUExecutionProvider"]
        providers = [p for p in wanted if p in available]
        if spec.get("require_accelerator"):
            providers = [p for p in providers if p in ACCELERATOR_PROVIDERS]
            if not providers:
                gpu = " although this machine has an NVIDIA GPU" if nvidia_gpu_present() else ""
                raise BenchError(
                    "no_device",
                    f"onnxruntime {ort.__version__} here offers {', '.join(available)}, none of "
                    f"{', '.join(wanted)}{gpu}; install onnxruntime-gpu (CUDA/TensorRT) or bench on the CPU",
                )
        elif not providers:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(spec["path"], opts, providers=providers)
        self.batch, self.axis = int(spec.get("batch") or 1), int(spec.get("batch_axis") or 0)
        self.info = {
            "runtime": "onnxruntime",
            "runtime_version": ort.__version__,
            "device": self.session.get_providers()[0],
            "providers": self.session.get_providers(),
        }

    def make_inputs(self, rng) -> None:
        types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
                 "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
                 "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
        self.feed = {}
        for node in self.session.get_inputs():
            shape, axis = list(node.shape), self.axis
            if isinstance(shape[axis], int) and shape[axis] > 0 and shape[axis] != self.batch:
                raise BenchError(
                    "bad_model",
                    f"this ONNX file has a fixed batch of {shape[axis]}; bench it with --batch "
                    f"{shape[axis]} or export it with a dynamic batch dimension",
                )
            shape = _fix_shape(node.name, shape, self.batch, "ONNX", axis)
            if node.type not in types:
                raise BenchError("bad_model", f"input {node.name!r} has type {node.type}, not supported")
            self.feed[node.name] = _random_input(shape, types[node.type], rng)
        self.input_shapes = [list(v.shape) for v in self.feed.values()]

    def infer(self) -> None:
        self.session.run(None, self.feed)

    def run_once(self, arrays):
        feed = dict(zip(self.feed, arrays)) if arrays is not None else self.feed
        return self.session.run(None, feed), list(feed.values())


class OpenVinoSession:
    runtimes = ("openvino",)
    companions = (".bin",)

    def __init__(self, spec: dict):
        import openvino as ov

        core = ov.Core()
        device = spec.get("openvino_device") or "CPU"
        devices = core.available_devices
        if device.split(".")[0].split(":")[0] not in {d.split(".")[0] for d in devices} and device != "AUTO":
            raise BenchError(
                "no_device",
                f"OpenVINO {ov.__version__} sees devices {', '.join(devices)}, not {device}",
            )
        model = core.read_model(spec["path"])
        self.batch = int(spec.get("batch") or 1)
        shapes = {}
        for port in model.inputs:
            pshape = port.get_partial_shape()
            dims = [d.get_length() if d.is_static else None for d in pshape]
            shapes[port.any_name] = _fix_shape(port.any_name, dims, self.batch, "OpenVINO",
                                               int(spec.get("batch_axis") or 0))
        static = {p.any_name: list(p.get_partial_shape().to_shape()) for p in model.inputs
                  if p.get_partial_shape().is_static}
        if static != shapes:
            model.reshape({name: ov.PartialShape(s) for name, s in shapes.items()})
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if spec.get("threads") and device.startswith("CPU"):
            config["INFERENCE_NUM_THREADS"] = int(spec["threads"])
        config.update(spec.get("runtime_options") or {})
        self.compiled = core.compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()
        self.shapes = shapes
        precision = None
        try:
            hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        except Exception:
            pass
        try:
            used = list(self.compiled.get_property("EXECUTION_DEVICES"))
        except Exception:
            used = [device]
        self.info = {
            "runtime": "openvino",
            "runtime_version": ov.__version__,
            "device": ",".join(used),
            "inference_precision": precision,
        }
        try:
            self.info["streams"] = int(self.compiled.get_property("NUM_STREAMS"))
            if device.startswith("CPU"):
                self.info["threads_used"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        except Exception:
            pass

    def make_inputs(self, rng) -> None:
        import openvino as ov

        self.input_shapes = []
        for i, port in enumerate(self.compiled.inputs):
            shape = self.shapes[port.any_name]
            dtype = port.get_element_type().to_dtype().name
            self.request.set_input_tensor(i, ov.Tensor(_random_input(shape, dtype, rng)))
            self.input_shapes.append(shape)

    def infer(self) -> None:
        self.request.infer()

    def run_once(self, arrays):
        import openvino as ov

        for i, array in enumerate(arrays or []):
            self.request.set_input_tensor(i, ov.Tensor(array))
        self.request.infer()
        inputs = [self.request.get_input_tensor(i).data.copy() for i in range(len(self.compiled.inputs))]
        outputs = [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]
        return outputs, inputs


def _tflite_interpreter(spec: dict):
    """(Interpreter class, runtime name, version) from the first importable runtime."""
    tried = []
    for name in (spec.get("runtimes") or {}).get("tflite") or TFLiteSession.runtimes:
        try:
            if name == "ai-edge-litert":
                from ai_edge_litert.interpreter import Interpreter
            elif name == "tflite-runtime":
                from tflite_runtime.interpreter import Interpreter
            else:
                tried.append(f"{name} (unknown)")
                continue
        except ImportError as exc:
            tried.append(f"{name} ({exc})")
            continue
        return Interpreter, name, _version(name)
    raise BenchError("no_runtime", "no TFLite runtime: tried " + "; ".join(tried)
                     + "; install ai-edge-litert (or tflite-runtime) on the device")


class TFLiteSession:
    runtimes = ("ai-edge-litert", "tflite-runtime")  # tried in order; tflite-runtime needs numpy < 2
    companions = ()

    def __init__(self, spec: dict):
        if spec.get("require_accelerator"):
            raise BenchError("no_device", "edgekit has no TFLite GPU delegate path on this target")
        interpreter_cls, runtime, version = _tflite_interpreter(spec)
        kwargs = {"model_path": spec["path"]}
        if spec.get("threads"):
            kwargs["num_threads"] = int(spec["threads"])
        kwargs.update(spec.get("runtime_options") or {})
        self.interpreter = interpreter_cls(**kwargs)
        self.batch, axis = int(spec.get("batch") or 1), int(spec.get("batch_axis") or 0)
        for detail in self.interpreter.get_input_details():
            shape = [int(d) for d in detail["shape"]]
            if shape and shape[axis] != self.batch:  # fails at allocate_tensors where an op cannot
                self.interpreter.resize_tensor_input(detail["index"], [*shape[:axis], self.batch,
                                                                       *shape[axis + 1:]])
        try:
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise BenchError("bad_model", f"this TFLite file does not run with batch {self.batch}: "
                             f"{exc}; bench it with --batch 1") from exc
        self.info = {
            "runtime": runtime,
            "runtime_version": version,
            "device": "CPU XNNPACK",  # both runtimes apply the XNNPACK delegate by default
        }
        self.input_details, self.output_details = _tflite_order(self.interpreter)

    def make_inputs(self, rng) -> None:
        self.input_shapes = []
        for detail in self.input_details:
            shape = [int(d) for d in detail["shape"]]
            quant = detail.get("quantization") if detail["dtype"].__name__ in ("int8", "uint8") else None
            x = _random_input(shape, detail["dtype"].__name__, rng, quant)
            self.interpreter.set_tensor(detail["index"], x)
            self.input_shapes.append(shape)

    def infer(self) -> None:
        self.interpreter.invoke()

    def run_once(self, arrays):
        details = self.input_details
        for detail, array in zip(details, arrays or []):
            self.interpreter.set_tensor(detail["index"], array.astype(detail["dtype"]))
        self.interpreter.invoke()
        inputs = [self.interpreter.get_tensor(d["index"]).copy() for d in details]
        outputs = [self.interpreter.get_tensor(d["index"]).copy() for d in self.output_details]
        return outputs, inputs


def _tflite_order(interpreter):
    """Input and output details in the model's order: by the one signature's names (litert-torch's
    args_0, args_1, ... and output_0, ...; the interpreter's tensor order may differ), else as the
    interpreter lists them (after any resize, so the shapes are current)."""
    import re

    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    try:
        signatures = interpreter.get_signature_list()
    except Exception:  # an old runtime without signatures
        return inputs, outputs
    if len(signatures) != 1 or (len(inputs) == 1 and len(outputs) == 1):
        return inputs, outputs

    def key(name):
        found = re.search(r"(\d+)$", name)
        return (int(found.group(1)) if found else -1, name)

    runner = interpreter.get_signature_runner(next(iter(signatures)))
    by_index = {d["index"]: d for d in inputs + outputs}
    named_in, named_out = runner.get_input_details(), runner.get_output_details()
    return ([by_index[named_in[n]["index"]] for n in sorted(named_in, key=key)],
            [by_index[named_out[n]["index"]] for n in sorted(named_out, key=key)])


class ExecuTorchSession:
    runtimes = ("executorch",)  # its Python runtime exchanges torch tensors, so torch comes with it
    companions = ()
    DTYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
              11: "bool"}  # ExecuTorch ScalarType codes

    def __init__(self, spec: dict):
        if spec.get("require_accelerator"):
            raise BenchError("no_device", "edgekit runs ExecuTorch programs on the CPU (XNNPACK) only")
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        if spec.get("threads"):  # XNNPACK's thread pool (one per process)
            portable_lib._unsafe_reset_threadpool(int(spec["threads"]))
        self.torch = torch
        self.method = Runtime.get().load_program(spec["path"]).load_method("forward")
        self.batch = int(spec.get("batch") or 1)
        meta = self.method.metadata
        self.metas = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        # sizes() is the shape, or its bound where the program takes a dynamic batch: a smaller
        # batch runs only there, so one trial run tells a dynamic program from a fixed one.
        axis = int(spec.get("batch_axis") or 0)
        self.shapes = [[*t.sizes()[:axis], self.batch, *t.sizes()[axis + 1:]] if t.sizes() else []
                       for t in self.metas]
        bound = min((int(t.sizes()[axis]) for t in self.metas if t.sizes()), default=self.batch)
        if bound == 1 and self.batch != 1:
            raise BenchError("bad_model", "this ExecuTorch program has a fixed batch of 1; bench it "
                             "with --batch 1 or export it with --dynamic-batch")
        if self.batch > bound:
            raise BenchError("bad_model", f"this ExecuTorch program takes at most batch {bound}; "
                             f"bench it with --batch {bound} or less")
        if self.batch != bound:
            self.make_inputs(None)
            try:
                self.infer()
            except Exception as exc:
                raise BenchError("bad_model", f"this ExecuTorch program has a fixed batch of {bound}; "
                                 f"bench it with --batch {bound}") from exc
        self.info = {"runtime": "executorch", "runtime_version": _version("executorch"),
                     "device": "CPU XNNPACK", "threads_used": portable_lib._threadpool_get_thread_count()}

    def make_inputs(self, rng) -> None:
        """Random inputs of the batch asked for (zeros when ``rng`` is None: the trial run)."""
        import numpy as np

        self.input_shapes = self.shapes
        self.inputs = []
        for tensor, shape in zip(self.metas, self.input_shapes):
            dtype = self.DTYPES.get(int(tensor.dtype()))
            if dtype is None:
                raise BenchError("bad_model", f"an input has ExecuTorch scalar type {tensor.dtype()}, "
                                 "not supported")
            x = np.zeros(shape, dtype) if rng is None else _random_input(shape, dtype, rng)
            self.inputs.append(self.torch.from_numpy(x))

    def infer(self) -> None:
        self.method.execute(self.inputs)

    def run_once(self, arrays):
        if arrays is not None:
            self.inputs = [self.torch.from_numpy(a) for a in arrays]
        return [o.numpy().copy() for o in self.method.execute(self.inputs)], [t.numpy() for t in self.inputs]


# The one table of runtime sessions: format name -> session class.
SESSIONS = {
    "onnx": OnnxSession,
    "openvino": OpenVinoSession,
    "tflite": TFLiteSession,
    "executorch": ExecuTorchSession,
}


def open_session(spec: dict):
    fmt = spec["format"]
    if fmt not in SESSIONS:
        raise BenchError("bad_model", f"unknown format {fmt!r}; known: {', '.join(SESSIONS)}")
    session = SESSIONS[fmt]
    try:
        return session(spec)
    except ImportError as exc:  # the runtime itself is missing (sessions import it first)
        runtime = session.runtimes[0]
        raise BenchError("no_runtime", f"{runtime} is not installed here ({exc}); install it "
                         f"on the device (pip install {runtime})") from exc


# ---------------------------------------------------------------- timing


def summarise(latencies_s: list, batch: int, wall_s: float) -> dict:
    import numpy as np

    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if len(ms) > 1 else 0.0
    return {
        "iters": int(len(ms)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": mean,
        "std_ms": std,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "cv": std / mean if mean > 0 else 0.0,
        "throughput_per_s": batch * len(ms) / wall_s if wall_s > 0 else None,
        "timed_seconds": wall_s,
    }


def time_loop(infer, spec: dict) -> tuple[float, dict]:
    """(first inference seconds, steady-state summary) for a zero-argument ``infer``."""
    clock = time.perf_counter
    start = clock()
    infer()
    first = clock() - start
    for _ in range(int(spec.get("warmup", 5))):
        infer()
    iters = spec.get("iters")
    seconds = spec.get("seconds")
    min_iters = int(spec.get("min_iters", 5))
    latencies = []
    begin = clock()
    while True:
        t0 = clock()
        infer()
        t1 = clock()
        latencies.append(t1 - t0)
        n = len(latencies)
        if iters is not None and n >= int(iters):
            break
        if seconds is not None and t1 - begin >= float(seconds) and n >= min_iters:
            break
    return first, summarise(latencies, int(spec.get("batch") or 1), clock() - begin)


def measure(spec: dict) -> dict:
    import numpy as np

    if spec.get("threads") == 0:  # one per core of the device
        spec = dict(spec, threads=os.cpu_count())
    rss_before = rss_bytes()
    start = time.perf_counter()
    session = open_session(spec)
    load = time.perf_counter() - start
    session.make_inputs(np.random.default_rng(int(spec.get("seed", 0))))
    first, steady = time_loop(session.infer, spec)
    compared = {}
    if spec.get("return_outputs"):  # one more run, its inputs and outputs returned (cross-device checks)
        given = [decode(a) for a in spec["inputs"]] if spec.get("inputs") else None
        outputs, inputs = session.run_once(given)
        compared = {"inputs": [encode(a) for a in inputs], "outputs": [encode(a) for a in outputs]}
    return {
        **session.info,
        "threads": spec.get("threads"),
        "batch": int(spec.get("batch") or 1),
        "input_shapes": session.input_shapes,
        "load_ms": load * 1e3,
        "first_inference_ms": first * 1e3,
        "warmup": int(spec.get("warmup", 5)),
        **steady,
        "rss_before_load_bytes": rss_before,
        "peak_rss_bytes": peak_rss_bytes(),
        "file_bytes": file_bytes(spec["path"], spec["format"]),
        **compared,
    }


def encode(array) -> dict:
    """An array as JSON, bit-exact: dtype, shape and its bytes in base64."""
    import base64

    import numpy as np

    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape),
            "base64": base64.b64encode(array.tobytes()).decode("ascii")}


def decode(data: dict):
    import base64

    import numpy as np

    array = np.frombuffer(base64.b64decode(data["base64"]), np.dtype(data["dtype"]))
    return array.reshape(data["shape"]).copy()


def file_bytes(path: str, fmt: str) -> int:
    size = os.path.getsize(path)
    for suffix in SESSIONS[fmt].companions:
        companion = os.path.splitext(path)[0] + suffix
        if os.path.exists(companion):
            size += os.path.getsize(companion)
    return size


def run(spec: dict) -> dict:
    try:
        result = measure(spec)
        result["status"] = "ok"
    except BenchError as exc:
        result = {"status": "failed", "kind": exc.kind, "error": str(exc)}
    except Exception as exc:  # a runtime's own error: report it, never a bare traceback
        text = " ".join(str(exc).split())
        result = {"status": "failed", "kind": "failed", "error": f"{type(exc).__name__}: {text[:500]}"}
        if "Unsupported model IR version" in text:  # seen on a device with an older onnxruntime
            result["error"] = (f"the device's onnxruntime is older than this ONNX file ({text[-60:]}); "
                               "upgrade onnxruntime there or export with an older onnx package")
    try:
        result["environment"] = environment()
    except Exception as exc:  # numpy missing is reported below
        result["environment"] = {"error": str(exc)}
    result["runner_version"] = RUNNER_VERSION
    result["pid"] = os.getpid()
    return result


def main(argv: list) -> int:
    if len(argv) != 2:
        print("usage: runner.py SPEC.json | -", file=sys.stderr)
        return 2
    raw = sys.stdin.read() if argv[1] == "-" else open(argv[1]).read()
    spec = json.loads(raw)
    try:
        import numpy  # noqa: F401
    except ImportError:
        result = {"status": "failed", "kind": "no_runtime",
                  "error": f"numpy is not installed for {sys.executable}; install numpy on the device",
                  "runner_version": RUNNER_VERSION}
    else:
        result = run(spec)
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
