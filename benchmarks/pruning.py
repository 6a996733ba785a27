"""What structured pruning buys: MACs, parameters, int8 latency per format, and top-1.

    .venv/bin/python benchmarks/pruning.py speed [resnet50 googlenet vgg16 lenet5] [--ratio=0.3]
        [--round-to=auto,1] [--rounds=3] [--seconds=2] [--work=DIR]
    .venv/bin/python benchmarks/pruning.py accuracy MODEL=CKPT ... [--ratio=0.3] [--finetune=8]

speed: each model at full size (random weights: latency does not depend on their values) is
exported int8 to every format unpruned and pruned (`--prune RATIO`, uniform structured), once per
`--round-to=auto,1,8,...` value (auto: the multiple edgekit chooses for this CPU), then every int8
artefact is timed on local-cpu (bench's defaults: all cores, batch 1, each in its own process) in
`--rounds` interleaved passes (one format in every variant back to back, the order alternating),
the median kept; `--work=DIR` keeps the exports for a rerun. Goals (issues 5, 24): resnet50 at 0.3
keeps at most 55% of the MACs, and its int8 artefacts run at least 1.4x faster than the unpruned
int8 ones in every format.

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
FORMATS = ("onnx", "openvino", "tflite", "executorch")


def _export(model: str, out: Path, ratio: float | None, finetune: int = 0, dataset: str | None = None,
            lr: float | None = None, round_to: int | None = None):
    from edgekit.export.plan import ExportPlan, run_export
    from edgekit.export.prune import PruneSettings

    prune = PruneSettings(ratio, round_to=round_to, finetune_epochs=finetune, dataset=dataset,
                          finetune_lr=lr) if ratio else None
    return run_export(ExportPlan(model=model, int8=True, calib_size=64, out=out, prune=prune), report=print)


def _label(round_to: int | None) -> str:
    return "pruned" if round_to is None else f"pruned-round{round_to}"


def _time_interleaved(runs: dict[str, Path], rounds: int, seconds: float) -> tuple[dict, dict, int]:
    """p50 ms of every int8 artefact of ``runs`` ({label: run dir}): ``rounds`` passes, each timing one
    format in every run back to back (other work on the machine hits all variants alike), each
    artefact in its own process at bench's default threads and batch; the median of the passes."""
    import statistics

    from edgekit.bench.core import BenchSettings, collect, make_device, spec_for, timeout_for
    from edgekit.targets import get_target

    target = get_target("local-cpu")
    settings = BenchSettings(seconds=seconds, torch_baseline=False)
    items = {label: {i.format: i for i in collect(path)[1] if i.precision == "int8"} for label, path in runs.items()}
    device = make_device(target, None, None, None)
    samples: dict[str, dict[str, list]] = {label: {f: [] for f in FORMATS} for label in runs}
    env = None
    with device:
        where = {label: device.stage({i.key: i.files for i in its.values()}) for label, its in items.items()}
        for n in range(rounds):
            for fmt in FORMATS:
                order = list(runs) if n % 2 == 0 else list(reversed(runs))  # alternate who goes first
                for label in order:
                    item = items[label].get(fmt)
                    if item is None:
                        continue
                    result = device.run(spec_for(item, where[label][item.key], target, settings),
                                        timeout_for(settings))
                    env = env or result.get("environment")
                    if result.get("p50_ms"):
                        samples[label][fmt].append(result["p50_ms"])
                    print(f"pass {n + 1} {fmt} {label}: {result.get('p50_ms')}", flush=True)
    p50 = {label: {f"{f}/int8": statistics.median(v) for f, v in fs.items() if v} for label, fs in samples.items()}
    return p50, {"environment": env, "samples": samples}, target.threads


def speed(model: str, ratio: float, work: Path, round_tos: tuple = (None,), rounds: int = 3,
          seconds: float = 2.0) -> dict:
    """``model`` int8 unpruned and pruned at ``ratio`` once per ``round_tos`` entry (None: the
    multiple edgekit chooses for this CPU), all timed in one interleaved session."""
    row = {"kind": "speed", "model": model, "ratio": ratio, "rounds": rounds, "seconds_each": seconds}
    runs, outcomes = {}, {}
    for label, r, rt in [("unpruned", None, None), *[(_label(rt), ratio, rt) for rt in round_tos]]:
        out = work / f"{model}-{label}"
        if not (out / "manifest.json").is_file():  # a rerun reuses the exports of the same work dir
            _export(model, out, r, round_to=rt)
        runs[label], outcomes[label] = out, json.loads((out / "manifest.json").read_text())
    p50, timing, threads = _time_interleaved(runs, rounds, seconds)
    for label, m in outcomes.items():
        row[label] = {
            "params": m["model"]["parameters"], "macs": m["model"]["macs"], "p50_ms": p50[label],
            "p50_samples_ms": timing["samples"][label],
            "bytes": {f"{a['format']}/{a['precision']}": a.get("bytes") for a in m["artefacts"]},
            "environment": timing["environment"], "threads": threads,
            "round_to": (m.get("pruning") or {}).get("round_to"),
            "channels": sorted({after for _, after in (m.get("pruning") or {}).get("layers", {}).values()}),
        }
        if label != "unpruned":
            row[label]["speedup_int8"] = {f: p50["unpruned"][f"{f}/int8"] / p50[label][f"{f}/int8"]
                                          for f in FORMATS if p50[label].get(f"{f}/int8")
                                          and p50["unpruned"].get(f"{f}/int8")}
            row[label]["macs_fraction"] = row[label]["macs"] / row["unpruned"]["macs"]
    main = "pruned" if "pruned" in row else _label(round_tos[0])
    row["chosen"] = main
    row["speedup_int8"] = row[main]["speedup_int8"]
    row["macs_fraction"] = row[main]["macs_fraction"]
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


