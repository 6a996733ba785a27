"""How much of each seed model ExecuTorch hands to XNNPACK, fp32 and int8 (full-size models).

    .venv/bin/python benchmarks/executorch_delegation.py [lenet5 lstm googlenet resnet50 vgg16]

Exports each model with `--to executorch --int8` (random weights: delegation does not depend on
them) and records, per artefact, the ops lowered to XNNPACK, their share, and the portable kernel
calls read back from the .pte (slow ops that XNNPACK did not take). Results:
benchmarks/results/executorch_delegation.md and .jsonl.
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


def run(model: str) -> dict:
    from edgekit.export.plan import ExportPlan, run_export

    work = Path(tempfile.mkdtemp(prefix=f"edgekit-et-{model}-"))
    start = time.perf_counter()
    outcome = run_export(ExportPlan(model=model, formats=("executorch",), int8=True, out=work / "run"),
                         report=lambda line: None)
    rows = []
    for a in outcome.manifest["artefacts"]:
        d = a.get("details", {})
        rows.append({"precision": a["precision"], "status": a["status"], "scheme": a.get("scheme", {}).get("type"),
                     "delegated_ops": d.get("delegated_ops"), "portable_ops": d.get("portable_ops"),
                     "delegated_share": d.get("delegated_share"), "portable_kernels": d.get("portable_kernels"),
                     "bytes": a.get("bytes"), "sqnr_db": a.get("verify", {}).get("sqnr_db")})
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "model": model,
            "export_seconds": round(time.perf_counter() - start, 1), "artefacts": rows,
            "tools": {k: outcome.manifest["tools"].get(k) for k in ("executorch", "torch", "torchao")}}


def write(results: list[dict]) -> None:
    with open(RESULTS / "executorch_delegation.jsonl", "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    tools = results[0]["tools"]
    lines = ["# ExecuTorch: ops delegated to XNNPACK per seed model", "",
             f"Measured {results[0]['date']} with executorch {tools['executorch']}, torch {tools['torch']}, "
             f"torchao {tools['torchao']}. Full-size models, `edgekit export MODEL --to executorch --int8`. "
             "Ops counted in the lowered graph (getitem excluded); portable kernels read back from the .pte.", "",
             "| model | precision | int8 scheme | ops on XNNPACK | share | portable kernel calls | size MB | SQNR dB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for a in r["artefacts"]:
            portable = ", ".join(f"{k} x{v}" for k, v in sorted((a["portable_kernels"] or {}).items())) or "none"
            share = f"{a['delegated_share']:.1%}" if a["delegated_share"] is not None else "-"
            sqnr = f"{a['sqnr_db']:.1f}" if a["precision"] == "int8" and a["sqnr_db"] is not None else "-"
            lines.append(f"| {r['model']} | {a['precision']} | {a['scheme'] if a['precision'] == 'int8' else '-'} | "
                         f"{a['delegated_ops']} of {(a['delegated_ops'] or 0) + (a['portable_ops'] or 0)} | {share} | "
                         f"{portable} | {a['bytes'] / 1e6:.2f} | {sqnr} |")
    lines.append("")
    (RESULTS / "executorch_delegation.md").write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    results = []
    for model in [a for a in argv if not a.startswith("--")] or MODELS:
        results.append(run(model))
        print(json.dumps({k: results[-1][k] for k in ("model", "export_seconds")}), flush=True)
    write(results)


if __name__ == "__main__":
    main(sys.argv[1:])
