"""How long `edgekit eval` takes against what its models cost on their own.

    .venv/bin/python benchmarks/eval_speed.py [--model small|full] [--limit N] [--label TEXT]

Exports (or reuses, under benchmarks/_work) a run of resnet50 with every format, fp32 and int8:
``small`` is width 0.25 at 32x32 with 10 classes (minutes here), ``full`` the zoo's resnet50 at
224x224. Then, one after the other, ``edgekit eval RUN --dataset ../shared/data/cifar10 --split
test --limit N --json`` (wall time of the whole command, as a user waits for it) and ``edgekit
bench RUN --json`` (the defaults: local-cpu, one thread per core, batch 1, 3 s per model).

    ratio = eval wall / (sum over models of N x bench's per-sample time + bench's load times)

The issue's goal is a ratio of at most 1.3. Each call appends one line to
benchmarks/results/eval_speed.jsonl (with eval's own per-model seconds and bench's rows) and
rewrites eval_speed.md's table from all lines. The weights are random (accuracy is not the point;
the predictions must only stay the same, which the lines' top-1 per model show).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
WORK = HERE / "_work"
EDGEKIT = str(Path(sys.executable).with_name("edgekit"))
CIFAR = os.path.relpath(ROOT.parent / "shared" / "data" / "cifar10", ROOT)
MODELS = {
    "small": ["resnet50", "--width", "0.25", "--input-size", "32", "--num-classes", "10"],
    "full": ["resnet50", "--num-classes", "10"],
}


def sh(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    print("$", " ".join(args), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    print(f"  rc {proc.returncode} in {wall:.1f} s", flush=True)
    if proc.returncode:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", flush=True)
        raise SystemExit(proc.returncode)
    return proc, wall


def parse_json(stdout: str) -> dict:
    start = 0 if stdout.startswith("{") else stdout.find("\n{") + 1
    return json.JSONDecoder().raw_decode(stdout[start:])[0]


def run_dir(model: str) -> Path:
    out = WORK / {"small": "resnet50_w025_32", "full": "resnet50_full"}[model]
    if not (out / "manifest.json").is_file():
        sh([EDGEKIT, "export", *MODELS[model], "--int8", "--calib", f"{CIFAR}/train", "--out", str(out)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS), default="small")
    ap.add_argument("--run", type=Path, help="an existing run to use instead of exporting one")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--label", default="", help="e.g. before / after, recorded")
    args = ap.parse_args()
    run = args.run or run_dir(args.model)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    proc, wall = sh([EDGEKIT, "eval", str(run), "--dataset", CIFAR, "--split", "test",
                     "--limit", str(args.limit), "--json"])
    ev = parse_json(proc.stdout)
    proc, bench_wall = sh([EDGEKIT, "bench", str(run), "--json"])
    bench = parse_json(proc.stdout)
    n = ev["samples"]
    models, own = [], 0.0
    by_key = {(r["format"], r["precision"]): r for r in ev["results"]}
    batches = {(t["format"], t["precision"]): t for t in ev.get("timing") or []}
    for r in bench["results"]:
        if r.get("status") != "ok":
            continue
        infer_s = n * r["mean_ms"] / r.get("batch", 1) / 1e3
        load_s = r["load_ms"] / 1e3
        own += infer_s + load_s
        e = by_key.get((r["format"], r["precision"]), {})
        models.append({"format": r["format"], "precision": r["precision"], "bench_mean_ms": round(r["mean_ms"], 3),
                       "bench_load_s": round(load_s, 2), "own_s": round(infer_s + load_s, 2),
                       "eval_s": e.get("seconds"), "eval_batch": batches.get((r["format"], r["precision"]), {}).get("batch"), "top1": e.get("top1"),
                       "agreement": e.get("agreement")})
    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
        "label": args.label, "model": " ".join(MODELS[args.model]) if not args.run else str(args.run),
        "samples": n, "eval_wall_s": round(wall, 1), "bench_wall_s": round(bench_wall, 1),
        "own_s": round(own, 1), "ratio": round(wall / own, 2),
        "eval_timing": ev.get("timing"), "models": models,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with "
                   "other agents' jobs (timings are noisy)",
    }
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "eval_speed.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps({k: record[k] for k in ("label", "samples", "eval_wall_s", "own_s", "ratio")}))
    write_table()


def write_table() -> None:
    """The table part of eval_speed.md (between the markers) from every line of the .jsonl."""
    md = RESULTS / "eval_speed.md"
    lines = [json.loads(x) for x in (RESULTS / "eval_speed.jsonl").read_text().splitlines() if x.strip()]
    rows = ["| date | commit | label | model | N | eval wall (s) | models' own (s) | ratio |",
            "|---|---|---|---|---|---|---|---|"]
    rows += [f"| {r['date']} | {r['commit']} | {r['label']} | {r['model']} | {r['samples']} | "
             f"{r['eval_wall_s']} | {r['own_s']} | **{r['ratio']}** |" for r in lines]
    rows += ["", "Per model (last line of each label): eval's seconds (open + inference) against "
             "bench's N x per-sample + load, top-1 as eval scored it.", ""]
    last = {}
    for r in lines:
        last[(r["model"], r["label"])] = r
    for (model, label), r in last.items():
        rows += [f"{label} ({model}, N={r['samples']}):", "",
                 "| format | precision | bench ms/sample | bench load (s) | own (s) | eval (s) | top-1 |",
                 "|---|---|---|---|---|---|---|"]
        rows += [f"| {m['format']} | {m['precision']} | {m['bench_mean_ms']} | {m['bench_load_s']} | "
                 f"{m['own_s']} | {m['eval_s'] if m['eval_s'] is not None else '-'} | "
                 f"{m['top1'] if m['top1'] is not None else '-'} |" for m in r["models"]]
        rows.append("")
    begin, end = "<!-- table: written by benchmarks/eval_speed.py -->", "<!-- end of table -->"
    text = md.read_text() if md.exists() else f"# eval speed\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    md.write_text(f"{head}{begin}\n" + "\n".join(rows) + f"\n{end}{tail}")


if __name__ == "__main__":
    main()
