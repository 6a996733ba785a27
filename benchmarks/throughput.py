"""Throughput per format, fp32 and int8, at batch 1, 8 and 32 (images/s), with `export --dynamic-batch`.

    .venv/bin/python benchmarks/throughput.py [--model=resnet50] [--batches=1,8,32] [--threads=2]
                                              [--seconds=S | --iters=N] [--results=DIR] [--quick]

The model is exported at full size (random weights: speed does not depend on their values) to every
default format, fp32 and int8, with a dynamic batch axis; then `edgekit bench` times every artefact
in its own process on local-cpu at each batch with 2 threads, beside PyTorch eager fp32. TFLite keeps
batch 1 (litert-torch converts static shapes only), so the runner feeds its batch 8 and 32 one sample
at a time: those cells are batch-1 speed, said so under the table. Results: a "Throughput at batch 1, 8 and 32" section appended to
(or replaced in) results/latency.md, and every bench row in results/throughput.jsonl.

--quick proves the script works in a minute or two: lenet5, 5 timed runs per cell, results in a
temporary folder unless --results is given. Run the full benchmark on a quiet machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTION = "## Throughput at batch"


def options(argv: list[str]) -> dict:
    opts = {"model": "resnet50", "batches": "1,8,32", "threads": "2", "seconds": "3", "iters": None,
            "results": str(HERE / "results")}
    if "--quick" in argv:
        opts.update(model="lenet5", iters="5", seconds=None, results=tempfile.mkdtemp(prefix="edgekit-tput-"))
    for a in argv:
        key, _, value = a.removeprefix("--").partition("=")
        if value and key in opts:
            opts[key] = value
            if key == "iters":
                opts["seconds"] = None
    return opts


def run(opts: dict) -> list[dict]:
    from edgekit.bench.core import BenchSettings, bench
    from edgekit.export.plan import ExportPlan, run_export
    from edgekit.targets import get_target

    model = opts["model"]
    work = Path(tempfile.mkdtemp(prefix=f"edgekit-tput-{model}-"))
    start = time.perf_counter()
    outcome = run_export(ExportPlan(model=model, int8=True, dynamic_batch=True, calib_size=32, out=work / "run"),
                         report=lambda line: None)
    export_s = round(time.perf_counter() - start, 1)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    shapes = {f"{a['format']}/{a['precision']}": a.get("input_shape") for a in outcome.manifest["artefacts"]}
    rows = []
    for batch in [int(b) for b in opts["batches"].split(",")]:
        settings = BenchSettings(threads=int(opts["threads"]), batch=batch,
                                 seconds=float(opts["seconds"]) if opts["seconds"] else None,
                                 iters=int(opts["iters"]) if opts["iters"] else None)
        record = bench(outcome.run_dir, get_target("local-cpu"), settings, report=lambda line: None)
        for r in record["results"]:
            key = f"{r['format']}/{r['precision']}"
            rows.append({"date": date, "model": model, "batch": batch, "threads": settings.threads,
                         "export_seconds": export_s, "artefact_input_shape": shapes.get(key), **r})
        print(json.dumps({"batch": batch, "images_per_s": {f"{r['format']}/{r['precision']}":
                          r.get("throughput_per_s") for r in record["results"]}}), flush=True)
    return rows


def fmt_rate(v) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ms(v) -> str:
    return "-" if v is None else f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def table(rows: list[dict]) -> list[str]:
    batches = sorted({r["batch"] for r in rows})
    keys = list(dict.fromkeys((r["format"], r["precision"]) for r in rows))
    cell = {(r["format"], r["precision"], r["batch"]): r for r in rows if r.get("status") == "ok"}
    first = rows[0]
    env = next((r["environment"] for r in rows if r.get("environment")), {}) or {}
    head = (["format", "precision"] + [f"images/s b{b}" for b in batches]
            + [f"p50 ms b{b}" for b in batches])
    lines = [
        f"{SECTION} {', '.join(map(str, batches[:-1]))} and {batches[-1]}" if len(batches) > 1
        else f"{SECTION} {batches[0]}",
        "",
        f"Measured {first['date']} on {env.get('cpu')} ({env.get('cores')} cores, {first['threads']} threads): "
        f"{first['model']} at full size (random weights), exported with `--int8 --dynamic-batch`, each artefact "
        "in its own process (benchmarks/throughput.py). images/s: batch x timed runs / timed seconds; p50: one "
        "inference of the whole batch. TFLite keeps batch 1 (litert-torch converts static shapes only): its "
        "batch 8 and 32 run one sample at a time, so they show batch-1 speed. ExecuTorch programs take up to "
        "batch 64. Raw rows: throughput.jsonl.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for fmt, precision in keys:
        got = [cell.get((fmt, precision, b)) for b in batches]
        lines.append("| " + " | ".join([fmt, precision]
                                       + [fmt_rate(r and r.get("throughput_per_s")) for r in got]
                                       + [fmt_ms(r and r.get("p50_ms")) for r in got]) + " |")
    return lines + [""]


def write(rows: list[dict], results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "throughput.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    md = results / "latency.md"
    text = md.read_text() if md.exists() else ""
    if SECTION in text:  # a rerun replaces its section; latency.py rewrites the file above it
        text = text[: text.index(SECTION)]
    md.write_text(text.rstrip("\n") + ("\n\n" if text.strip() else "") + "\n".join(table(rows)))
    print(f"results: {md} and {results / 'throughput.jsonl'}")


def main(argv: list[str]) -> None:
    opts = options(argv)
    write(run(opts), Path(opts["results"]))


if __name__ == "__main__":
    main(sys.argv[1:])
