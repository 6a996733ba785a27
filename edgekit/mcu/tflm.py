"""TensorFlow Lite Micro for a ``.tflite`` file: the operators it uses and which TFLM lacks, the
tensor arena (RAM) and model bytes (flash) it needs, and the C++ of the op resolver a firmware
registers them with.

``measure`` loads the file in TFLM's Python interpreter (``tflite-micro``, the reference kernels)
in a child process, since TFLM aborts the whole process on some damaged models.

About the arena it reports: TFLM measures it on this 64-bit host, where pointers are 8 bytes, so
its persistent structures (one TfLiteEvalTensor per tensor, one NodeAndRegistration per operator)
are a little larger than on a 32-bit Cortex-M, and the recording allocator TFLM measures with is
a little larger than the plain one; the figure is an upper bound for the reference kernels.
Optimized kernels (CMSIS-NN on a Cortex-M) may ask for scratch buffers that the reference kernels
do not, so a firmware built with them may need more: measure on the device
(``RecordingMicroInterpreter``) before cutting it fine. TFLM's documentation recommends no margin
of its own; it aligns the arena to ARENA_ALIGNMENT bytes, so a firmware declares its arena
``alignas(16)`` (else up to 15 bytes are lost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekit.errors import MissingDependencyError, UsageError

ARENA_ALIGNMENT = 16  # TFLM's MicroArenaBufferAlignment() (micro_arena_constants.h)

# TFLM's MicroMutableOpResolver: the method that registers each builtin operator (by the schema's
# BuiltinOperator name). The Python interpreter registers them all (python_ops_resolver.cc).
BUILTIN_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill",
    "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish", "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable", "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}
# custom operators TFLM registers, by the name edgekit gives them (the custom code, or an alias)
CUSTOM_METHODS = {
    "ETHOSU": "AddEthosU",  # Vela's NPU command stream (custom code "ethos-u"); needs the Ethos-U driver
    "CIRCULAR_BUFFER": "AddCircularBuffer", "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "SignalDelay": "AddDelay", "SignalEnergy": "AddEnergy", "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank", "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction", "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft", "SignalOverlapAdd": "AddOverlapAdd", "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft", "SignalStacker": "AddStacker", "SignalWindow": "AddWindow",
}
CUSTOM_ALIASES = {"ethos-u": "ETHOSU"}  # custom code in the file -> edgekit's op name


def resolver_method(op: str) -> str:
    """TFLM's MicroMutableOpResolver method that registers ``op`` ("CONV_2D" -> "AddConv2D")."""
    name = CUSTOM_ALIASES.get(op, op)
    method = BUILTIN_METHODS.get(name) or CUSTOM_METHODS.get(name)
    if method is None:
        raise UsageError(f"TensorFlow Lite Micro has no kernel for operator {op} (no MicroMutableOpResolver "
                         "method); export the model without it")
    return method


def resolver_lines(ops: list[str], name: str = "resolver") -> list[str]:
    """The C++ that registers ``ops`` (each once, in order) with TFLM's op resolver:
    ``static tflite::MicroMutableOpResolver<N> resolver;`` then ``resolver.AddConv2D();`` ..."""
    methods = list(dict.fromkeys(resolver_method(op) for op in ops))
    return [f"static tflite::MicroMutableOpResolver<{len(methods)}> {name};",
            *(f"{name}.{method}();" for method in methods)]


def model_ops(data: bytes) -> list[str]:
    """The operators of a ``.tflite`` file, in order of first use (all subgraphs): builtin names
    ("CONV_2D"), custom ones by their custom code ("ETHOSU" for Vela's "ethos-u"). Raises the
    session's RuntimeProblem for a file that is not a complete TFLite flatbuffer."""
    from edgekit.formats.tflite import micro

    model = micro.read_model(data)
    fb = micro.schema()
    names = {code: name for name, code in vars(fb.BuiltinOperator).items() if not name.startswith("_")}
    ops = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == fb.BuiltinOperator.CUSTOM:
                custom = (code.CustomCode() or b"").decode(errors="replace")
                op = CUSTOM_ALIASES.get(custom, custom)
            else:
                op = names.get(builtin, f"BUILTIN_{builtin}")
            if op not in ops:
                ops.append(op)
    return ops


def missing_ops(ops: list[str]) -> list[str]:
    """Those of ``ops`` that TFLM has no kernel for."""
    return [op for op in ops if op not in BUILTIN_METHODS and op not in CUSTOM_METHODS]


