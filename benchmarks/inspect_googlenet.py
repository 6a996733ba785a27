"""Where GoogLeNet's int8 loses accuracy on shapes, and what fixes it.

    .venv/bin/python benchmarks/inspect_googlenet.py [CHECKPOINT]

Without a checkpoint this first runs `edgekit train googlenet --dataset shapes` (width 0.25, 64 px,
the reference of benchmarks/results/accuracy.md). Then, through the CLI as a user would:
1. `edgekit export CKPT --int8 --eval shapes` (calibrated on 64 shapes of the train split), and
   `edgekit inspect RUN` on every format: the worst layers per int8 artefact;
2. `edgekit export CKPT --int8 --eval shapes --max-drop BUDGET`: what the search tried and kept;
and records both in benchmarks/results/inspect_googlenet.md (+ .jsonl with every number).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
EDGEKIT = [sys.executable, "-m", "edgekit"]
BUDGET = 0.3


def cli(*args: str) -> subprocess.CompletedProcess:
    print("$ edgekit", " ".join(map(str, args)), flush=True)
    proc = subprocess.run([*EDGEKIT, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode not in (0,):
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"edgekit {args[0]} failed with {proc.returncode}")
    return proc


def drops(manifest: dict) -> dict:
    return {f"{r['format']}/{r['precision']}": r["drop_pp"] for r in manifest["eval"]["results"]}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="edgekit-inspect-gn-"))
    ckpt = Path(sys.argv[1]) if len(sys.argv) > 1 else work / "googlenet.pt"
    if not ckpt.is_file():
        cli("train", "googlenet", "--dataset", "shapes", "--out", ckpt)
    start = time.perf_counter()
    plain = work / "plain"
    cli("export", ckpt, "--int8", "--eval", "shapes", "--calib-size", "64", "--out", plain)
    inspected = json.loads(cli("inspect", plain, "--json").stdout)
    plain_m = json.loads((plain / "manifest.json").read_text())
    searched = work / "searched"
    out = cli("export", ckpt, "--int8", "--eval", "shapes", "--calib-size", "64", "--max-drop", str(BUDGET),
              "--out", searched)
    searched_m = json.loads((searched / "manifest.json").read_text())
    # A zero budget makes every format that lost anything on val try its remedies: what each brings.
    forced = work / "forced"
    cli("export", ckpt, "--int8", "--eval", "shapes", "--calib-size", "64", "--max-drop", "0",
        "--to", "tflite,openvino", "--out", forced)
    forced_m = json.loads((forced / "manifest.json").read_text())
    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "checkpoint": str(ckpt), "seconds": round(time.perf_counter() - start, 1),
        "eval": {"dataset": plain_m["eval"]["dataset"], "split": plain_m["eval"]["split"],
                 "samples": plain_m["eval"]["samples"]},
        "drops_default": drops(plain_m), "drops_searched": drops(searched_m),
        "worst": {f: [(e["torch_name"] or e["name"], e["op"], e["sqnr_db"]) for e in r.get("layers", [])[:5]]
                  for f, r in inspected["formats"].items()},
        "search": {a["format"]: a["search"] for a in searched_m["artefacts"] if a.get("search")},
        "drops_forced": drops(forced_m),
        "search_forced": {a["format"]: a["search"] for a in forced_m["artefacts"] if a.get("search")},
        "export_output": out.stdout[-4000:],
        "tools": plain_m["tools"],
    }
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "inspect_googlenet.jsonl", "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
    write_markdown(record)
    print((RESULTS / "inspect_googlenet.md").read_text())


def write_markdown(r: dict) -> None:
    ev = r["eval"]
    lines = ["# GoogLeNet int8 on shapes: where it loses, what fixed it", "",
             f"Made by `benchmarks/inspect_googlenet.py` on {r['date']} (raw numbers in inspect_googlenet.jsonl). "
             f"Model: googlenet width 0.25, 64 px, trained on shapes (`edgekit train googlenet --dataset "
             f"shapes`); int8 calibrated on 64 shapes of the train split; drops in points of top-1 on "
             f"{ev['dataset']} {ev['split']} ({ev['samples']} samples); the `--max-drop {BUDGET}` search "
             "measures on the val split.", "",
             "## Drop per format", "", "| artefact | default int8 | with --max-drop |", "|---|---|---|"]
    for key, drop in r["drops_default"].items():
        if key.endswith("int8"):
            lines.append(f"| {key} | {drop:+.2f} | {r['drops_searched'].get(key, float('nan')):+.2f} |")
    lines += ["", "## Worst layers (edgekit inspect, default int8)", "",
              "| format | rank | PyTorch module | op | SQNR dB |", "|---|---|---|---|---|"]
    for fmt, layers in r["worst"].items():
        for rank, (name, op, sqnr) in enumerate(layers, 1):
            lines.append(f"| {fmt} | {rank} | {name} | {op} | {float(sqnr):.1f} |")
    for title, key, drops_key in ((f"What the search tried with --max-drop {BUDGET} (val split)", "search",
                                   "drops_searched"),
                                  ("With --max-drop 0: every remedy tried (val split)", "search_forced",
                                   "drops_forced")):
        lines += ["", f"## {title}", ""]
        lines += _search_lines(r[key], r[drops_key])
    (RESULTS / "inspect_googlenet.md").write_text("\n".join(lines) + "\n")


def _search_lines(searches: dict, final: dict) -> list[str]:
    lines = []
    for fmt, s in searches.items():
        chosen = s["attempts"][s["chosen"]]
        lines.append(f"- **{fmt}**: {'met' if s['met'] else 'not met'}; kept attempt {s['chosen']} "
                     f"({chosen['settings']['method']}, {chosen['settings']['calibration_samples']} samples, "
                     f"{len(chosen['settings'].get('exclude', []))} layers in float): drop "
                     f"{chosen['drop_pp']:+.2f}. Attempts: "
                     + "; ".join(f"#{a['index']} {a['stage']} {a['settings']['method']}"
                                 f"{' -' + str(len(a['settings']['exclude'])) + ' layers' if a['settings'].get('exclude') else ''}"
                                 f": {a['drop_pp']:+.2f}" if a.get("status") == "ok" else f"#{a['index']} failed"
                                 for a in s["attempts"])
                     + f". Kept artefact on test: {final.get(fmt + '/int8', float('nan')):+.2f}.")
    return lines


if __name__ == "__main__":
    main()
