"""Time and peak memory of `edgekit export MODEL --int8` (all three formats) on this machine.

Runs the real CLI in a child process and reads its peak resident memory from the kernel
(getrusage RUSAGE_CHILDREN, which covers the child and everything it waited for). Results are
appended to benchmarks/results/export.jsonl and the table in benchmarks/results/export.md.

    .venv/bin/python benchmarks/export_resnet50.py [resnet50 vgg16 ...]

Targets (issue 2, 2-core machine): resnet50 under 60 s and 4 GB peak; vgg16 under 6 GB.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGETS = {"resnet50": (60.0, 4.0), "vgg16": (None, 6.0)}


def measure(model: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="edgekit-bench-"))
    load = os.getloadavg()[0]  # other work on the machine slows the export; record it
    cmd = [sys.executable, "-m", "edgekit", "export", model, "--int8", "--out", str(work / "run")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    manifest = json.loads((work / "run" / "manifest.json").read_text()) if proc.returncode == 0 else {}
    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
    steps = {f"{a['format']}-{a['precision']}": a.get("seconds") for a in manifest.get("artefacts", [])}
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": model,
        "command": " ".join(["edgekit", *cmd[3:-2]]),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(peak_kb / 1024**2, 2),
        "step_seconds": steps,
        "cpu": manifest.get("environment", {}).get("processor", platform.processor()),
        "cores": os.cpu_count(),
        "load_before": round(load, 2),
        "tools": manifest.get("tools", {}),
    }


def write_table(rows: list[dict]) -> None:
    lines = [
        "# edgekit export --int8 (ONNX + TFLite + OpenVINO, fp32 + int8, each verified)",
        "",
        "Measured by `benchmarks/export_resnet50.py` (one child process per model; peak RSS from",
        "getrusage). Targets: resnet50 < 60 s and < 4 GB; vgg16 < 6 GB.",
        "",
        "Wall time depends on what else runs: `load` is the 1-minute load average when the export",
        "started (2 cores, so a load above 2 means the export shared them).",
        "",
        "| date | model | wall s | peak RSS GB | target | exit | slowest steps (s) | cores | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        t_wall, t_mem = TARGETS.get(r["model"], (None, None))
        target = " / ".join(x for x in (f"< {t_wall:.0f} s" if t_wall else "",
                                        f"< {t_mem:.0f} GB" if t_mem else "") if x)
        slow = sorted(r["step_seconds"].items(), key=lambda kv: -(kv[1] or 0))[:3]
        steps = ", ".join(f"{k} {v}" for k, v in slow)
        lines.append(f"| {r['date']} | {r['model']} | {r['wall_s']} | {r['peak_rss_gb']} | {target} "
                     f"| {r['exit_code']} | {steps} | {r['cores']} | {r.get('load_before', '?')} |")
    (RESULTS / "export.md").write_text("\n".join(lines) + "\n")


def main(models: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "export.jsonl"
    for model in models:
        # one model per interpreter so each getrusage peak belongs to one export
        if len(models) > 1:
            subprocess.run([sys.executable, __file__, model], check=False)
            continue
        row = measure(model)
        print(json.dumps({k: row[k] for k in ("model", "wall_s", "peak_rss_gb", "exit_code")}))
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    write_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["resnet50", "vgg16"]))
