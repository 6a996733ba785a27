"""``bench`` on a microcontroller target. An Ethos-U target's figures are Vela's estimate: Vela
compiles each int8 .tflite for the NPU and its performance model gives the inference time, cycles,
SRAM and flash, the operators it maps to the NPU and those left to the CPU, and per-layer cycles
(kept in the manifest). Every row and the record carry ``estimated`` (tables, JSON and the report
say ESTIMATED), and the gate refuses latency rules on them unless told ``--allow-estimates``.
A plain Cortex-M target has no such model: bench refuses it in one line.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgekit.errors import UsageError

ESTIMATED = "ESTIMATED (Vela)"


def bench_estimates(path: Path, target, device, manifest: dict | None, items: list, settings: dict,
                    report: Callable[[str], None]) -> dict:
    """The bench record of ``target`` (an Ethos-U): one row per artefact, Vela's for the int8 .tflite."""
    from edgekit.mcu.vela import version
    from edgekit.runs import manifest as mf

    if not device.vela:
        raise UsageError(
            f"bench on {target.name}: edgekit has no timing model of a "
            f"{device.values.get('cpu') or 'Cortex-M'} "
            "(TensorFlow Lite Micro here runs at this machine's speed, not the device's)",
            hint=f"`edgekit check RUN --target {target.name}` gives its RAM and flash and `edgekit eval RUN "
                 f"--target {target.name}` its accuracy; time it on the board, or bench an ethos-u target "
                 "for Vela's estimate")
    started = time.perf_counter()
    results = [_row(item, path, target, device, report) for item in items]
    tool = f"ethos-u-vela {version()}"
    config = device.vela_config()
    return {
        "created": mf.utc_now(),
        "target": target.to_dict(),
        "settings": settings,
        "estimated": f"{tool}: {config.accelerator}, {config.system_config}, {config.memory_mode}",
        "environment": {"board": device.part(), "cores": 1, "os": "bare metal",
                        "python": "-"},
        "emulated": None,
        "host_environment": mf.environment(),
        "tools": {"edgekit": mf.tool_versions()["edgekit"], "ethos-u-vela": version()},
        "seconds": round(time.perf_counter() - started, 2),
        "results": results,
        "warnings": [],
    }


def _row(item, root: Path, target, device, report) -> dict:
    from edgekit.errors import DataError
    from edgekit.mcu.vela import compile_estimate, version
    from edgekit.runs import manifest as mf

    row = {"format": item.format, "precision": item.precision}
    file = Path(item.files[0])
    if item.check is not None and item.check.status == "missing":
        return row | item.check.row(root)
    row.update(path=str(file.relative_to(root)) if root.is_dir() else str(file), sha256=mf.sha256_file(file))
    if item.format not in target.formats():
        return row | {"status": "skipped", "error": f"target {target.name} runs .tflite files only"}
    if item.precision != "int8":
        return row | {"status": "skipped", "error": "Vela maps int8 and int16 operators to the NPU; a float "
                      "file runs wholly on the CPU, which Vela does not estimate"}
    report(f"estimating {item.format} {item.precision} with Vela for {device.values.get('npu')} ...")
    with tempfile.TemporaryDirectory(prefix="edgekit-vela-") as tmp:
        try:
            est = compile_estimate(file, device.vela_config(), Path(tmp))
        except DataError as exc:
            return row | {"status": "failed", "kind": "bad_model", "error": f"Vela cannot compile it: {exc}"}
    est.pop("compiled", None)
    ms = est["inference_ms"]
    ops = est["ops"]
    note = "" if not est.get("cpu_ops") else f"; {ops['cpu']} ops on the CPU are not in the estimate"
    return row | {
        "status": "ok", "estimated": ESTIMATED + note, "runtime": "vela", "runtime_version": version(),
        "device": f"{est['config']['accelerator']} {ESTIMATED}",
        "threads": None, "batch": 1, "p50_ms": ms, "p90_ms": ms, "p99_ms": ms, "mean_ms": ms, "cv": 0.0,
        "throughput_per_s": est.get("inferences_per_s"), "cycles": est.get("cycles"),
        "ram_bytes": est.get("sram_bytes"), "flash_bytes": est.get("flash_bytes"),
        "file_bytes": est.get("compiled_bytes"), "npu_ops": ops, "cpu_ops": est.get("cpu_ops", []),
        "estimate": est,
    }

