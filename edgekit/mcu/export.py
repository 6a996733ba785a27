"""``export --target`` for a microcontroller: which formats and int8 scheme it takes, and the files
its firmware build takes.

A microcontroller runs TensorFlow Lite Micro, which has no float-activation ("dynamic-range") int8
kernels: its int8 must be full-integer, every op int8 (int16 where TFLM's kernels need it) with
int8 inputs and outputs. So an export for such a target makes the TFLite artefacts (the others only
when ``--to`` names them), turns int8 on, and gives the TFLite format a job that asks for
full-integer int8 with the reason, which its scheme records. After the artefacts, ``firmware/``
gets the model as an aligned C array (``model_data.h/.cc``), the op resolver's lines and the tensor
arena TFLM measured, and for an Ethos-U target the Vela-compiled ``.tflite`` and its C array; the
manifest's ``target`` record names each file with its sha256.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from edgekit.errors import UsageError

FIRMWARE_DIR = "firmware"


def plan_for_target(plan, report: Callable[[str], None]):
    """(the plan for ``plan.target``, the target when it is a microcontroller, else None)."""
    from edgekit.devices import connection
    from edgekit.targets import get_target

    target = get_target(plan.target, plan.targets_dir)
    kind = connection(target.connect)
    if not kind.judged_here:
        return plan, None
    if kind.vela:  # settings Vela cannot take (a system config its .ini lacks): one line now, not later
        from edgekit.mcu.vela import system

        system(kind.from_values(target, target.connection).vela_config())
    formats = tuple(plan.formats)
    if not plan.formats_given:
        formats = ("tflite",)
        report(f"note: target {target.name} runs TensorFlow Lite Micro: exporting tflite only")
    elif "tflite" not in formats:
        raise UsageError(f"--to {','.join(formats)}: target {target.name} runs TensorFlow Lite Micro, which "
                         "takes .tflite files only", hint="add tflite to --to, or leave --to out")
    else:
        others = [f for f in formats if f != "tflite"]
        if others:
            report(f"note: {', '.join(others)} will not run on {target.name} (TensorFlow Lite Micro runs "
                   ".tflite only); exported for other targets")
    if not plan.int8:
        report(f"note: int8 on: target {target.name} takes full-integer int8 (TensorFlow Lite Micro)")
    if plan.dynamic_batch or plan.dynamic_axis:
        raise UsageError(f"--dynamic-batch/--dynamic-axis: target {target.name} runs TensorFlow Lite Micro, "
                         "whose tensors have fixed sizes", hint="leave them out for a microcontroller")
    return dataclasses.replace(plan, formats=formats, int8=True), target


def why_full_integer(target) -> str:
    cpu = target.connection.get("cpu") or "microcontroller"
    return (f"target {target.name} ({cpu}) runs TensorFlow Lite Micro, which has no float-activation or "
            "dynamic-range int8 kernels: every op int8 (int16 where its kernels need it), int8 inputs "
            "and outputs")


def job_for_target(name: str, job, target):
    """The format's job for a microcontroller target: TFLite's asks for full-integer int8."""
    return dataclasses.replace(job, full_integer=why_full_integer(target)) if name == "tflite" else job


def write_firmware_files(target, stage: Path, manifest: dict, report: Callable[[str], None]) -> dict:
    """Write ``firmware/`` for the run's TFLite int8 artefact (in the staging folder ``stage``);
    return the manifest's ``target`` record: the profile, the scheme's reason and the files."""
    from edgekit.devices import connection

    record = {**target.to_dict(), "int8": "full-integer", "why": why_full_integer(target)}
    arts = manifest["artefacts"]
    art = next((a for a in arts if (a["format"], a["precision"]) == ("tflite", "int8")), None)
    if art is None or art.get("status") != "ok":
        why = "the TFLite int8 artefact " + (art.get("status", "failed") if art else "was not made")
        report(f"FAILED firmware files for {target.name}: {why}")
        return record | {"firmware": None, "firmware_error": why}
    model = stage / art["path"]
    try:
        firmware = _firmware(model, target, connection(target.connect), stage, report)
    except Exception as exc:  # noqa: BLE001 - the artefacts stand; the firmware files fail in one line
        from edgekit.errors import EdgekitError

        if not isinstance(exc, (EdgekitError, OSError)):
            raise
        import shutil

        shutil.rmtree(stage / FIRMWARE_DIR, ignore_errors=True)  # ours, in the staging: none half-written
        report(f"FAILED firmware files for {target.name}: {exc}")
        return record | {"firmware": None, "firmware_error": str(exc)}
    return record | {"firmware": firmware}


def _firmware(model: Path, target, kind, stage: Path, report) -> dict:
    from edgekit.mcu import firmware, tflm
    from edgekit.mcu.judge import budget_line
    from edgekit.runs import manifest as mf

    out = stage / FIRMWARE_DIR
    out.mkdir(exist_ok=True)
    report(f"measuring {model.name} in TensorFlow Lite Micro for {target.name} ...")
    measured = tflm.measure(model)
    if not measured.get("ran"):
        raise UsageError(f"TensorFlow Lite Micro cannot run {model.name}: {measured.get('error')}")
    found = {"source": str(model.relative_to(stage)), "tflm": measured}
    firm_model, arena, ops = model, measured["arena_bytes"], list(measured["ops"])
    device = kind.from_values(target, target.connection)
    if kind.vela:
        from edgekit.mcu.vela import compile_estimate

        report(f"compiling {model.name} with Vela for {target.connection.get('npu')} ...")
        estimate = compile_estimate(model, device.vela_config(), out / "vela")
        compiled = out / "model_vela.tflite"
        Path(estimate["compiled"]).replace(compiled)
        estimate["compiled"] = str(compiled.relative_to(stage))
        firm_model, ops = compiled, tflm.model_ops(compiled.read_bytes())
        arena = max(arena, int(estimate.get("sram_bytes") or 0))
        found["vela"] = {k: v for k, v in estimate.items() if k != "layers"}
    written = firmware.write_firmware(firm_model, out, arena_bytes=arena, ops=ops,
                                      extra={"target": target.name, "source": firm_model.name})
    found.update(arena_bytes=arena, flash_bytes=firm_model.stat().st_size, ops=ops,
                 resolver=written.get("resolver") or [],
                 files=[mf.file_entry(p, stage) for p in sorted(out.rglob("*")) if p.is_file()])
    found["fits"] = budget_line(arena, firm_model.stat().st_size, device)
    report(f"firmware files for {target.name} in {FIRMWARE_DIR}/: arena {arena} bytes, "
           f"{len(ops)} ops; {found['fits']['line']}")
    return found


