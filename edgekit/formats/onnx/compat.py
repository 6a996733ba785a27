"""ONNX: the model's IR version and opsets against what the device's onnxruntime implements.

onnxruntime does not say which IR version and opsets it reads without loading a model, so its
version is looked up in ``ORT``: the version matrix of onnxruntime's docs/reference/compatibility.md
("ONNX Runtime compatibility", microsoft/onnxruntime, gh-pages; the rows up to 1.8 are also in
docs/Versioning.md). An onnxruntime newer than the last row reads at least what that row reads.
Domains other than ai.onnx and ai.onnx.ml (com.microsoft, ...) are onnxruntime's own and not checked;
ai.onnx.ml only when a node uses it.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.compat.versions import vstr, vtuple

# onnxruntime minor release -> (ai.onnx opset, ai.onnx.ml opset, IR version) it implements
ORT = {
    (1, 20): (21, 4, 10), (1, 19): (21, 4, 10), (1, 18): (21, 4, 10), (1, 17): (20, 4, 9),
    (1, 16): (19, 3, 9), (1, 15): (19, 3, 8), (1, 14): (18, 3, 8), (1, 13): (17, 3, 8),
    (1, 12): (17, 3, 8), (1, 11): (16, 2, 8), (1, 10): (15, 2, 8), (1, 9): (15, 2, 8),
    (1, 8): (14, 2, 7), (1, 7): (13, 2, 7), (1, 6): (13, 2, 7), (1, 5): (12, 2, 7), (1, 4): (12, 2, 7),
    (1, 3): (12, 2, 7), (1, 2): (11, 2, 6), (1, 1): (11, 2, 6), (1, 0): (11, 2, 6), (0, 5): (10, 1, 5),
    (0, 4): (10, 1, 5), (0, 3): (9, 1, 3), (0, 2): (8, 1, 3), (0, 1): (8, 1, 3),
}
LAST = max(ORT)
CHECKED = {"": "ai.onnx", "ai.onnx": "ai.onnx", "ai.onnx.ml": "ai.onnx.ml"}


def needs(path: Path, tools: dict | None = None) -> dict:
    """IR version and the opset of each standard domain (weights are not read)."""
    import onnx

    from edgekit.errors import DataError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise DataError(f"{Path(path).name} is not an ONNX model ({type(exc).__name__})") from None
    used = {CHECKED.get(d, d) for d in _domains(model.graph)} | {"ai.onnx"}
    for function in model.functions:
        used |= {CHECKED.get(n.domain, n.domain) for n in function.node}
    opsets = {}
    for entry in model.opset_import:  # the quantizer imports domains it never uses: only used ones count
        name = CHECKED.get(entry.domain)
        if name in used:
            opsets[name] = max(opsets.get(name, 0), int(entry.version))
    return {"ir_version": int(model.ir_version), "opsets": opsets}


def _domains(graph) -> set[str]:
    """The domains of every node, subgraphs (If, Loop, Scan bodies) included."""
    found = set()
    for node in graph.node:
        found.add(node.domain)
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if (attr.HasField("g") or attr.graphs) else []:
                found |= _domains(sub)
    return found


def summary(n: dict) -> str:
    return f"IR {n['ir_version']}, opset {n['opsets'].get('ai.onnx', '-')}"


def _limits(version: str) -> tuple[int, int, int] | None:
    return ORT.get(vtuple(version)[:2])


def _first_release(n: dict) -> str | None:
    """The first onnxruntime (in the table) that reads everything ``n`` needs."""
    for release in sorted(ORT):
        if not _short(n, ORT[release]):
            return vstr(release)
    return None


def _short(n: dict, limits: tuple[int, int, int]) -> list[str]:
    """What ``n`` needs beyond ``limits``, in words."""
    opset, ml, ir = limits
    out = []
    if n["ir_version"] > ir:
        out.append(f"IR version {n['ir_version']} (reads up to {ir})")
    if n["opsets"].get("ai.onnx", 0) > opset:
        out.append(f"opset {n['opsets']['ai.onnx']} (implements up to {opset})")
    if n["opsets"].get("ai.onnx.ml", 0) > ml:
        out.append(f"ai.onnx.ml opset {n['opsets']['ai.onnx.ml']} (implements up to {ml})")
    return out


def verdict(n: dict, runtime: dict) -> tuple[bool | None, str, str]:
    version = runtime["version"]
    v = vtuple(version)[:2]
    newer = v > LAST
    limits = ORT[LAST] if newer else _limits(version)
    if limits is None:
        return None, f"onnxruntime {version} is not in edgekit's version table", ""
    short = _short(n, limits)
    if not short:
        return True, f"onnxruntime {version} reads IR {limits[2]}, opset {limits[0]}" + (
            " or newer" if newer else ""), ""
    if newer:
        return (None, f"it needs more than onnxruntime {vstr(LAST)}, the last release in edgekit's table, "
                f"reads ({'; '.join(short)}); edgekit cannot tell whether {version} does", "")
    first = _first_release(n)
    fix = (f"upgrade onnxruntime on the device to >= {first}" if first else
           "upgrade onnxruntime on the device to its newest release")
    return False, f"onnxruntime {version} cannot load it: {'; '.join(short)}", fix
