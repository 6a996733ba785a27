"""Is edgekit's latency faithful? Its p50 for an OpenVINO IR against OpenVINO's own benchmark_app.

    .venv/bin/python benchmarks/openvino_vs_benchmark_app.py [RUN_DIR] [--models resnet50,googlenet]

Without RUN_DIR, exports each model (full size, random weights: latency does not depend on the
weights) to OpenVINO fp32 and int8. For every IR and thread count, `edgekit bench` (its runner
in its own process) and `benchmark_app -api sync -hint none -nstreams 1 -nthreads N -b 1` each
time the same number of inferences, alternating, REPEATS times; the medians of their medians
are compared. Goal (issue 4): edgekit within 5% of benchmark_app. Results:
benchmarks/results/benchmark_app.md and benchmark_app.jsonl.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPEATS = 3
ITERS = {"resnet50": 200, "googlenet": 300, "lenet5": 2000}
THREADS = (1, 2)
GOAL = 0.05


def benchmark_app_median_ms(xml: Path, threads: int, iters: int) -> tuple[float, str]:
    app = Path(sys.executable).with_name("benchmark_app")
    out = subprocess.run(
        [str(app), "-m", str(xml), "-d", "CPU", "-api", "sync", "-hint", "none", "-nstreams", "1",
         "-nthreads", str(threads), "-b", "1", "-niter", str(iters)],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"Median:\s+([\d.]+)\s+(ms|us)", out)
    precision = re.search(r"INFERENCE_PRECISION_HINT: <Type: '(\w+)'>", out)
    value = float(m[1]) / (1000 if m[2] == "us" else 1)
    return value, precision[1] if precision else "?"


def edgekit_p50_ms(run_dir: Path, precision: str, threads: int, iters: int) -> tuple[float, str]:
    from edgekit.bench.core import BenchSettings, bench
    from edgekit.targets import get_target

    record = bench(run_dir, get_target("local-cpu"),
                   BenchSettings(threads=threads, iters=iters, warmup=20, torch_baseline=False),
                   report=lambda line: None)
    row = next(r for r in record["results"] if r["format"] == "openvino" and r["precision"] == precision)
    return row["p50_ms"], row.get("inference_precision") or "?"


def export(model: str, work: Path) -> Path:
    from edgekit.export.plan import ExportPlan, run_export

    out = work / model
    run_export(ExportPlan(model=model, formats=("openvino",), int8=True, calib_size=32, out=out),
               report=lambda line: None)
    return out


def main(argv: list[str]) -> None:
    models = ["resnet50", "googlenet"]
    runs = [Path(a) for a in argv if not a.startswith("--")]
    for a in argv:
        if a.startswith("--models="):
            models = a.split("=", 1)[1].split(",")
    work = Path(tempfile.mkdtemp(prefix="edgekit-ovbench-"))
    pairs = [(json.loads((r / "manifest.json").read_text())["model"]["name"], r) for r in runs] or [
        (m, export(m, work)) for m in models
    ]
    rows = []
    for model, run_dir in pairs:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        for art in manifest["artefacts"]:
            if art["format"] != "openvino" or art["status"] != "ok":
                continue
            for threads in THREADS:
                iters = ITERS.get(model, 200)
                ours, theirs = [], []
                for _ in range(REPEATS):
                    p50, ours_precision = edgekit_p50_ms(run_dir, art["precision"], threads, iters)
                    ours.append(p50)
                    median, app_precision = benchmark_app_median_ms(run_dir / art["path"], threads, iters)
                    theirs.append(median)
                e, b = statistics.median(ours), statistics.median(theirs)
                row = {"model": model, "precision": art["precision"], "threads": threads, "iters": iters,
                       "edgekit_p50_ms": e, "benchmark_app_median_ms": b, "difference": e / b - 1,
                       "within_goal": abs(e / b - 1) <= GOAL, "edgekit_runs": ours,
                       "benchmark_app_runs": theirs,
                       "inference_precision": {"edgekit": ours_precision, "benchmark_app": app_precision}}
                print(json.dumps(row))
                rows.append(row)
    write(rows)


def write(rows: list[dict]) -> None:
    from edgekit.runs.manifest import environment, tool_versions

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = environment()
    with open(RESULTS / "benchmark_app.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps({"date": stamp, **row, "environment": env,
                                "openvino": tool_versions().get("openvino")}) + "\n")
    lines = [
        "# edgekit bench against OpenVINO's benchmark_app",
        "",
        f"Measured {stamp} on {env.get('processor')} ({env.get('cpu_count')} cores), OpenVINO "
        f"{tool_versions().get('openvino')}. Same IR, device CPU, batch 1, one stream, synchronous "
        f"inference, the same thread count and number of timed inferences; {REPEATS} alternating "
        "repeats, the median of each tool's medians. Goal: edgekit within 5% of benchmark_app.",
        "",
        "| model | precision | threads | timed runs | edgekit p50 ms | benchmark_app median ms "
        "| difference | within 5% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        precision = f"{r['precision']} ({r['inference_precision']['edgekit']})"
        lines.append(f"| {r['model']} | {precision} | {r['threads']} "
                     f"| {r['iters']} | {r['edgekit_p50_ms']:.3f} | {r['benchmark_app_median_ms']:.3f} "
                     f"| {100 * r['difference']:+.1f}% | {'yes' if r['within_goal'] else 'NO'} |")
    lines += ["", "Regenerate with `.venv/bin/python benchmarks/openvino_vs_benchmark_app.py`; every "
              "single run is in benchmark_app.jsonl.", ""]
    (RESULTS / "benchmark_app.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