def measure(path: Path, timeout: float = 120) -> dict:
    """Load ``path`` in TensorFlow Lite Micro in a child process, run one inference on zeros and
    report {"arena_bytes", "arena_head", "arena_tail" (RecordingMicroAllocator's total, head:
    tensors, tail: persistent; None where it did not load), "ops" (in order of first use),
    "missing_ops" (those TFLM lacks, all of them: found in the file, not one failure at a time),
    "flash_bytes" (the file: what the C array puts in flash), "tflm" (tflite-micro's version),
    "ran", "error" (one line, "" when it ran)}. See the module's docstring for what the arena means
    on a device."""
    from edgekit.formats.tflite import micro

    kit = micro.kit
    try:
        micro.tflm_runtime()
    except kit.RuntimeProblem as exc:
        raise MissingDependencyError("tflite-micro (TensorFlow Lite Micro)", "mcu") from exc
    version = micro.tflm_version()
    path = Path(path)
    data = path.read_bytes()
    result = {"arena_bytes": None, "arena_head": None, "arena_tail": None, "ops": [], "missing_ops": [],
              "flash_bytes": len(data), "tflm": version, "ran": False, "error": ""}
    try:
        result["ops"] = model_ops(data)
    except kit.RuntimeProblem as exc:
        return {**result, "error": str(exc)}
    result["missing_ops"] = missing_ops(result["ops"])
    if result["missing_ops"]:  # TFLM would stop at the first: say them all, without loading
        return {**result, "error": "TensorFlow Lite Micro has no kernel for "
                + ", ".join(result["missing_ops"])}
    return {**result, **_in_child(path, timeout)}


def _in_child(path: Path, timeout: float) -> dict:
    """What ``_child`` found for ``path``, or the error of a child that crashed or hung."""
    import edgekit

    env = dict(os.environ)
    root = str(Path(edgekit.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="edgekit-tflm-") as tmp:
        out = Path(tmp) / "result.json"
        try:
            proc = subprocess.run([sys.executable, "-m", "edgekit.mcu.tflm", str(path), str(out)], env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"TensorFlow Lite Micro did not load and run this file within {timeout:g} s"}
        found = json.loads(out.read_text()) if out.is_file() else {}
    if proc.returncode == 0 and found:
        return found
    said = [line.strip() for line in (proc.stderr or "").splitlines() if line.strip()]
    how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    if proc.returncode < 0:
        import signal

        with_name = {s.value: s.name for s in signal.Signals}
        how = with_name.get(-proc.returncode, how)
    last = f": {said[-1][:200]}" if said else ""
    stage = "running" if found else "loading"  # the arena was noted before the run
    return {**found, "ran": False, "error": f"TensorFlow Lite Micro crashed {stage} this file ({how}){last}"}


def _child(path: str, out: str) -> None:
    """In the child: load, note the arena, run once on zeros, note it again; JSON to ``out``."""
    from edgekit.formats.tflite import micro

    found: dict = {}
    try:
        session = micro.Session({"path": path})
        found.update(session.allocations())
        Path(out).write_text(json.dumps(found))  # kept if TFLM aborts the run
        session.make_inputs(None)
        session.infer()
        found.update(session.allocations(), ran=True, error="")
        found.update(_smallest_arena(path, found["arena_bytes"], session.arena_bytes))
    except micro.kit.RuntimeProblem as exc:
        found["error"] = str(exc)
    except Exception as exc:  # an invoke that failed, a damaged table read late
        line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        found["error"] = f"TensorFlow Lite Micro failed to load or run this file: {line}"
    Path(out).write_text(json.dumps(found))


def _smallest_arena(path: str, recorded: int, given: int) -> dict:
    """The arena the firmware must declare: TFLM's recorded total when an interpreter allocates in
    exactly that many bytes, else the smallest size that allocates (found by bisection between the
    two): the recording leaves out the memory planner's scratch, which an unrolled LSTM's many
    buffers make large (a 88,816-byte total that needed 108,391 bytes)."""
    from edgekit.formats.tflite import micro

    def allocates(size: int) -> bool:
        try:
            micro.Session({"path": path, "arena_bytes": size})
            return True
        except micro.kit.RuntimeProblem:
            return False

    if allocates(recorded):
        return {}
    low, high = recorded, given
    while high - low > ARENA_ALIGNMENT:
        mid = (low + high) // 2
        low, high = (low, mid) if allocates(mid) else (mid, high)
    high = -(-high // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    return {"arena_bytes": high, "arena_recorded": recorded,
            "arena_note": "the smallest arena that allocates: TFLM's recorded total leaves out its memory "
                          "planner's scratch"}


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