NOTES = "<!-- notes: kept by write_md -->"
NAMES = {"onnx": "ONNX", "openvino": "OpenVINO", "tflite": "TFLite", "executorch": "ExecuTorch"}


def _ms(d: dict, f: str) -> str:
    v = d["p50_ms"].get(f"{f}/int8")
    return f"{v:.3f}" if v else "-"


def _sweep_table(r: dict) -> list[str]:
    """One interleaved session: unpruned and every pruned variant (round_to) of one model."""
    env = r["unpruned"]["environment"] or {}
    labels = [k for k in r if k == "unpruned" or k.startswith("pruned")]
    lines = [
        f"### {r['model']} --prune {r['ratio']} ({r['date']}, {env.get('cpu')}, "
        f"{r['unpruned']['threads'] or env.get('cores')} threads (bench's default: all cores), batch 1; p50 ms of int8 artefacts, median of {r['rounds']} interleaved passes "
        f"of {r['seconds_each']:g} s each)",
        "",
        "| variant | round_to | kept channels | MACs kept | params | " + " | ".join(f"{NAMES[f]} int8" for f in FORMATS)
        + " | int8 speed-up " + " / ".join(NAMES[f] for f in FORMATS) + " |",
        "|" + "---|" * (6 + len(FORMATS)),
    ]
    for label in labels:
        d = r[label]
        rt = d.get("round_to") or {}
        mult = "-" if label == "unpruned" else f"{rt.get('multiple')}" + (" (chosen)" if label == r["chosen"] else "")
        up = d.get("speedup_int8") or {}
        lines.append(f"| {label} | {mult} | {', '.join(map(str, d.get('channels') or [])) or '-'} | "
                     f"{100 * d['macs'] / r['unpruned']['macs']:.1f}% | {d['params']:,} | "
                     + " | ".join(_ms(d, f) for f in FORMATS) + " | "
                     + (" / ".join(f"{up[f]:.2f}x" if f in up else "-" for f in FORMATS) if up else "") + " |")
    chosen = (r[r["chosen"]].get("round_to") or {}).get("chosen") or {}
    lines += ["", f"Chosen for `{chosen.get('cpu')}`: {chosen.get('why')}.", ""]
    return lines


def write_md() -> None:
    rows = [json.loads(line) for line in (RESULTS / "pruning.jsonl").read_text().splitlines() if line.strip()]
    sweeps = [r for r in rows if r["kind"] == "speed" and "chosen" in r]  # every session: noise shows
    speed_rows = {r["model"]: r for r in rows if r["kind"] == "speed" and "chosen" not in r}
    acc_rows = {r["model"]: r for r in rows if r["kind"] == "accuracy"}
    old = (RESULTS / "pruning.md").read_text() if (RESULTS / "pruning.md").is_file() else ""
    lines = ["# Structured pruning: what it buys", ""]
    if sweeps:
        lines += ["## Speed with channel counts rounded for the int8 kernels (`round_to`)", ""]
        for r in sweeps:
            lines += _sweep_table(r)
    if speed_rows:
        old_formats = ("onnx", "openvino", "tflite")
        any_row = next(iter(speed_rows.values()))
        env = any_row["unpruned"]["environment"] or {}
        lines += [
            f"## Earlier: unrounded channel counts, each artefact timed once ({any_row['date']}, {env.get('cpu')}, "
            f"{any_row['unpruned']['threads'] or env.get('cores')} threads, batch 1, p50 ms of int8 artefacts; "
            "ONNX int8 then S8S8)",
            "",
            "| model | ratio | MACs | MACs kept | params | ONNX int8 | OpenVINO int8 | TFLite int8 | int8 speed-up "
            "ONNX / OpenVINO / TFLite |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in speed_rows.values():
            for label in ("unpruned", "pruned"):
                d = r[label]
                cells = [_ms(d, f) for f in old_formats]
                speed_cell = " / ".join(f"{r['speedup_int8'].get(f, float('nan')):.2f}x" for f in old_formats) \
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
    if NOTES in old:  # the findings written by hand below the marker
        lines += [NOTES + old.split(NOTES, 1)[1].rstrip("\n"), ""]
    (RESULTS / "pruning.md").write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    mode, rest = argv[0], argv[1:]
    opts = dict(a[2:].split("=", 1) for a in rest if a.startswith("--"))
    args = [a for a in rest if not a.startswith("--")]
    ratio = float(opts.get("ratio", 0.3))
    work = Path(opts["work"]) if "work" in opts else Path(tempfile.mkdtemp(prefix="edgekit-prune-bench-"))
    round_tos = tuple(None if v == "auto" else int(v) for v in opts.get("round-to", "auto").split(","))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for item in args or (["resnet50", "googlenet", "vgg16", "lenet5"] if mode == "speed" else []):
        if mode == "speed":
            row = speed(item, ratio, work, round_tos, int(opts.get("rounds", 3)), float(opts.get("seconds", 2)))
        else:
            lr = float(opts["finetune-lr"]) if "finetune-lr" in opts else None
            row = accuracy(item, ratio, int(opts.get("finetune", 8)), work, lr)
        row["date"] = stamp
        print(json.dumps({k: v for k, v in row.items() if not k.startswith(("unpruned", "pruned"))}), flush=True)
        with open(RESULTS / "pruning.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    write_md()


if __name__ == "__main__":
    main(sys.argv[1:])
