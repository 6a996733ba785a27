"""Benchmark one model file in this process and print one JSON line: edgekit's device runner.

This file is copied as it is to devices (a Raspberry Pi, a Jetson, this machine) and run there:

    python3 runner.py SPEC.json        (or "-" to read the spec from stdin)

It imports only the standard library, numpy and the runtime that runs the file, through the
format's runtime module (``edgekit/formats/<name>/runtime.py``, the one session class edgekit's
verify and eval use too) and their shared ``edgekit_runtime_kit.py``
(``edgekit/bench/runtime_kit.py``): edgekit copies both beside this file, or names them in the
spec when it runs here. Nothing from edgekit. It prints exactly one line that starts with
RESULT_MARKER, then a JSON object: either the measurements or {"error": ..., "kind": ...} with kind
"no_runtime", "no_device", "bad_model" or "failed". The exit status is 0 when the measurement
succeeded.

The spec (JSON): path, format, runtime (the format's runtime module: a path, absolute or beside
this file), kit (the same for the kit; default beside this file), companions (suffixes of the
files beside path that count in its size), threads (int or null: the
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


# ---------------------------------------------------------------- sessions


def load_kit(spec: dict):
    """The formats' shared runtime module (``edgekit/bench/runtime_kit.py``), registered as
    ``edgekit_runtime_kit`` so that the format's runtime module imports it by that name."""
    for name in ("edgekit_runtime_kit", "edgekit.bench.runtime_kit"):  # (the latter: in edgekit's process)
        if name in sys.modules:
            sys.modules["edgekit_runtime_kit"] = sys.modules[name]
            return sys.modules[name]
    return _load("edgekit_runtime_kit", spec.get("kit") or "edgekit_runtime_kit.py")


def _load(name: str, path: str):
    import importlib.util

    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), path)
    if not os.path.isfile(path):
        raise BenchError("bad_model", f"{os.path.basename(path)} is missing beside the runner; "
                         "edgekit copies it with the runner (copy both again)")
    found = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(found)
    sys.modules[name] = module
    found.loader.exec_module(module)
    return module


def open_session(spec: dict):
    """The format's session (its ``runtime.py``, named by the spec's ``runtime``: a path, absolute
    or beside this file; ``runtime_<format>.py`` beside this file by default) on the spec."""
    fmt = spec["format"]
    load_kit(spec)
    try:
        module = _load(f"edgekit_runtime_{fmt}", spec.get("runtime") or f"runtime_{fmt}.py")
        return module.Session(spec)
    except ImportError as exc:  # the runtime itself is missing (sessions import it first)
        runtime = ((spec.get("runtimes") or {}).get(fmt) or [fmt])[0]
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

    spec = dict(spec, batch=int(spec.get("batch") or 1))  # a batch: the sessions' runner face
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
        "file_bytes": file_bytes(spec["path"], spec.get("companions")),
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


def file_bytes(path: str, companions) -> int:
    size = os.path.getsize(path)
    for suffix in companions or ():
        companion = os.path.splitext(path)[0] + suffix
        if os.path.exists(companion):
            size += os.path.getsize(companion)
    return size


def run(spec: dict) -> dict:
    try:
        result = measure(spec)
        result["status"] = "ok"
    except Exception as exc:
        result = _failure(exc)
    try:
        result["environment"] = environment()
    except Exception as exc:  # numpy missing is reported below
        result["environment"] = {"error": str(exc)}
    result["runner_version"] = RUNNER_VERSION
    result["pid"] = os.getpid()
    return result


def _failure(exc: Exception) -> dict:
    if isinstance(exc, BenchError) or type(exc).__name__ == "RuntimeProblem":  # the kit's, with a kind
        return {"status": "failed", "kind": exc.kind, "error": str(exc)}
    # a runtime's own error: report it, never a bare traceback
    text = " ".join(str(exc).split())
    result = {"status": "failed", "kind": "failed", "error": f"{type(exc).__name__}: {text[:500]}"}
    if "Unsupported model IR version" in text:  # seen on a device with an older onnxruntime
        result["error"] = (f"the device's onnxruntime is older than this ONNX file ({text[-60:]}); "
                           "upgrade onnxruntime there or export with an older onnx package")
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
