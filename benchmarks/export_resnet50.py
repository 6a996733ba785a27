"""Time and peak memory of `edgekit export MODEL --int8` (all four default formats: ONNX, OpenVINO,
ExecuTorch, TFLite, fp32 + int8, each verified) on this machine.

Runs the real CLI in a child process. The export runs formats side by side in a worker process
(edgekit/export/jobs.py), so the peak that matters is the SUM of the resident memory of the CLI
and all its descendants at the same moment: psutil samples it every 0.1 s (`peak_total_rss_gb`).
getrusage RUSAGE_CHILDREN (`peak_rss_gb`) gives only the largest single process. Each format's
seconds (export + verification, from the manifest) are recorded as `step_seconds`. Results are
appended to benchmarks/results/export.jsonl and the table in benchmarks/results/export.md. Run it
on a quiet machine (here: under `flock /tmp/edgekit-quiet.lock`).

    .venv/bin/python benchmarks/export_resnet50.py [resnet50 vgg16 ...]

Targets (issues 2 and 13, 2-core machine): resnet50 under 60 s and 4 GB; vgg16 under 120 s and 6 GB.
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
TARGETS = {"resnet50": (60.0, 4.0), "vgg16": (120.0, 6.0)}


def measure(model: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="edgekit-bench-"))
    load = os.getloadavg()[0]  # other work on the machine slows the export; record it
    cmd = [sys.executable, "-m", "edgekit", "export", model, "--int8", "--out", str(work / "run")]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        total_kb = _sample_tree_rss(child)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(cmd, child.returncode, out.read(), err.read())
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
        "peak_total_rss_gb": round(total_kb / 1024**2, 2),
        "export_jobs": os.environ.get("EDGEKIT_EXPORT_JOBS", "auto"),
        "step_seconds": steps,
        "cpu": manifest.get("environment", {}).get("processor", platform.processor()),
        "cores": os.cpu_count(),
        "load_before": round(load, 2),
        "tools": manifest.get("tools", {}),
    }


def _sample_tree_rss(child: subprocess.Popen, every: float = 0.1) -> int:
    """Wait for ``child``; the largest sum of resident memory (KiB) of it and its descendants."""
    import psutil

    top = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        total = 0
        try:
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, total // 1024)
        time.sleep(every)
    child.wait()
    return peak


def write_table(rows: list[dict]) -> None:
    lines = [
        "# edgekit export --int8 (every default format, fp32 + int8, each verified)",
        "",
        "Measured by `benchmarks/export_resnet50.py` (one child process per model). Until 2026-11-27:",
        "ONNX + TFLite + OpenVINO; since ExecuTorch: four formats. `peak RSS GB` is the largest",
        "single process (getrusage); `total GB` the largest sum over the export and its worker",
        "processes at one moment (psutil, every 0.1 s; recorded since issue 13). Targets: resnet50",
        "< 60 s and < 4 GB; vgg16 < 120 s and < 6 GB. Per-format seconds (export + verification)",
        "are in export.jsonl (`step_seconds`); the table shows the slowest three.",
        "",
        "Wall time depends on what else runs: `load` is the 1-minute load average when the export",
        "started (2 cores, so a load above 2 means the export shared them).",
        "",
        "| date | model | wall s | peak RSS GB | total GB | target | exit | slowest steps (s) | cores | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        t_wall, t_mem = TARGETS.get(r["model"], (None, None))
        target = " / ".join(x for x in (f"< {t_wall:.0f} s" if t_wall else "",
                                        f"< {t_mem:.0f} GB" if t_mem else "") if x)
        slow = sorted(r["step_seconds"].items(), key=lambda kv: -(kv[1] or 0))[:3]
        steps = ", ".join(f"{k} {v}" for k, v in slow)
        lines.append(f"| {r['date']} | {r['model']} | {r['wall_s']} | {r['peak_rss_gb']} "
                     f"| {r.get('peak_total_rss_gb', '-')} | {target} "
                     f"| {r['exit_code']} | {steps} | {r['cores']} | {r.get('load_before', '?')} |")
    lines += _breakdown([r for r in rows if "peak_total_rss_gb" in r])
    (RESULTS / "export.md").write_text("\n".join(lines) + "\n")


def _breakdown(rows: list[dict]) -> list[str]:
    """Every format's seconds (export + verification) in the runs since issue 13; `jobs` 1 is one
    format after another, `auto` two processes (this one and a worker: ExecuTorch, OpenVINO)."""
    if not rows:
        return []
    steps = list(dict.fromkeys(k for r in rows for k in r["step_seconds"]))
    lines = ["", "## Seconds per artefact (export + verification, from the manifest)", "",
             "| date | model | jobs | wall s | total GB | " + " | ".join(steps) + " |",
             "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in steps) + " |"]
    for r in rows:
        cells = " | ".join(str(r["step_seconds"].get(k, "-")) for k in steps)
        lines.append(f"| {r['date']} | {r['model']} | {r.get('export_jobs', 'auto')} | {r['wall_s']} "
                     f"| {r['peak_total_rss_gb']} | {cells} |")
    return lines


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
