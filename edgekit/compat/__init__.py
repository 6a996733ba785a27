"""Will it run there? Each artefact's needs against the runtimes a device has, before copying anything.

The device is asked once (``Device.probe``: ``edgekit/compat/probe.py`` run where the artefacts would
run, over SSH one ``ssh`` call) which Python, numpy and runtimes it has. The runtime that would run
a format is the first installed one in the target's ``runtimes`` order, as the device runner picks
it. Each format's check is an optional module ``edgekit/compat/<format>.py`` with
``needs(path, tools) -> dict`` (read from the file; ``tools``: the run's tool versions) and
``verdict(needs, runtime) -> (ok, why, fix)`` (``ok`` None: cannot tell); a format without one is
reported as "not checked". ``check`` is the command's work and stores its record in the run's
manifest under ``check[<target>]``; ``preflight`` is the first step of ``bench`` on another machine.

On this machine reading the file is not the last word: each artefact the checks let through is
then loaded and run once by bench's own runner, in its own process, exactly as ``bench`` will
(``load_here``), so ``check`` cannot say "runs" for a file ``bench`` then fails to load (a
third-party file with an op the runtime lacks, a corrupt file). Remote targets keep the probe
alone (nothing is copied).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgekit.compat import device as device_side
from edgekit.compat.device import (
    VERDICTS,
    _row,
    check_item,
    checked_formats,
    module,
    preflight,
    probe,
    runtime_for,
    runtimes_line,
)

__all__ = ["VERDICTS", "check", "check_item", "checked_formats", "module", "preflight", "probe",
           "runtime_for", "runtimes_line"]


def check(path: Path, target, device, host: str | None = None, store: bool = True,
          report: Callable[[str], None] = print, accept_changed: bool = False) -> dict:
    """Check every artefact of a run directory (or one model file) against ``device``; nothing is
    copied (on this machine each is loaded and run once: ``load_here``). Returns the record; for a
    run directory it is also stored in the manifest. An artefact missing, or changed since export
    (unless ``accept_changed``), will not run: it is not the file that was exported."""
    from edgekit.bench.core import check_files, collect, target_key
    from edgekit.runs import manifest as mf

    path = Path(path)
    manifest, items = collect(path)
    check_files(path, items, accept_changed=True)  # a changed file is this command's verdict, not an error
    if device.judged_here:  # a microcontroller: TFLite Micro (and Vela) judge the files here
        return _check_judged(path, target, device, manifest, items, store, report, accept_changed, host)
    report(f"asking {device.name} which runtimes it has ...")
    with device:
        # by its module: importing the probe script (edgekit.compat.probe) rebinds the package's ``probe``
        info = device_side.probe(device, {i.format for i in items if i.format in target.formats()})
        tools = (manifest or {}).get("tools") or {}
        rows = []
        for item in items:
            bad = file_verdict(item, path, accept_changed)
            if bad:
                rows.append(bad)
                continue
            row = check_item(item, target, info, tools) | (item.check.row(path) if item.check else {})
            if device.this_machine and row["kind"] not in LOAD_SKIPS:
                report(f"loading {item.format} {item.precision} in its runtime ...")
                runtime = runtime_for(item.format, target, info)[0]
                row = load_here(item, row, target, device, manifest, runtime and runtime["name"])
            rows.append(row)
    record = {"created": mf.utc_now(), "target": target.to_dict() | ({"host": host} if host else {}),
              "device": info, "results": rows}
    if manifest is not None and store:
        key = target_key(target, host)
        mf.update_or_note(path, lambda fresh: mf.keep_record(fresh, "check", record, key), record)
    return record


def _check_judged(path, target, device, manifest, items, store, report, accept_changed, host) -> dict:
    from edgekit.bench.core import target_key
    from edgekit.mcu.judge import judge_item
    from edgekit.runs import manifest as mf

    rows = [file_verdict(item, path, accept_changed) or judge_item(item, target, device, report)
            for item in items]
    record = {"created": mf.utc_now(), "target": target.to_dict() | ({"host": host} if host else {}),
              "device": device.probe(), "results": rows}
    if manifest is not None and store:
        key = target_key(target, host)
        mf.update_or_note(path, lambda fresh: mf.keep_record(fresh, "check", record, key), record)
    return record


def file_verdict(item, root: Path, accept_changed: bool) -> dict | None:
    """The row of an artefact whose file is missing, or changed since export (and not accepted):
    it will not run, as it is not what was exported; None for the others."""
    found = item.check
    if found is None or found.status == "ok" or (found.status == "changed" and accept_changed):
        return None
    row = {"format": item.format, "precision": item.precision, "path": item.files[0].name}
    if found.status == "missing":
        return row | _row(False, f"{found.path} is missing",
                          "export the run again", kind="missing")
    return row | _row(False, found.changed_line().split("; ")[0], "re-export or pass --accept-changed",
                      kind="changed")


LOAD_SKIPS = ("skipped", "no_runtime", "incompatible")  # rows whose verdict loading cannot change
LOAD_TIMEOUT_S = 300.0


def load_here(item, row: dict, target, device, manifest: dict | None, runtime: str | None = None) -> dict:
    """``row`` with the verdict of loading the artefact in its runtime and running it once, by
    bench's runner in a fresh process on this machine (``row["loaded"]``: what it took)."""
    from edgekit.bench.core import BenchSettings, spec_for
    from edgekit.layout import manifest_axes

    where = device.stage({item.key: item.files})[item.key]
    settings = BenchSettings(warmup=0, iters=1)
    spec = {**spec_for(item, where, target, settings), "min_iters": 1,
            "batch_axis": manifest_axes(manifest).input if manifest else 0}
    result = device.run(spec, LOAD_TIMEOUT_S)
    runtime = result.get("runtime") or runtime or item.format
    if result.get("status") != "ok":
        why = f"{runtime} cannot load and run it here: {one_line(result.get('error', 'no result'))}"
        return {**row, "ok": False, "verdict": VERDICTS[False], "why": why, "fix": "",
                "kind": "load_failed"}
    loaded = {k: result[k] for k in ("runtime", "runtime_version", "load_ms", "first_inference_ms")
              if k in result}
    ran = f"loaded in {runtime} and ran once here"
    why = f"{row['why']}; {ran}" if row["ok"] else ran
    return {**row, "ok": True, "verdict": VERDICTS[True], "why": why, "kind": "runs", "loaded": loaded}


def one_line(text: str, limit: int = 240) -> str:
    """A runtime's error as one line: its first message once (a runtime that reports a fault per
    tensor or node repeats the same message), shortened to ``limit`` characters."""
    import re

    parts = [p.strip() for p in re.split(r"\n| \| |(?<=\.) (?=ERROR:)", str(text)) if p.strip()]
    if not parts:
        return "no message"
    first = " ".join(parts[0].split())
    more = len(parts) - 1
    line = first if len(first) <= limit else first[: limit - 3] + "..."
    return line + (f" (and {more} more line{'s' if more > 1 else ''})" if more else "")
