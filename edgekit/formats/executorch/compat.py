"""ExecuTorch: what a ``.pte`` program calls (portable kernels, delegates) and which ExecuTorch wrote
it, against the device's runtime.

The program's kernel calls are read as ``edgekit.formats.executorch`` reads them for ``details``;
its delegates are the backend ids of its execution plan (``XnnpackBackend``). The device's
registered operators and backends come from its runtime (the probe's ``--executorch-ops``). A
program is only promised to load in the ExecuTorch release that wrote it or a newer one, and only
when the runtime reads its file identifier (``ET12``: the flatbuffer schema's version).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.compat.versions import vtuple


def needs(path: Path, tools: dict | None = None) -> dict:
    """Operators its kernel calls name, its delegates, its file identifier and who wrote it."""
    from edgekit.errors import DataError, require
    from edgekit.formats.executorch.share import _kernel_calls

    require("executorch.exir._serialize._program", "executorch", "executorch")
    data = Path(path).read_bytes()
    try:
        operators, _ = _kernel_calls(data)
        delegates = _delegates(data)
    except Exception as exc:
        raise DataError(f"{Path(path).name} is not an ExecuTorch program ({type(exc).__name__})") from None
    return {"operators": sorted(operators), "delegates": delegates,
            "program_identifier": data[4:8].decode(errors="replace"),
            "written_by": (tools or {}).get("executorch")}


def _delegates(data: bytes) -> list[str]:
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(data)
    program = getattr(pte, "program", pte)
    return sorted({d.id for plan in program.execution_plan for d in plan.delegates})


def summary(n: dict) -> str:
    parts = [", ".join(n["delegates"]) or "no delegate", f"{len(n['operators'])} portable ops"]
    if n.get("written_by"):
        parts.append(f"executorch >= {n['written_by']}")
    return "; ".join(parts)


def verdict(n: dict, runtime: dict) -> tuple[bool | None, str, str]:
    version = runtime["version"]
    writer = n.get("written_by")
    upgrade = f"install executorch >= {writer} on the device" if writer else (
        "install the ExecuTorch release that wrote it on the device")
    if writer and vtuple(version) < vtuple(writer):
        return False, f"written by executorch {writer}; the device has {version}", upgrade
    ident = runtime.get("program_identifier")
    if ident and ident != n["program_identifier"]:
        return (False, f"the program is format {n['program_identifier']}, executorch {version} reads "
                f"{ident}", upgrade)
    backends = runtime.get("backends")
    lacking = [d for d in n["delegates"] if backends is not None and d not in backends]
    if lacking:
        return (False, f"executorch {version} on the device has no {', '.join(lacking)} (it has "
                f"{', '.join(backends) or 'no backend'})", f"install an executorch build with {lacking[0]}")
    operators = runtime.get("operators")
    if operators is None:
        why = runtime.get("kernels_error") or "the probe did not read its kernels"
        return None, f"executorch {version}: cannot tell which kernels it registers ({why})", ""
    missing = [op for op in n["operators"] if op not in set(operators)]
    if missing:
        return (False, f"executorch {version} on the device registers no kernel for {', '.join(missing)}",
                "build the device's runtime with those kernels (the portable kernel library), or "
                "re-export so that the delegate takes those ops")
    return True, f"executorch {version} has every kernel and backend it calls", ""
