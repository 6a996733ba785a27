#!/usr/bin/env bash
# GPU-target check, run on a lent GPU machine (an NVIDIA H100 with the system python3: torch, numpy,
# onnx, onnxruntime CPU build; no network). What it shows:
#  1. the device runner (edgekit/bench/runner.py, standalone) runs an ONNX file on that machine;
#  2. `edgekit bench FILE --target local-gpu` finds no GPU execution provider in a CPU-only
#     onnxruntime even though an NVIDIA GPU is present, says so and exits 3 (no silent CPU run);
#  3. `edgekit bench FILE --target local-cpu` times the same file on the CPU.
# Usage: bash benchmarks/device/gpu_check.sh OUTDIR
set -u
out=${1:-/tmp/gpu-check}
mkdir -p "$out"
export PYTHONPATH=$PWD
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import sys, numpy, onnxruntime as o; print(sys.version.split()[0], 'numpy', numpy.__version__, 'onnxruntime', o.__version__, o.get_available_providers())"
  python3 - <<'PY'
import numpy as np, onnx
from onnx import TensorProto, helper
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 256])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 256])
w = helper.make_tensor("w", TensorProto.FLOAT, [256, 256], np.random.default_rng(0).standard_normal(65536).astype(np.float32))
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "g", [x], [y], [w])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), "/tmp/mlp.onnx")
PY
  echo "== 1. standalone runner"
  cp edgekit/bench/runner.py /tmp/runner.py
  echo '{"path": "/tmp/mlp.onnx", "format": "onnx", "iters": 50, "threads": 4}' | (cd /tmp && python3 runner.py -); echo "rc=$?"
  echo "== 2. local-gpu"
  python3 -m edgekit bench /tmp/mlp.onnx --target local-gpu --iters 20; echo "rc=$?"
  echo "== 3. local-cpu"
  python3 -m edgekit bench /tmp/mlp.onnx --target local-cpu --iters 50 --threads 4; echo "rc=$?"
} 2>&1 | tee "$out/gpu_check.txt"
