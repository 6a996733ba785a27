"""TFLite: the op codes and op versions in the flatbuffer against the device's TF Lite runtime.

The flatbuffer is read with the schema module ai-edge-litert ships (``schema_py_generated``). Each
op version is dated by LiteRT's own table (``tflite_ops.OP_RUNTIME``); the converter's
``min_runtime_version`` metadata counts too. An op the table does not list at all (a newer builtin
than the table, STABLEHLO_* and the like) is at least as new as every op with a smaller builtin
code, since codes are handed out in order.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from edgekit.compat.versions import vtuple
from edgekit.errors import DataError
from edgekit.formats.tflite.compat_ops import (
    NEWEST_TF,
    OP_RUNTIME,
    TFLITE_RUNTIME_LAST,
    litert_for,
    min_runtime,
    runtime_tf,
)

METADATA_KEY = "min_runtime_version"


def _schema():
    from edgekit.errors import require

    return require("ai_edge_litert.schema_py_generated", "ai-edge-litert", "tflite")


def needs(path: Path, tools: dict | None = None) -> dict:
    """Op codes with their largest version, custom ops and the ``min_runtime_version`` metadata."""
    schema = _schema()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            model = schema.Model.GetRootAs(buf, 0)
            ops, codes, custom = _op_codes(schema, model)
            meta = _metadata(model, buf, METADATA_KEY)
        except Exception as exc:  # flatbuffers raises struct/index errors on a file that is not one
            raise DataError(f"{Path(path).name} is not a TFLite flatbuffer ({type(exc).__name__})") from None
    found = {"ops": ops, "custom_ops": sorted(custom), "min_runtime_version": meta}
    required, by, beyond = _required(ops, codes, _table_codes(schema), meta)
    found.update(required=required, required_by=by, beyond_table=beyond)
    return found


def _op_codes(schema, model) -> tuple[dict[str, int], dict[str, int], set[str]]:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops: dict[str, int] = {}
    codes: dict[str, int] = {}
    custom = set()
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())  # schema_utils.cc GetBuiltinCode
        if code == schema.BuiltinOperator.CUSTOM:
            custom.add((oc.CustomCode() or b"?").decode(errors="replace"))
            continue
        name = names.get(code, f"BUILTIN_{code}")
        ops[name] = max(ops.get(name, 0), oc.Version())
        codes[name] = code
    return ops, codes, custom


def _metadata(model, buf, key: str) -> str | None:
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        if (md.Name() or b"").decode(errors="replace") != key:
            continue
        b = model.Buffers(md.Buffer())
        if b.DataLength():
            data = bytes(b.Data(j) for j in range(b.DataLength()))
        elif b.Offset() > 1:  # a large model keeps its buffers after the flatbuffer
            data = bytes(buf[b.Offset() : b.Offset() + b.Size()])
        else:
            return None
        return data.split(b"\0", 1)[0].decode(errors="replace") or None
    return None


def _table_codes(schema) -> dict[str, int]:
    return {name: getattr(schema.BuiltinOperator, name) for name in OP_RUNTIME
            if hasattr(schema.BuiltinOperator, name)}


def _required(ops: dict[str, int], codes: dict[str, int], table_codes: dict[str, int],
              meta: str | None) -> tuple[str | None, str | None, list[str]]:
    """(the newest runtime any op needs, which op, ops newer than the table)."""
    need, by, beyond = meta, "min_runtime_version metadata" if meta else None, []
    for op, version in sorted(ops.items()):
        runtime, listed = min_runtime(op, version)
        if not listed and op in OP_RUNTIME:  # a version newer than the table's newest for this op
            beyond.append(f"{op} v{version}")
            continue
        if not listed:  # an op the table never dates: at least as new as every older code
            older = [OP_RUNTIME[n][0] or OP_RUNTIME[n][1] for n, c in table_codes.items()
                     if c < codes.get(op, 10**6)]
            if codes.get(op, 10**6) > max(table_codes.values(), default=0):
                beyond.append(f"{op} v{version}")
                continue
            runtime = max(older, key=vtuple, default=None)
        if runtime and (need is None or vtuple(runtime) > vtuple(need)):
            need, by = runtime, f"{op} v{version}"
    return need, by, beyond


def summary(n: dict) -> str:
    if n["beyond_table"]:
        return f"{', '.join(n['beyond_table'])} (newer than TF Lite {NEWEST_TF})"
    return f"TF Lite >= {n['required']} ({n['required_by']})" if n["required"] else "any TF Lite"


def verdict(n: dict, runtime: dict) -> tuple[bool | None, str, str]:
    name, version = runtime["name"], runtime["version"]
    if name == "tflite-runtime" and vtuple(runtime.get("numpy")) >= (2,):
        return (False, f"tflite-runtime {version} was built against numpy 1 and the device has numpy "
                f"{runtime['numpy']}", "pip install 'numpy<2' on the device, or install ai-edge-litert "
                "instead of tflite-runtime")
    tf = runtime_tf(name, version)
    what = f"{name} {version}" + (f" (TF Lite {tf})" if name != "tflite-runtime" and tf else "")
    newest = f"install ai-edge-litert >= {litert_for(None)} on the device"
    if n["beyond_table"]:
        ops = ", ".join(n["beyond_table"])
        if tf is None:
            return (None, f"{ops} is newer than LiteRT's op table (TF Lite {NEWEST_TF}), so edgekit cannot "
                    f"tell whether {what} has it", "")
        return False, f"{ops} is newer than TF Lite {NEWEST_TF}; the device has {what}", newest
    if n["custom_ops"]:
        return (None, f"custom ops {', '.join(n['custom_ops'])} need the runtime to register them; "
                "edgekit cannot read which it has", "")
    need = n["required"]
    if tf is not None and need and vtuple(need) > vtuple(tf):
        fix = f"install ai-edge-litert >= {litert_for(need)} on the device"
        if vtuple(need) <= vtuple(TFLITE_RUNTIME_LAST):
            fix += f" (or tflite-runtime >= {need})"
        return False, f"{n['required_by']} needs TF Lite >= {need}; the device has {what}", fix
    return True, (f"needs TF Lite >= {need}; {what} has it" if need else f"{what} runs every op in it"), ""
