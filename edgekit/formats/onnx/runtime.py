"""The ONNX session (onnxruntime): verify, eval, the ``--max-drop`` search and the device runner
all run ``.onnx`` files through this one class (standard library, numpy and onnxruntime only; see
``edgekit/bench/runtime_kit.py``).

Tuned as the runner measured best on CPUs (benchmarks/raw_best.py): every graph optimisation,
sequential execution with one inter-op thread, intra-op threads as asked. A spec's
``runtime_options`` add session config entries and ``graph_optimization_level``.
"""

from __future__ import annotations

try:
    import edgekit_runtime_kit as kit  # beside the device runner
except ImportError:
    from edgekit.bench import runtime_kit as kit

ACCELERATOR_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
                         "DmlExecutionProvider", "CoreMLExecutionProvider", "OpenVINOExecutionProvider")
TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
         "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
         "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def nvidia_gpu_present() -> bool:
    import os
    import shutil

    try:
        return bool(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return shutil.which("nvidia-smi") is not None


class Session(kit.Session):
    runtime = "onnxruntime"

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
        self.session = ort.InferenceSession(str(spec["path"]), opts, providers=_providers(ort, spec))
        self.runtime_version = ort.__version__
        self.device = self.session.get_providers()[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.batch, self.axis = int(spec.get("batch") or 1), int(spec.get("batch_axis") or 0)

    @property
    def info(self) -> dict:
        return {**super().info, "providers": self.session.get_providers()}

    # ------------------------------------------------------------ edgekit's face

    def run(self, x):
        xs = kit.as_inputs(x)
        if len(xs) != len(self.input_names):
            raise kit.RuntimeProblem("bad_input", f"{len(xs)} input arrays for an ONNX model with inputs "
                                     f"{', '.join(self.input_names)}")
        return kit.as_outputs(self.session.run(None, dict(zip(self.input_names, xs))))

    def input_info(self) -> dict:
        shapes = [[d if isinstance(d, int) else str(d) for d in i.shape] for i in self.session.get_inputs()]
        return kit.shape_info(shapes[0], inputs=list(zip(self.input_names, shapes)))

    # ------------------------------------------------------------ the runner's face

    def make_inputs(self, rng) -> None:
        self.feed = {}
        for node in self.session.get_inputs():
            shape, axis = list(node.shape), self.axis
            if isinstance(shape[axis], int) and shape[axis] > 0 and shape[axis] != self.batch:
                raise kit.RuntimeProblem(
                    "bad_model", f"this ONNX file has a fixed batch of {shape[axis]}; bench it with --batch "
                    f"{shape[axis]} or export it with a dynamic batch dimension")
            shape = kit.fix_shape(node.name, shape, self.batch, "ONNX", axis)
            if node.type not in TYPES:
                raise kit.RuntimeProblem("bad_model", f"input {node.name!r} has type {node.type}, "
                                         "not supported")
            self.feed[node.name] = kit.random_input(shape, TYPES[node.type], rng)
        self.input_shapes = [list(v.shape) for v in self.feed.values()]

    def infer(self) -> None:
        self.session.run(None, self.feed)

    def run_once(self, arrays):
        feed = dict(zip(self.feed, arrays)) if arrays is not None else self.feed
        return self.session.run(None, feed), list(feed.values())


def _providers(ort, spec: dict) -> list[str]:
    available = ort.get_available_providers()
    wanted = spec.get("providers") or ["CPUExecutionProvider"]
    providers = [p for p in wanted if p in available]
    if spec.get("require_accelerator"):
        providers = [p for p in providers if p in ACCELERATOR_PROVIDERS]
        if not providers:
            gpu = " although this machine has an NVIDIA GPU" if nvidia_gpu_present() else ""
            raise kit.RuntimeProblem(
                "no_device", f"onnxruntime {ort.__version__} here offers {', '.join(available)}, none of "
                f"{', '.join(wanted)}{gpu}; install onnxruntime-gpu (CUDA/TensorRT) or bench on the CPU")
    return providers or ["CPUExecutionProvider"]
