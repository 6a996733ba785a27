"""Will it run there? Each artefact's needs against the runtimes a device has, before copying anything.

The device is asked once (``Device.probe``: ``edgekit/compat/probe.py`` run where the artefacts would
run, over SSH one ``ssh`` call) which Python, numpy and runtimes it has. The runtime that would run
a format is the first installed one in the target's ``runtimes`` order, as the device runner picks
it. Each format's check is an optional module ``edgekit/compat/<format>.py`` with
``needs(path, tools) -> dict`` (read from the file; ``tools``: the run's tool versions) and
``verdict(needs, runtime) -> (ok, why, fix)`` (``ok`` None: cannot tell); a format without one is
reported as "not checked". ``check`` is the command's work and stores its record in the run's
manifest under ``check[<target>]``; ``preflight`` is the first step of ``bench`` on another machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgekit.compat.device import (
    VERDICTS,
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
          report: Callable[[str], None] = print) -> dict:
    """Check every artefact of a run directory (or one model file) against ``device``; nothing is
    copied. Returns the record; for a run directory it is also stored in the manifest."""
    from edgekit import manifest as mf
    from edgekit.bench.core import check_files, collect, target_key

    path = Path(path)
    manifest, items = collect(path)
    report(f"asking {device.name} which runtimes it has ...")
    with device:
        info = probe(device, {i.format for i in items if i.format in target.formats()})
    tools = (manifest or {}).get("tools") or {}
    rows = [check_item(item, target, info, tools, check_files(item)) for item in items]
    record = {"created": mf.utc_now(), "target": target.to_dict() | ({"host": host} if host else {}),
              "device": info, "results": rows}
    if manifest is not None and store:
        key = target_key(target, host)
        mf.update(path, lambda fresh: fresh.setdefault("check", {}).__setitem__(key, record))
    return record
