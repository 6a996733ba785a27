"""The device side of ``edgekit.compat``: the probe's answer, the runtime each format would get
there, and each artefact's verdict (``check_item``); ``preflight`` is the first step of ``bench`` on
another machine. Imports nothing of ``bench`` (which imports this)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

VERDICTS = {True: "runs", False: "will not run", None: "not checked"}


def module(fmt: str) -> ModuleType | None:
    """The format's compatibility module (its ``compat``), or None when it has none."""
    from edgekit.formats import format_class

    return format_class(fmt).module("compat")


def checked_formats() -> tuple[str, ...]:
    from edgekit.formats import FORMATS

    return tuple(n for n, cls in FORMATS.items() if cls.compat)


def probe(device, formats) -> dict:
    """The device's runtimes, those the formats declare (``Format.probe``), with its registered
    ExecuTorch kernels only when a .pte is to be checked."""
    import json

    from edgekit.formats import FORMATS

    asked = {name: [module, list(dists)]
             for _, cls in FORMATS.items() for name, (module, dists) in cls.probe.items()}
    return device.probe(["--runtimes", json.dumps(asked, separators=(",", ":"))]
                        + (["--executorch-ops"] if "executorch" in set(formats) else []))


def runtime_for(fmt: str, target, info: dict) -> tuple[dict | None, list[str]]:
    """(the runtime that would run ``fmt`` there, with its probe facts and the device's numpy; the
    runtimes tried, in order)."""
    from edgekit.formats import format_class

    order = list(target.runtimes.get(fmt) or format_class(fmt).runtimes)
    for name in order:
        found = info.get("runtimes", {}).get(name)
        if found is not None:
            return {"name": name, **found, "numpy": info.get("numpy")}, order
    return None, order


def check_item(item, target, info: dict, tools: dict | None = None, bad: str | None = None) -> dict:
    """One artefact's row: verdict, why, fix, what it needs and the runtime that would run it.
    ``bad``: why its file cannot be trusted (``bench.core.check_files``), checked by the caller."""
    row = {"format": item.format, "precision": item.precision, "path": item.files[0].name}
    if item.format not in target.formats():
        return row | _row(None, f"target {target.name} runs no {item.format}", "", kind="skipped")
    mod = module(item.format)
    if mod is None:
        return row | _row(None, f"edgekit has no compatibility check for {item.format}", "", kind="unknown")
    if bad:
        return row | _row(None, bad, "", kind="bad_file")
    try:
        needs = mod.needs(item.files[0], tools or {})
    except Exception as exc:  # a file or a host package edgekit cannot read: say so, check the rest
        from edgekit.errors import EdgekitError

        if not isinstance(exc, EdgekitError):
            raise
        return row | _row(None, str(exc), "", kind="bad_file")
    row["needs"] = needs
    row["summary"] = mod.summary(needs)
    runtime, order = runtime_for(item.format, target, info)
    if runtime is None:
        return row | _row(False, f"no {item.format} runtime on the device (tried {', '.join(order)})",
                          f"pip install {order[0]} on the device", kind="no_runtime")
    row["runtime"] = f"{runtime['name']} {runtime['version']}"
    if info.get("numpy") is None:
        return row | _row(False, "numpy is not installed on the device (the runner needs it)",
                          "pip install numpy on the device", kind="no_runtime")
    ok, why, fix = mod.verdict(needs, runtime)
    return row | _row(ok, why, fix, kind="incompatible" if ok is False else VERDICTS[ok].replace(" ", "_"))


def _row(ok: bool | None, why: str, fix: str, kind: str) -> dict:
    return {"ok": ok, "verdict": VERDICTS[ok], "why": why, "fix": fix, "kind": kind}


def preflight(items: list, target, device, tools: dict | None,
              report: Callable[[str], None] = print) -> tuple[list, list[dict]]:
    """``bench``'s first step on another machine: (the items to copy and time, a failed result row for
    each artefact that will not run there). A missing runtime is left to the runner, which reports it."""
    if not items:
        return items, []
    report(f"checking what {device.name} can run ...")
    # Versions only: reading ExecuTorch's kernels imports torch there (seconds), and a kernel missing
    # at run time fails that one file anyway; `edgekit check` reads them.
    info = probe(device, ())
    keep, refused = [], []
    for item in items:
        row = check_item(item, target, info, tools)
        if row["kind"] == "incompatible":
            refused.append({"format": item.format, "precision": item.precision, "status": "failed",
                            "kind": "incompatible", "error": f"will not run on {device.name}: {row['why']}"
                            + (f"; {row['fix']}" if row["fix"] else "")})
        else:
            keep.append(item)
    return keep, refused


def runtimes_line(info: dict) -> str:
    """The device's Python, numpy and runtimes in one line."""
    found = ", ".join(f"{k} {v.get('version')}" for k, v in info.get("runtimes", {}).items()) or "none"
    return (f"Python {info.get('python')} ({info.get('machine')}), numpy {info.get('numpy') or 'missing'}; "
            f"runtimes: {found}")
