"""The report's microcontroller sections: the firmware files of ``export --target``, each ``check``
on a microcontroller (fits or not), and Vela's estimates (marked ESTIMATED)."""

from __future__ import annotations


def mcu_sections(manifest: dict) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
    from edgekit.devices.mcu import size_text

    out = []
    target = manifest.get("target") or {}
    firmware = target.get("firmware")
    if firmware:
        rows = [[f["path"], str(f["bytes"]), f["sha256"][:16]] for f in firmware["files"]]
        title = (f"Firmware for {target['name']}: tensor arena {size_text(firmware['arena_bytes'])}, "
                 f"model {size_text(firmware['flash_bytes'])}, ops {', '.join(firmware['ops'])}; "
                 f"{firmware['fits']['line']}")
        out.append((title, ["file", "bytes", "sha256"], rows, []))
    for key, record in (manifest.get("check") or {}).items():
        judged = [r for r in record.get("results", []) if r.get("fit") or r.get("tflm")]
        if judged:
            rows = [[f"{r['format']} {r['precision']}", r.get("verdict", ""), r.get("why", "")]
                    for r in judged]
            out.append((f"Will it fit {key}? (edgekit check)", ["artefact", "verdict", "why"], rows, []))
    for key, record in (manifest.get("bench") or {}).items():
        if not record.get("estimated"):
            continue
        rows = [[f"{r['format']} {r['precision']}", f"{r['p50_ms']:.3f}", str(r.get("cycles") or "-"),
                 size_text(r.get("ram_bytes") or 0), size_text(r.get("flash_bytes") or 0),
                 f"{r['npu_ops']['npu']}/{r['npu_ops']['total']}",
                 ", ".join(dict.fromkeys(o["op"] for o in r.get("cpu_ops", []))) or "-"]
                for r in record["results"] if r.get("status") == "ok"]
        out.append((f"ESTIMATED on {key} by {record['estimated']} (not a measurement)",
                    ["artefact", "ms (est.)", "cycles (est.)", "SRAM (est.)", "flash (est.)", "ops on NPU",
                     "on the CPU"], rows, []))
    return out
