"""What a firmware build takes for TensorFlow Lite Micro: the model as an aligned C array
(``model_data.h`` / ``model_data.cc``, like ``xxd -i`` with alignment, a length constant and the
tensor arena's size) and ``op_resolver.h``, which registers the model's operators with TFLM's
``MicroMutableOpResolver``.

A firmware adds the two ``.cc``/``.h`` pairs to its build beside TFLM and writes::

    #include "model_data.h"
    #include "op_resolver.h"

    alignas(16) static uint8_t tensor_arena[kTensorArenaSize];
    static ModelOpResolver resolver;
    RegisterOps(resolver);
    tflite::MicroInterpreter interpreter(tflite::GetModel(g_model_data), resolver,
                                         tensor_arena, kTensorArenaSize);
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.mcu.tflm import ARENA_ALIGNMENT, resolver_lines, resolver_method
from edgekit.runs.manifest import write_atomic

BYTES_PER_LINE = 12  # as xxd -i
HEX = [f"0x{b:02x}" for b in range(256)]


def c_identifier(name: str) -> str:
    """``name`` as a C identifier: other characters become underscores, never a leading digit."""
    ident = re.sub(r"\W", "_", name, flags=re.ASCII) or "model_data"
    return f"_{ident}" if ident[0].isdigit() else ident


def c_comment(text: str) -> str:
    """One line that is safe inside a ``//`` comment."""
    return " ".join(str(text).split())


def c_array(data: bytes) -> str:
    """The bytes as the body of a C initializer, 12 a line, as ``xxd -i`` writes them."""
    step = BYTES_PER_LINE
    lines = (", ".join(HEX[b] for b in data[i:i + step]) for i in range(0, len(data), step))
    return ",\n".join("  " + line for line in lines)


def header(name: str, guard: str, size: int, sha: str, source: str, arena_bytes: int, ops: list[str],
           extra: dict) -> str:
    notes = [f"// {c_comment(key)}: {c_comment(value)}" for key, value in extra.items()]
    resolver = [f"//   {line}" for line in resolver_lines(ops)]
    return "\n".join([
        f"// {name}.h: {c_comment(source)} as a C array for TensorFlow Lite Micro (written by edgekit).",
        f"// {size} bytes, sha256 {sha}",
        *notes,
        "// Its operators, registered by op_resolver.h's RegisterOps():",
        *resolver,
        "",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "// The tensor arena TFLM needs for this model (bytes, measured by TFLM);",
        f"// declare it alignas({ARENA_ALIGNMENT}).",
        f"constexpr int kTensorArenaSize = {arena_bytes};",
        "",
        f"extern const unsigned char g_{name}[];",
        f"extern const unsigned int g_{name}_len;",
        "",
        f"#endif  // {guard}",
        "",
    ])


def source_file(name: str, data: bytes, align: int) -> str:
    return "\n".join([
        f'#include "{name}.h"',
        "",
        f"alignas({align}) const unsigned char g_{name}[] = {{",
        c_array(data),
        "};",
        f"const unsigned int g_{name}_len = {len(data)};",
        "",
    ])


def resolver_header(ops: list[str], source: str) -> str:
    methods = list(dict.fromkeys(resolver_method(op) for op in ops))
    calls = [f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;" for m in methods]
    return "\n".join([
        f"// op_resolver.h: the {len(methods)} operators of {c_comment(source)} for TensorFlow Lite Micro "
        "(written by edgekit).",
        "",
        "#ifndef EDGEKIT_OP_RESOLVER_H_",
        "#define EDGEKIT_OP_RESOLVER_H_",
        "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        "",
        f"constexpr int kNumOps = {len(methods)};",
        "using ModelOpResolver = tflite::MicroMutableOpResolver<kNumOps>;",
        "",
        "// Registers each operator of the model once; kTfLiteError if TFLM refuses one.",
        "inline TfLiteStatus RegisterOps(ModelOpResolver& resolver) {",
        *calls,
        "  return kTfLiteOk;",
        "}",
        "",
        "#endif  // EDGEKIT_OP_RESOLVER_H_",
        "",
    ])


def write_firmware(model: bytes | str | Path, out_dir: Path, *, name: str = "model_data", align: int = 16,
                   arena_bytes: int, ops: list[str], extra: dict | None = None) -> dict:
    """Write ``{name}.h``, ``{name}.cc`` and ``op_resolver.h`` into ``out_dir`` (each atomically)
    for the model (its bytes, or a ``.tflite`` path). Returns {"files": {file name: sha256},
    "array", "model_bytes", "model_sha256", "align", "arena_bytes", "ops", "resolver"} for the
    manifest. ``extra`` adds "key: value" comment lines to the header (model, target, ...)."""
    if align < 1 or align & (align - 1):
        raise UsageError(f"the C array's alignment must be a power of two, not {align}")
    if int(arena_bytes) <= 0:
        raise UsageError(f"the tensor arena size must be positive, not {arena_bytes}")
    source = "the model"
    if not isinstance(model, (bytes, bytearray)):
        source = Path(model).name
        model = Path(model).read_bytes()
    data = bytes(model)
    name = c_identifier(name)
    if name == "op_resolver":
        raise UsageError("the C array's name cannot be op_resolver (that file registers the operators)")
    for op in ops:
        resolver_method(op)  # an operator TFLM lacks: a one-line error before anything is written
    sha = hashlib.sha256(data).hexdigest()
    guard = f"EDGEKIT_{name.upper()}_H_"
    texts = {
        f"{name}.h": header(name, guard, len(data), sha, source, int(arena_bytes), ops, dict(extra or {})),
        f"{name}.cc": source_file(name, data, align),
        "op_resolver.h": resolver_header(ops, source),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for file_name, text in texts.items():
        blob = text.encode()
        write_atomic(out_dir / file_name, blob)
        files[file_name] = hashlib.sha256(blob).hexdigest()
    return {"files": files, "array": f"g_{name}", "model_bytes": len(data), "model_sha256": sha,
            "align": align, "arena_bytes": int(arena_bytes), "ops": list(ops),
            "resolver": resolver_lines(ops)}
