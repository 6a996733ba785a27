"""How long `edgekit eval` takes against what its models cost on their own.

    .venv/bin/python benchmarks/eval_speed.py [--model small|full] [--limit N] [--label TEXT]

Exports (or reuses, under benchmarks/_work) a run of resnet50 with every format, fp32 and int8:
``small`` is width 0.25 at 32x32 with 10 classes (minutes here), ``full`` the zoo's resnet50 at
224x224. Then, one after the other, ``edgekit eval RUN --dataset ../shared/data/cifar10 --split
test --limit N --json`` (wall time of the whole command, as a user waits for it) and ``edgekit
bench RUN --json`` (the defaults: local-cpu, one thread per core, batch 1, 3 s per model).

    ratio = eval wall / (sum over models of N x bench's per-sample time + bench's load times)

The issue's goal is a ratio of at most 1.3.

    .venv/bin/python benchmarks/eval_speed.py --tflite RUN [--samples 64] [--rounds 5]

times a run's .tflite files the ways bench and eval run them, interleaved in rounds (the machine
is shared; the medians are kept), to tell what makes eval's TFLite slower than bench's (one line
per file in eval_speed.jsonl, kind "tflite"). Each call appends one line to
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


def sh(args: list[str], tree: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command from the repository root (with edgekit imported from ``tree`` when given)."""
    print("$", " ".join(args), f"(edgekit from {tree})" if tree else "", flush=True)
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env)
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
    ap.add_argument("--before", help="a commit: also run its eval first (from `git archive` of it), "
                    "recorded as 'before COMMIT' against the same bench")
    ap.add_argument("--tflite", type=Path, help="a run whose .tflite files to time bench's and eval's ways")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.tflite:
        return tflite_ways(args.tflite, args.samples, args.rounds)
    run = args.run or run_dir(args.model)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    evals = []
    if args.before:
        old = WORK / f"tree-{args.before}"
        if not old.is_dir():
            old.mkdir(parents=True)
            subprocess.run(f"git archive {args.before} | tar -x -C {old}", shell=True, cwd=ROOT, check=True)
        evals.append((f"before {args.before}", old))
    evals.append((args.label, None))
    done = []
    for label, tree in evals:
        proc, wall = sh([EDGEKIT, "eval", str(run), "--dataset", CIFAR, "--split", "test",
                         "--limit", str(args.limit), "--json"], tree)
        done.append((label, wall, parse_json(proc.stdout)))
    proc, bench_wall = sh([EDGEKIT, "bench", str(run), "--json"])
    bench = parse_json(proc.stdout)
    for label, wall, ev in done:
        record(args, run, commit, label, wall, ev, bench, bench_wall)
    write_table()


def record(args, run: Path, commit: str, label: str, wall: float, ev: dict, bench: dict,
           bench_wall: float) -> None:
    """One line of eval_speed.jsonl: eval's wall against bench's per-model costs."""
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
                       "eval_s": e.get("seconds"), "top1": e.get("top1"), "agreement": e.get("agreement"),
                       "eval_batch": batches.get((r["format"], r["precision"]), {}).get("batch")})
    line = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": label.split()[1] if label.startswith("before ") else commit,
        "label": label, "model": " ".join(MODELS[args.model]) if not args.run else str(args.run),
        "samples": n, "eval_wall_s": round(wall, 1), "bench_wall_s": round(bench_wall, 1),
        "own_s": round(own, 1), "ratio": round(wall / own, 2),
        "eval_models_s": round(sum(r.get("seconds") or 0 for r in ev["results"]), 1),  # the rest: imports, data
        "eval_timing": ev.get("timing"), "models": models,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with "
                   "other agents' jobs (timings are noisy)",
    }
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "eval_speed.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps({k: line[k] for k in ("label", "samples", "eval_wall_s", "own_s", "ratio")}))


