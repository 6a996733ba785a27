"""What structured pruning buys: MACs, parameters, int8 latency per format, and top-1.

    .venv/bin/python benchmarks/pruning.py speed [resnet50 googlenet vgg16 lenet5] [--ratio=0.3]
    .venv/bin/python benchmarks/pruning.py accuracy MODEL=CKPT ... [--ratio=0.3] [--finetune=8]

speed: each model at full size (random weights: latency does not depend on their values) is
exported int8 to all three formats unpruned and pruned (`--prune RATIO`, uniform structured),
and every artefact is timed on local-cpu (all cores, batch 1, each in its own process).
Goals (issue 5): resnet50 at 0.3 keeps at most 55% of the MACs, and its int8 artefacts run at
least 1.4x faster than the unpruned int8 ones on onnxruntime and OpenVINO.

accuracy: a trained checkpoint (from `edgekit train`, e.g. resnet50 and googlenet on shapes) is
exported int8 unpruned and pruned + fine-tuned, and both runs are evaluated on the test split.
Goal: pruned top-1 within 1 point of unpruned, fp32 and int8.

Results: benchmarks/results/pruning.md (tables) and pruning.jsonl (every number).
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FORMATS = ("onnx", "openvino", "tflite")


def _export(model: str, out: Path, ratio: float | None, finetune: int = 0, dataset: str | None = None,
            lr: float | None = None):
    from edgekit.export.plan import ExportPlan, run_export
    from edgekit.export.prune import PruneSettings

    prune = PruneSettings(ratio, finetune_epochs=finetune, dataset=dataset, finetune_lr=lr) if ratio else None
    return run_export(ExportPlan(model=model, int8=True, calib_size=64, out=out, prune=prune), report=print)


def speed(model: str, ratio: float, work: Path) -> dict:
    from edgekit.bench.core import BenchSettings, bench
    from edgekit.targets import get_target

    row = {"kind": "speed", "model": model, "ratio": ratio}
    for label, r in (("unpruned", None), ("pruned", ratio)):
        outcome = _export(model, work / f"{model}-{label}", r)
        record = bench(outcome.run_dir, get_target("local-cpu"), BenchSettings(seconds=3.0, torch_baseline=False),
                       report=lambda line: None)
        row[label] = {
            "params": outcome.manifest["model"]["parameters"], "macs": outcome.manifest["model"]["macs"],
            "p50_ms": {f"{x['format']}/{x['precision']}": x.get("p50_ms") for x in record["results"]},
            "bytes": {f"{a['format']}/{a['precision']}": a.get("bytes") for a in outcome.manifest["artefacts"]},
            "environment": record["environment"], "threads": record["settings"]["resolved_threads"],
        }
    row["speedup_int8"] = {f: row["unpruned"]["p50_ms"][f"{f}/int8"] / row["pruned"]["p50_ms"][f"{f}/int8"]
                           for f in FORMATS if row["pruned"]["p50_ms"].get(f"{f}/int8")}
    row["macs_fraction"] = row["pruned"]["macs"] / row["unpruned"]["macs"]
    return row


def accuracy(model_ckpt: str, ratio: float, finetune: int, work: Path, lr: float | None = None) -> dict:
    import torch

    from edgekit.measure.evaluate import evaluate_run

    model, ckpt = model_ckpt.split("=", 1)
    record = torch.load(ckpt, weights_only=True)["edgekit"]
    dataset = record["dataset"]
    row = {"kind": "accuracy", "model": model, "ratio": ratio, "finetune_epochs": finetune, "dataset": dataset,
           "options": record["options"]}
    for label, r in (("unpruned", None), ("pruned", ratio)):
        outcome = _export(str(Path(ckpt).resolve()), work / f"acc-{model}-{label}", r, finetune, dataset, lr)
        result = evaluate_run(outcome.run_dir, dataset, report=lambda line: None)
        key = result["metric"]
        row[label] = {
            "params": outcome.manifest["model"]["parameters"], "macs": outcome.manifest["model"]["macs"],
            "top1": {f"{x['format']}/{x['precision']}": x[key] for x in result["results"]},
            "samples": result["samples"],
        }
        if r:
            row["pruning"] = {k: outcome.manifest["pruning"][k] for k in ("macs_before", "macs_after", "finetune")}
    row["drop_pp"] = {k: 100 * (row["unpruned"]["top1"][k] - v) for k, v in row["pruned"]["top1"].items()
                      if k in row["unpruned"]["top1"]}
    return row


def write_md() -> None:
    rows = [json.loads(line) for line in (RESULTS / "pruning.jsonl").read_text().splitlines() if line.strip()]
    speed_rows = {r["model"]: r for r in rows if r["kind"] == "speed"}
    acc_rows = {r["model"]: r for r in rows if r["kind"] == "accuracy"}
    lines = ["# Structured pruning: what it buys", ""]
    if speed_rows:
        any_row = next(iter(speed_rows.values()))
        env = any_row["unpruned"]["environment"] or {}
        lines += [
            f"## Speed (full-size models, random weights; {any_row['date']}, {env.get('cpu')}, "
            f"{any_row['unpruned']['threads'] or env.get('cores')} threads, batch 1, p50 ms of int8 artefacts)",
            "",
            "| model | ratio | MACs | MACs kept | params | ONNX int8 | OpenVINO int8 | TFLite int8 | int8 speed-up "
            "ONNX / OpenVINO / TFLite |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in speed_rows.values():
            for label in ("unpruned", "pruned"):
                d = r[label]
                cells = [f"{d['p50_ms'].get(f'{f}/int8') or float('nan'):.3f}" for f in FORMATS]
                speed_cell = " / ".join(f"{r['speedup_int8'].get(f, float('nan')):.2f}x" for f in FORMATS) \
                    if label == "pruned" else ""
                lines.append(f"| {r['model']} | {r['ratio'] if label == 'pruned' else 0} | {d['macs'] / 1e6:,.1f} M "
                             f"| {100 * d['macs'] / r['unpruned']['macs']:.1f}% | {d['params']:,} | "
                             + " | ".join(cells) + f" | {speed_cell} |")
        lines.append("")
    if acc_rows:
        lines += [
            "## Accuracy (trained reduced models; pruned = uniform structured + fine-tune; test split)",
            "",
            "| model | dataset | options | ratio | fine-tune epochs | MACs kept | top-1 fp32 | ONNX int8 "
            "| OpenVINO int8 | TFLite int8 | fp32 drop (pp) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in acc_rows.values():
            opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
            for label in ("unpruned", "pruned"):
                d = r[label]
                t = d["top1"]
                cells = [f"{100 * t[k]:.2f}%" if k in t else "-" for k in ("pytorch/fp32", "onnx/int8",
                                                                           "openvino/int8", "tflite/int8")]
                kept = f"{100 * d['macs'] / r['unpruned']['macs']:.1f}%"
                drop = f"{r['drop_pp']['pytorch/fp32']:+.2f}" if label == "pruned" else ""
                lines.append(f"| {r['model']} | {r['dataset']} | {opts} | {r['ratio'] if label == 'pruned' else 0} "
                             f"| {r['finetune_epochs'] if label == 'pruned' else '-'} | {kept} | "
                             + " | ".join(cells) + f" | {drop} |")
        lines.append("")
    lines += ["Made by `benchmarks/pruning.py`; every number, with the environment, is in pruning.jsonl.", ""]
    (RESULTS / "pruning.md").write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    mode, rest = argv[0], argv[1:]
    opts = dict(a[2:].split("=", 1) for a in rest if a.startswith("--"))
    args = [a for a in rest if not a.startswith("--")]
    ratio = float(opts.get("ratio", 0.3))
    work = Path(tempfile.mkdtemp(prefix="edgekit-prune-bench-"))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for item in args or (["resnet50", "googlenet", "vgg16", "lenet5"] if mode == "speed" else []):
        if mode == "speed":
            row = speed(item, ratio, work)
        else:
            lr = float(opts["finetune-lr"]) if "finetune-lr" in opts else None
            row = accuracy(item, ratio, int(opts.get("finetune", 8)), work, lr)
        row["date"] = stamp
        print(json.dumps({k: v for k, v in row.items() if k not in ("unpruned", "pruned")}), flush=True)
        with open(RESULTS / "pruning.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    write_md()


if __name__ == "__main__":
    main(sys.argv[1:])
