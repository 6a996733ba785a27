"""Time a run's PyTorch model (eager, fp32) like runner.py times an artefact, in its own process.

    python -m edgekit.bench.torch_baseline SPEC.json | -

The spec holds run_dir plus runner.py's loop settings. Prints runner.py's result line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edgekit.bench.runner import RESULT_MARKER, environment, peak_rss_bytes, rss_bytes, time_loop


def measure(spec: dict) -> dict:
    rss_before = rss_bytes()
    start = time.perf_counter()
    import torch

    from edgekit.models.resolve import load_run_model
    from edgekit.runs import manifest as mf

    torch.set_num_threads(int(spec["threads"]))
    run_dir = Path(spec["run_dir"])
    model = load_run_model(mf.read_manifest(run_dir), run_dir)
    module = model.module.eval()
    load = time.perf_counter() - start
    batch = int(spec.get("batch") or 1)
    generator = torch.Generator().manual_seed(int(spec.get("seed", 0)))
    shapes = []
    for input_spec in model.inputs:  # random inputs for every input, the batch at its own axis
        shape = list(input_spec.shape)
        shape[input_spec.batch_axis] = batch
        shapes.append(shape)
    inputs = tuple(torch.randn(shape, generator=generator) for shape in shapes)

    def infer() -> None:
        with torch.inference_mode():
            module(*inputs)

    first, steady = time_loop(infer, spec)
    return {
        **_runtime(module, torch),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "input_shapes": shapes,
        "load_ms": load * 1e3,
        "first_inference_ms": first * 1e3,
        "warmup": int(spec.get("warmup", 5)),
        **steady,
        "rss_before_load_bytes": rss_before,
        "peak_rss_bytes": peak_rss_bytes(),
        "status": "ok",
    }


def _runtime(module, torch) -> dict:
    """What the row timed: PyTorch eager, or for an ONNX file as the model (``edgekit.models.onnx_file``)
    onnxruntime running the user's file, labelled so."""
    if getattr(module, "onnx_path", None) is not None:
        import onnxruntime

        return {"runtime": module.runtime, "runtime_version": onnxruntime.__version__, "device": "CPU"}
    return {"runtime": "torch", "runtime_version": torch.__version__.split("+")[0], "device": "CPU (eager)"}


def main(argv: list[str]) -> int:
    spec = json.loads(sys.stdin.read() if argv[1] == "-" else Path(argv[1]).read_text())
    try:
        result = measure(spec)
    except Exception as exc:  # reported as a failed row, never a traceback
        result = {"status": "failed", "kind": "failed", "error": f"{type(exc).__name__}: {exc}"}
    result["environment"] = environment()
    result["pid"] = os.getpid()
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