def tflite_ways(run: Path, samples: int, rounds: int) -> None:
    """ms per sample of each .tflite file of ``run``: bench's runner (inputs set once, invoke alone
    timed) and eval's session (``Format.open``: per sample quantize, set_tensor, invoke, get_tensor,
    dequantize, through ``run_batched``), each with the runtime's default threads (1) and one per
    core, and the parts of eval's call timed apart."""
    manifest = json.loads((run / "manifest.json").read_text())
    for art in manifest["artefacts"]:
        if art["format"] != "tflite" or art.get("status") != "ok":
            continue
        ms = _tflite_file(run / art["path"], samples, rounds)
        record = {"kind": "tflite", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "run": str(run), "precision": art["precision"], "input_shape": art.get("input_shape"),
                  "samples": samples, "rounds": rounds, "ms_per_sample_median": ms,
                  "machine": f"{os.cpu_count()} cores shared with other agents' jobs"}
        with (RESULTS / "eval_speed.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(art["precision"], json.dumps(ms, indent=1), flush=True)
    write_table()


def _tflite_file(path: Path, samples: int, rounds: int) -> dict:
    import numpy as np

    from edgekit.bench.runner import TFLiteSession as BenchSession
    from edgekit.export.verify import run_batched
    from edgekit.formats import _tflite_runtime as rt
    from edgekit.formats import get_format
    from edgekit.layout import BatchAxes, first

    cores = os.cpu_count()
    ways = {}
    for threads in (None, cores):
        bench = BenchSession({"path": str(path), "threads": threads, "format": "tflite"})
        bench.make_inputs(np.random.default_rng(0))
        ways[f"bench invoke, threads {threads or 'default (1)'}"] = bench.infer
    sessions = {t: get_format("tflite").open(path, t) for t in (None, cores)}
    one = np.random.default_rng(0).standard_normal((1, *sessions[None].input_shape[1:])).astype(np.float32)
    for threads, session in sessions.items():
        name = threads or "default (1)"
        ways[f"eval run_batched(session.run), threads {name}"] = \
            lambda s=session: first(run_batched(s, one, 1, BatchAxes()))
        ways[f"eval session.run, threads {name}"] = lambda s=session: s.run(one)
    interp, d_in, d_out = sessions[cores]._interp, sessions[cores].input_details[0], sessions[cores].output_details
    q = rt._quantize(one, d_in)
    ways["  part: _quantize"] = lambda: rt._quantize(one, d_in)
    ways["  part: set_tensor"] = lambda: interp.set_tensor(d_in["index"], q)
    ways[f"  part: invoke, threads {cores}"] = interp.invoke
    ways["  part: get_tensor + _dequantize"] = lambda: [rt._dequantize(interp.get_tensor(d["index"]), d)
                                                     for d in d_out]
    times = {k: [] for k in ways}
    for _ in range(rounds):
        for k, call in ways.items():
            call()
            began = time.perf_counter()
            for _ in range(samples):
                call()
            times[k].append((time.perf_counter() - began) / samples * 1e3)
    return {k: round(float(np.median(v)), 4) for k, v in times.items()}


def write_table() -> None:
    """The table part of eval_speed.md (between the markers) from every line of the .jsonl."""
    md = RESULTS / "eval_speed.md"
    every = [json.loads(x) for x in (RESULTS / "eval_speed.jsonl").read_text().splitlines() if x.strip()]
    lines = [r for r in every if r.get("kind") != "tflite"]
    rows = ["| date | commit | label | model | N | eval wall (s) | of it in models (s) | models' own (s) "
            "| ratio |", "|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {r['date']} | {r['commit']} | {r['label']} | {r['model']} | {r['samples']} | "
             f"{r['eval_wall_s']} | {r.get('eval_models_s', '-')} | {r['own_s']} | **{r['ratio']}** |"
             for r in lines]
    rows += ["", "Per model (last line of each label): eval's seconds (open + inference) against "
             "bench's N x per-sample + load, top-1 as eval scored it.", ""]
    last = {}
    for r in lines:
        last[(r["model"], r["label"])] = r
    for (model, label), r in last.items():
        rows += [f"{label} ({model}, N={r['samples']}):", "",
                 "| format | precision | bench ms/sample | bench load (s) | own (s) | eval (s) | eval batch "
                 "| top-1 | agreement |", "|---|---|---|---|---|---|---|---|---|"]
        rows += [f"| {m['format']} | {m['precision']} | {m['bench_mean_ms']} | {m['bench_load_s']} | "
                 f"{m['own_s']} | {m['eval_s'] if m['eval_s'] is not None else '-'} | "
                 f"{m.get('eval_batch') or '-'} | {m['top1']} | {m['agreement']} |" for m in r["models"]]
        rows.append("")
    for r in (r for r in every if r.get("kind") == "tflite"):
        rows += [f"TFLite ways, {r['precision']} {r['input_shape']} ({r['run']}, {r['date']}, median of "
                 f"{r['rounds']} rounds of {r['samples']} calls):", "", "| way | ms per sample |", "|---|---|"]
        rows += [f"| {k} | {v} |" for k, v in r["ms_per_sample_median"].items()]
        rows.append("")
    begin, end = "<!-- table: written by benchmarks/eval_speed.py -->", "<!-- end of table -->"
    text = md.read_text() if md.exists() else f"# eval speed\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    md.write_text(f"{head}{begin}\n" + "\n".join(rows) + f"\n{end}{tail}")


if __name__ == "__main__":
    main()
