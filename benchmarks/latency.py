"""fp32 vs int8 latency per format for the five seed models on this machine, PyTorch eager as the base.

    .venv/bin/python benchmarks/latency.py [lenet5 lstm googlenet resnet50 vgg16] [--seconds=S]
        [--formats=onnx,tflite,...|all] [--append=TITLE]

``--formats=all`` exports to every registered format (MNN too); ``--append=TITLE`` adds the table
as a new section of latency.md instead of rewriting its first table.

Each model is exported at full size (random weights: latency does not depend on their values)
to every default format (ONNX, TFLite, OpenVINO, ExecuTorch), fp32 and int8, then `edgekit bench` times every artefact in its own
process on local-cpu (all cores, batch 1) beside the PyTorch eager fp32 model. Results:
benchmarks/results/latency.md (table) and latency.jsonl (every bench record).
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
MODELS = ["lenet5", "lstm", "googlenet", "resnet50", "vgg16"]

FORMATS: tuple[str, ...] = ()  # --formats (empty: the default formats)


def formats() -> tuple[str, ...]:
    from edgekit.formats import default_names

    return FORMATS or default_names()


def run(model: str, seconds: float) -> dict:
    from edgekit.bench.core import BenchSettings, bench
    from edgekit.export.plan import ExportPlan, run_export
    from edgekit.targets import get_target

    work = Path(tempfile.mkdtemp(prefix=f"edgekit-lat-{model}-"))
    start = time.perf_counter()
    outcome = run_export(ExportPlan(model=model, int8=True, calib_size=32, out=work / "run", formats=formats(),
                                    formats_given=bool(FORMATS)),
                         report=lambda line: None)
    export_s = time.perf_counter() - start
    record = bench(outcome.run_dir, get_target("local-cpu"), BenchSettings(seconds=seconds),
                   report=lambda line: None)
    rows = {(r["format"], r["precision"]): r for r in record["results"]}
    m = outcome.manifest["model"]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": model, "parameters": m["parameters"], "macs": m["macs"], "input": m["input"]["shape"],
        "export_seconds": round(export_s, 1),
        "p50_ms": {f"{k[0]}/{k[1]}": r.get("p50_ms") for k, r in rows.items()},
        "status": {f"{k[0]}/{k[1]}": r.get("status") for k, r in rows.items()},
        "schemes": {a["format"]: a["scheme"].get("type") for a in outcome.manifest["artefacts"]
                    if a["precision"] == "int8" and a["status"] == "ok"},
        "bench": record,
        "tools": outcome.manifest["tools"],
    }


def macs(v) -> str:
    if not v:
        return "-"
    return f"{v / 1e9:.3g} G" if v >= 1e9 else f"{v / 1e6:.3g} M"


def fmt_ms(v) -> str:
    return "-" if v is None else f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def write(results: list[dict], append: str = "") -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "latency.jsonl", "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    env = results[0]["bench"]["environment"] or {}
    settings = results[0]["bench"]["settings"]
    head = ["model", "MACs", "torch eager fp32"]
    for fmt in formats():
        head += [f"{fmt} fp32", f"{fmt} int8", f"{fmt} int8 speed-up"]
    lines = [
        f"## {append}" if append else "# Latency per format, fp32 vs int8 (p50 ms, batch 1)",
        "",
        f"Measured {results[0]['date']} on {env.get('cpu')} ({env.get('cores')} cores, "
        f"{settings.get('resolved_threads') or env.get('cores')} threads), each artefact in its own process, "
        f"{settings.get('seconds') or 3:g} s of timed inferences after a warm-up. Full-size models, "
        "random weights. Speed-up: the format's fp32 p50 over its int8 p50. OpenVINO fp32 runs in "
        "the precision its runtime picks on this CPU (recorded per row in latency.jsonl: bf16 here). "
        "ExecuTorch runs its XNNPACK delegate.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in results:
        p = r["p50_ms"]
        cells = [r["model"], macs(r["macs"]), fmt_ms(p.get("pytorch/fp32"))]
        for fmt in formats():
            fp32, int8 = p.get(f"{fmt}/fp32"), p.get(f"{fmt}/int8")
            cells += [fmt_ms(fp32), fmt_ms(int8), f"{fp32 / int8:.2f}x" if fp32 and int8 else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "int8 schemes: " + "; ".join(f"{r['model']}: " + ", ".join(f"{k} {v}" for k, v in
                                                                           r["schemes"].items())
                                               for r in results), ""]
    if append:
        old = (RESULTS / "latency.md").read_text().rstrip("\n")
        (RESULTS / "latency.md").write_text(old + "\n\n" + "\n".join(lines))
    else:
        (RESULTS / "latency.md").write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    global FORMATS
    models = [a for a in argv if not a.startswith("--")] or MODELS
    seconds, append = 3.0, ""
    for a in argv:
        if a.startswith("--seconds="):
            seconds = float(a.split("=", 1)[1])
        if a.startswith("--formats="):
            from edgekit.formats import names

            value = a.split("=", 1)[1]
            FORMATS = names() if value == "all" else tuple(value.split(","))
        if a.startswith("--append="):
            append = a.split("=", 1)[1]
    results = []
    for model in models:
        r = run(model, seconds)
        print(json.dumps({k: r[k] for k in ("model", "export_seconds", "p50_ms")}), flush=True)
        results.append(r)
    write(results, append)


if __name__ == "__main__":
    main(sys.argv[1:])
