"""``check`` on a microcontroller target: does each .tflite artefact run in TensorFlow Lite Micro,
and fit the part's RAM (the tensor arena TFLM measured) and flash (the model's bytes)? On an
Ethos-U target Vela compiles it too: its SRAM and the compiled file's bytes are then the needs,
and the operators Vela leaves to the CPU are named. Each row says "fits" or "does not fit: needs
1.9 MB RAM, has 256 KB" (``check`` exits 3 on the second).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from edgekit.devices.mcu import size_text

FIT = {True: "fits", False: "does not fit"}


def budget_line(ram: int, flash: int, device) -> dict:
    """Needs against the part's budgets: {"fits", "line", "ram_bytes", ...}."""
    over = []
    if ram > device.ram_bytes:
        over.append(f"needs {size_text(ram)} RAM, has {size_text(device.ram_bytes)}")
    if flash > device.flash_bytes:
        over.append(f"needs {size_text(flash)} flash, has {size_text(device.flash_bytes)}")
    fits = not over
    line = ("fits: " + f"{size_text(ram)} of {size_text(device.ram_bytes)} RAM, "
            f"{size_text(flash)} of {size_text(device.flash_bytes)} flash") if fits else \
        "does not fit: " + "; ".join(over)
    return {"fits": fits, "line": line, "ram_bytes": ram, "flash_bytes": flash,
            "ram_budget": device.ram_bytes, "flash_budget": device.flash_bytes}


def judge_item(item, target, device, report: Callable[[str], None]) -> dict:
    """One artefact's check row on a microcontroller target."""
    from edgekit.compat.device import _row
    from edgekit.mcu import tflm

    row = {"format": item.format, "precision": item.precision, "path": item.files[0].name}
    if item.format not in target.formats():
        return row | _row(None, f"target {target.name} runs TensorFlow Lite Micro: .tflite files only", "",
                          kind="skipped")
    report(f"loading {item.format} {item.precision} in TensorFlow Lite Micro ...")
    m = tflm.measure(item.files[0])
    row["runtime"] = f"tflite-micro {m.get('tflm', '')}".strip()
    row["tflm"] = m
    if m.get("missing_ops"):
        return row | _row(False, f"TensorFlow Lite Micro lacks {', '.join(m['missing_ops'])}",
                          "replace those layers, or add their kernels to your TFLM build",
                          kind="incompatible")
    if not m.get("ran"):
        return row | _row(False, f"TensorFlow Lite Micro cannot run it: {m.get('error') or 'no reason'}",
                          f"export with --target {target.name} (full-integer int8)", kind="incompatible")
    if item.precision != "fp32":  # an int8 file TFLM runs but reads wrong is no better than one it cannot
        from edgekit.formats.tflite.micro_int8 import full_integer_problems

        problems = full_integer_problems(item.files[0])
        if problems:
            return row | _row(False, f"not full-integer int8 as TensorFlow Lite Micro runs it: {problems[0]}",
                              f"export with --target {target.name}", kind="incompatible")
    ram, flash = m["arena_bytes"], m["flash_bytes"]
    row["summary"] = f"arena {size_text(ram)}, flash {size_text(flash)}, {len(m['ops'])} op kinds"
    notes = []
    if device.vela:
        row, sram, flash, notes = _with_vela(row, item, device, report)
        if row.get("ok") is False:
            return row
        ram = max(ram, sram)  # the NPU's SRAM, or TFLM's arena for the whole graph where larger
    fit = budget_line(ram, flash, device)
    row["fit"] = fit
    why = fit["line"] + (" (tensor arena measured by TFLM on this 64-bit host)" if not device.vela else
                         " (Vela's ESTIMATE)") + "".join(f"; {n}" for n in notes)
    if item.precision == "fp32":
        why += "; float kernels: slow on a Cortex-M, export with --target for int8"
    fix = "" if fit["fits"] else ("prune it (export --prune 0.5), pick a smaller model, or a part with more "
                                  "memory")
    out = row | _row(fit["fits"], why, fix, kind="fits" if fit["fits"] else "does_not_fit")
    return out | {"verdict": FIT[fit["fits"]]}


def _with_vela(row: dict, item, device, report) -> tuple[dict, int, int, list[str]]:
    """The row with Vela's compile of the file: (row, SRAM needed, flash needed, notes)."""
    from edgekit.compat.device import _row
    from edgekit.errors import DataError
    from edgekit.mcu.vela import compile_estimate

    report(f"compiling {item.format} {item.precision} with Vela for {device.values.get('npu')} ...")
    with tempfile.TemporaryDirectory(prefix="edgekit-vela-") as tmp:
        try:
            est = compile_estimate(item.files[0], device.vela_config(), Path(tmp))
        except DataError as exc:
            return row | _row(False, f"Vela cannot compile it: {exc}", "", kind="incompatible"), 0, 0, []
    row["vela"] = {k: v for k, v in est.items() if k not in ("layers", "compiled")}
    ops = est["ops"]
    notes = [f"{ops['npu']} of {ops['total']} ops on the NPU"]
    if est.get("cpu_ops"):
        names = ", ".join(dict.fromkeys(o["op"] for o in est["cpu_ops"]))
        notes.append(f"on the CPU (TFLite Micro): {names}")
    return row, int(est.get("sram_bytes") or 0), int(est.get("compiled_bytes") or 0), notes
