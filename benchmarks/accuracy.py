"""Reference accuracy: train each seed architecture, export int8 to every format, evaluate.

    .venv/bin/python benchmarks/accuracy.py [lenet5 lstm resnet50 googlenet vgg16]

For each (model, dataset) in REFERENCES this runs `edgekit train`, then `edgekit export CKPT
--int8 --eval DATASET` through the library, and records fp32 top-1 and per-format int8 top-1 and
drop in benchmarks/results/accuracy.md (table) and accuracy.jsonl (every number, with versions).
Goals (issue 3): int8 within 0.5 points of fp32 (1 point for the reduced-width ImageNet models).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# model -> (dataset, model options for the reduced variants, goal in points)
REFERENCES = {
    "lenet5": ("digits", {}, 0.5),
    "lstm": ("reber", {}, 0.5),
    "resnet50": ("shapes", {"width": 0.25, "input_size": 64}, 1.0),
    "googlenet": ("shapes", {"width": 0.25, "input_size": 64}, 1.0),
    "vgg16": ("shapes", {"width": 0.125, "input_size": 64}, 1.0),
}


def run(model: str) -> dict:
    from edgekit.export.plan import ExportPlan, run_export
    from edgekit.measure.evaluate import evaluate_run
    from edgekit.train.trainer import run_training

    dataset, options, goal = REFERENCES[model]
    work = Path(tempfile.mkdtemp(prefix=f"edgekit-acc-{model}-"))
    start = time.perf_counter()
    ckpt, record = run_training(model, dataset, out=work / "ckpt.pt", options=options, progress=False)
    train_s = time.perf_counter() - start
    outcome = run_export(ExportPlan(model=str(ckpt), int8=True, calib=None, calib_size=64,
                                    out=work / "run"), report=lambda line: print(line))
    result = evaluate_run(outcome.run_dir, dataset, report=print)
    rows = {(r["format"], r["precision"]): r for r in result["results"]}
    key = result["metric"]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": model, "dataset": dataset, "options": record["options"], "metric": key,
        "train_seconds": round(train_s, 1), "epochs": record["metrics"]["epochs_run"],
        "samples": result["samples"], "goal_pp": goal,
        "fp32": rows[("pytorch", "fp32")][key],
        "int8": {f: rows[(f, "int8")][key] for f in ("onnx", "tflite", "openvino") if (f, "int8") in rows},
        "drop_pp": {f: rows[(f, "int8")]["drop_pp"] for f in ("onnx", "tflite", "openvino")
                    if (f, "int8") in rows},
        "schemes": {a["format"]: a["scheme"].get("type") for a in outcome.manifest["artefacts"]
                    if a["precision"] == "int8" and a["status"] == "ok"},
        "tools": outcome.manifest["tools"],
    }


def write_table(rows: list[dict]) -> None:
    latest = {}
    for r in rows:
        latest[r["model"]] = r
    lines = [
        "# Reference accuracy: fp32 vs int8 per format (trained here, evaluated on the test split)",
        "",
        "Made by `benchmarks/accuracy.py`. Drop = fp32 minus int8, in percentage points (positive = lost).",
        "",
        "| date | model | dataset | options | metric | fp32 | ONNX int8 (drop) | TFLite int8 (drop) "
        "| OpenVINO int8 (drop) | goal | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in latest.values():
        cells = []
        for f in ("onnx", "tflite", "openvino"):
            if f in r["int8"]:
                cells.append(f"{100 * r['int8'][f]:.2f}% ({r['drop_pp'][f]:+.2f})")
            else:
                cells.append("failed")
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        lines.append(f"| {r['date']} | {r['model']} | {r['dataset']} | {opts} | {r['metric']} | "
                     f"{100 * r['fp32']:.2f}% | {' | '.join(cells)} | {r['goal_pp']} pp "
                     f"| {r['train_seconds']} |")
    (RESULTS / "accuracy.md").write_text("\n".join(lines) + "\n")


def main(models: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "accuracy.jsonl"
    for model in models:
        row = run(model)
        print(json.dumps({k: row[k] for k in ("model", "fp32", "int8", "drop_pp")}))
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
    write_table([json.loads(line) for line in log.read_text().splitlines() if line.strip()])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(REFERENCES)))
