"""Accuracy on real data: a user's own model on their own digits, and (optionally) CIFAR-10.

    .venv/bin/python benchmarks/accuracy_real.py [mnist] [search] [--budgets 0.3,0.1] [--cifar [MODEL ...]]

Drives the edgekit CLI in subprocesses, as a user would, and records every number in
benchmarks/results/accuracy_real.md (tables) and accuracy_real.jsonl (raw, with the commands and
their output). Parts:

- ``mnist`` (a): the user's LeNet-style ``benchmarks/user_model/lenet_user.py:Net``, trained with
  plain PyTorch by ``benchmarks/user_model/train_plain.py`` (run it first) on the train part of
  ../shared/data/mnist. ``edgekit export ... --int8 --calib MNIST --resize squash --mean 0.1307
  --std 0.3081 --grayscale``, then ``edgekit eval RUN --dataset MNIST --split test --json`` (no
  preprocessing repeated: eval must reuse what export recorded). Goals: fp32 through edgekit within
  0.1 point of plain PyTorch with the same preprocessing; int8 within 0.3 point in every format.
- ``search`` (b): the same export without --calib (the default calibration: photo crops with the
  model's declared preprocessing), with ``--max-drop 0.3 --eval MNIST``: per format the drop of
  the default calibration, what the search tried, and the final drop (manifest artefact "search").
  Run for each of ``--budgets`` (default 0.3, the goal, and 0.1, which makes the search work when
  the default already meets 0.3).
- ``--cifar`` (c, long): ``edgekit train`` resnet50 (width 0.25), googlenet and vgg16 (width
  0.125) on ../shared/data/cifar10 at 32x32, export int8 calibrated on cifar10/train, eval on the
  test split: fp32 top-1 and int8 drop per format.

Subprocesses run with OMP/MKL threads 1 so that the benchmark shares the machine politely; the
numbers do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
USER = HERE / "user_model"
EDGEKIT = str(Path(sys.executable).with_name("edgekit"))
MNIST = os.path.relpath(ROOT.parent / "shared" / "data" / "mnist", ROOT)
CIFAR = os.path.relpath(ROOT.parent / "shared" / "data" / "cifar10", ROOT)
FORMATS = ("onnx", "tflite", "openvino")
FP32_GOAL_PP, INT8_GOAL_PP = 0.1, 0.3
USER_PRE = ["--resize", "squash", "--mean", "0.1307", "--std", "0.3081", "--grayscale"]
CIFAR_MODELS = {"resnet50": 0.25, "googlenet": 0.125, "vgg16": 0.125}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def sh(args: list[str], log: list[dict], timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run one command from the repository root; record it, its exit code, time and output tail."""
    start = time.perf_counter()
    print("$", " ".join(args), flush=True)
    proc = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    seconds = round(time.perf_counter() - start, 1)
    log.append({"command": " ".join(args).replace(EDGEKIT, "edgekit"), "rc": proc.returncode,
                "seconds": seconds, "stdout_tail": proc.stdout[-3000:], "stderr_tail": proc.stderr[-3000:]})
    print(f"  rc {proc.returncode} in {seconds} s", flush=True)
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", flush=True)
    return proc


def parse_json(stdout: str) -> dict:
    """The JSON document that `--json` printed (progress lines may come before it)."""
    start = stdout.find("\n{") + 1 if not stdout.startswith("{") else 0
    return json.JSONDecoder().raw_decode(stdout[start:])[0]


def export_help() -> str:
    return subprocess.run([EDGEKIT, "export", "--help"], capture_output=True, text=True, env=ENV).stdout


def missing_options(parts: list[str], cifar: bool) -> list[str]:
    """Options the chosen parts need that `edgekit export --help` does not list."""
    need = {"--resize"} if parts or cifar else set()
    if "search" in parts:
        need.add("--max-drop")
    text = export_help()
    return sorted(o for o in need if o not in text)


def rows_of(result: dict) -> dict:
    """{(format, precision): row} of an eval result."""
    return {(r["format"], r["precision"]): r for r in result["results"]}


def manifest_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


# ---------------------------------------------------------------- part (a): the user's model, MNIST


def plain_reference() -> dict:
    path = USER / "lenet_user.json"
    if not (USER / "lenet_user.pt").is_file() or not path.is_file():
        sys.exit("run benchmarks/user_model/train_plain.py first (it writes lenet_user.pt/.json)")
    return json.loads(path.read_text())


def user_export_args(run: Path, *extra: str) -> list[str]:
    return [EDGEKIT, "export", "benchmarks/user_model/lenet_user.py:Net", "--input-shape", "1,1,32,32",
            "--weights", "benchmarks/user_model/lenet_user.pt", "--int8", *USER_PRE, "--out", str(run), *extra]


def plain_on(samples: int, plain: dict) -> tuple[str, float]:
    """The plain-PyTorch number on the same digits edgekit scored, told apart by their count."""
    if samples == plain["split"]["test"]:
        return "test split", plain["top1"]["test"]
    if samples == sum(plain["split"].values()):
        return "all 10,000", plain["top1_all_10k"]
    return f"{samples} samples (no plain number matches)", float("nan")


def preprocessing_check(run_dir: Path, source: str, result: dict) -> dict:
    """Diagnostic, in-process: edgekit's eval inputs against train_plain.py's Pillow pipeline on the
    same digits, and the plain model's predictions on both."""
    sys.path.insert(0, str(USER))
    import torch
    from train_plain import edgekit_split, preprocess, read_idx

    from edgekit.data.datasets import load_dataset
    from edgekit.export.plan import plan_from_manifest
    from edgekit.models.resolve import load_planned_model
    from edgekit.models.spec import Preprocessing

    torch.set_num_threads(1)
    mnist = ROOT / MNIST
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    pos = edgekit_split(labels)["test"] if result["samples"] != len(labels) else np.arange(len(labels))
    model = load_planned_model(plan_from_manifest(manifest_of(run_dir), run_dir))
    pre = Preprocessing.from_dict(result["preprocessing"])
    data = load_dataset(source, model, split=result["split"], preprocessing=pre)
    if len(data) != len(pos) or not np.array_equal(data.y, labels[pos]):
        return {"same_digits": False, "edgekit_samples": len(data), "plain_samples": int(len(pos))}
    mine = preprocess(images[pos])
    with torch.no_grad():
        model.module.eval()
        a = model.module(torch.from_numpy(data.x)).argmax(1).numpy()
        b = model.module(torch.from_numpy(mine)).argmax(1).numpy()
    return {"same_digits": True, "max_abs_input_diff": float(np.abs(data.x - mine).max()),
            "mean_abs_input_diff": float(np.abs(data.x - mine).mean()),
            "predictions_differ": int((a != b).sum()),
            "top1_edgekit_inputs": float((a == data.y).mean()), "top1_plain_inputs": float((b == data.y).mean())}


def neutral_copy(tmp: Path) -> Path:
    """The same IDX files under a prefix that names no split ("mnist-"), so edgekit splits them
    80/10/10 as one unsplit set of the user's."""
    d = tmp / "mnist-unsplit"
    d.mkdir()
    for kind in ("images-idx3", "labels-idx1"):
        (d / f"mnist-{kind}-ubyte.gz").symlink_to((ROOT / MNIST / f"t10k-{kind}-ubyte.gz").resolve())
    return d


def int8_summary(rows: dict, goal: float) -> dict:
    out = {}
    for f in FORMATS:
        r = rows.get((f, "int8"))
        out[f] = None if r is None else {"top1": r["top1"], "drop_pp": r["drop_pp"],
                                         "agreement": r.get("agreement"),
                                         "ok": r["drop_pp"] <= goal + 1e-9}
    return out


def eval_block(run: Path, dataset: str, plain: dict, log: list[dict], label: str) -> dict:
    proc = sh([EDGEKIT, "eval", str(run), "--dataset", dataset, "--split", "test", "--json"], log)
    if proc.returncode != 0:
        return {"label": label, "failed": True}
    result = parse_json(proc.stdout)
    rows = rows_of(result)
    scope, plain_top1 = plain_on(result["samples"], plain)
    fp32 = {f: rows[(f, "fp32")]["top1"] for f in ("pytorch", *FORMATS) if (f, "fp32") in rows}
    diff = {f: round(100 * (v - plain_top1), 3) for f, v in fp32.items()}
    block = {
        "label": label, "dataset": result["dataset"], "split": result["split"], "samples": result["samples"],
        "preprocessing": result["preprocessing"], "plain_scope": scope, "plain_top1": plain_top1,
        "fp32": fp32, "fp32_vs_plain_pp": diff,
        "fp32_ok": all(abs(d) <= FP32_GOAL_PP + 1e-9 for d in diff.values()),
        "int8": int8_summary(rows, INT8_GOAL_PP),
        "inference_precision": {f"{r['format']} {r['precision']}": r.get("inference_precision")
                                for r in result["results"] if r.get("inference_precision")},
    }
    block["int8_ok"] = all(v is not None and v["ok"] for v in block["int8"].values())
    try:
        block["preprocessing_check"] = preprocessing_check(run, dataset, result)
    except Exception as exc:  # a diagnostic only; the CLI numbers above stand without it
        block["preprocessing_check"] = {"error": f"{type(exc).__name__}: {exc}"}
    return block


def part_mnist(tmp: Path) -> dict:
    plain = plain_reference()
    log: list[dict] = []
    row = {"part": "mnist", "date": now(), "plain": {k: plain[k] for k in ("split", "top1", "top1_all_10k")},
           "commands": log}
    run = tmp / "mnist-run"
    proc = sh(user_export_args(run, "--calib", MNIST, "--calib-size", "128"), log)
    if proc.returncode != 0 or not (run / "manifest.json").is_file():
        row["failed"] = "export"
        return row
    manifest = manifest_of(run)
    row["calibration"] = manifest.get("calibration")
    row["model_preprocessing"] = manifest["model"].get("preprocessing")
    row["schemes"] = {a["format"]: a.get("scheme", {}).get("type") for a in manifest["artefacts"]
                      if a["precision"] == "int8" and a.get("status") == "ok"}
    row["verify"] = {f"{a['format']} {a['precision']}": a.get("verify") for a in manifest["artefacts"]}
    row["tools"] = manifest.get("tools")
    row["evals"] = [eval_block(run, MNIST, plain, log, f"--dataset {MNIST} --split test")]
    if row["evals"][0].get("samples") == sum(plain["split"].values()):
        # The t10k- prefix names the files' split: edgekit scored all 10,000 digits, training ones
        # included. Score the held-out 1,004 too, from the same files under a neutral prefix.
        row["evals"].append(eval_block(run, str(neutral_copy(tmp)), plain, log,
                                       "same files as mnist-*-ubyte.gz (no split in the name), --split test"))
    return row


# ---------------------------------------------------------------- part (b): default calibration + --max-drop


def part_search(tmp: Path, budget: float = INT8_GOAL_PP) -> dict:
    plain = plain_reference()
    log: list[dict] = []
    row = {"part": f"search:{budget:g}", "budget": budget, "date": now(), "commands": log}
    run = tmp / f"search-run-{budget:g}"
    proc = sh(user_export_args(run, "--calib-size", "128", "--max-drop", f"{budget:g}", "--eval", MNIST), log)
    row["rc"] = proc.returncode
    if not (run / "manifest.json").is_file():
        row["failed"] = "export"
        return row
    manifest = manifest_of(run)
    row["calibration"] = manifest.get("calibration")
    row["eval"] = {k: manifest.get("eval", {}).get(k) for k in ("dataset", "split", "samples", "preprocessing")}
    rows = rows_of(manifest["eval"]) if manifest.get("eval") else {}
    if ("pytorch", "fp32") in rows:
        row["fp32"] = rows[("pytorch", "fp32")]["top1"]
        row["plain_scope"], row["plain_top1"] = plain_on(manifest["eval"]["samples"], plain)
    row["artefacts"] = {}
    fp32 = {a["format"]: a for a in manifest["artefacts"] if a["precision"] == "fp32"}
    for a in manifest["artefacts"]:
        if a["precision"] != "int8":
            continue
        f32 = fp32.get(a["format"], {})
        row["artefacts"][a["format"]] = {
            "status": a.get("status"), "scheme": a.get("scheme"), "calibration": a.get("calibration"),
            "eval": a.get("eval"), "search": a.get("search"), "error": a.get("error"),
            # an "int8" artefact that is the fp32 one (every layer kept in float) must not pass unseen
            "bytes": a.get("bytes"), "fp32_bytes": f32.get("bytes"),
            "same_sha256_as_fp32": bool(a.get("sha256")) and a.get("sha256") == f32.get("sha256"),
        }
    return row


# ---------------------------------------------------------------- part (c): CIFAR-10 (long)


def part_cifar(tmp: Path, model: str, minutes: float) -> dict:
    log: list[dict] = []
    width = CIFAR_MODELS[model]
    row = {"part": f"cifar:{model}", "date": now(), "model": model, "width": width, "commands": log}
    ckpt, run = tmp / f"{model}-cifar.pt", tmp / f"{model}-cifar-run"
    proc = sh([EDGEKIT, "train", model, "--dataset", CIFAR, "--input-size", "32", "--width", str(width),
               "--resize", "squash", "--max-minutes", str(minutes), "--out", str(ckpt)], log, timeout=4 * 3600)
    if proc.returncode != 0:
        row["failed"] = "train"
        return row
    proc = sh([EDGEKIT, "export", str(ckpt), "--int8", "--calib", f"{CIFAR}/train", "--calib-size", "128",
               "--out", str(run)], log)
    if proc.returncode != 0 and not (run / "manifest.json").is_file():
        row["failed"] = "export"
        return row
    proc = sh([EDGEKIT, "eval", str(run), "--dataset", CIFAR, "--split", "test", "--json"], log)
    if proc.returncode != 0:
        row["failed"] = "eval"
        return row
    result = parse_json(proc.stdout)
    rows = rows_of(result)
    row.update(samples=result["samples"], preprocessing=result["preprocessing"],
               fp32=rows[("pytorch", "fp32")]["top1"], int8=int8_summary(rows, 1.0),
               fp32_artefacts={f: rows[(f, "fp32")]["top1"] for f in FORMATS if (f, "fp32") in rows})
    return row


# ---------------------------------------------------------------- the tables


def pct(v) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.2f}%"


def mnist_lines(r: dict) -> list[str]:
    p = r["plain"]
    lines = [f"### (a) user's model, calibrated on the user's digits ({r['date']})", "",
             f"Plain PyTorch (train_plain.py): test split {pct(p['top1']['test'])} of {p['split']['test']}, "
             f"all 10,000 {pct(p['top1_all_10k'])} (trained on {p['split']['train']}, best epoch on "
             f"{p['split']['val']} val digits).", ""]
    if r.get("failed"):
        c = r["commands"][-1]
        return lines + [f"**{r['failed']} failed** (rc {c['rc']}): `{c['command']}`", "", "```",
                        (c["stderr_tail"] or c["stdout_tail"])[-1500:].strip(), "```", ""]
    cal = r.get("calibration") or {}
    lines += [f"Calibration: {cal.get('source')}, {cal.get('samples')} samples. int8 schemes: "
              + ", ".join(f"{k} {v}" for k, v in (r.get("schemes") or {}).items()), "",
              "| scored on | samples | plain PyTorch | edgekit PyTorch fp32 (diff) | ONNX fp32 | TFLite fp32 "
              "| OpenVINO fp32 | fp32 goal | ONNX int8 (drop) | TFLite int8 (drop) | OpenVINO int8 (drop) "
              "| int8 goal | inputs max abs diff / predictions differing |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in r.get("evals", []):
        if e.get("failed"):
            lines.append(f"| {e['label']} | eval failed, see jsonl |" + " |" * 11)
            continue
        d = e["fp32_vs_plain_pp"]
        fp = [f"{pct(e['fp32'].get(f))}" for f in FORMATS]
        i8 = [("failed" if e["int8"][f] is None else f"{pct(e['int8'][f]['top1'])} ({e['int8'][f]['drop_pp']:+.2f})")
              for f in FORMATS]
        chk = e.get("preprocessing_check", {})
        chk_s = (f"{chk['max_abs_input_diff']:.2g} / {chk['predictions_differ']}" if "max_abs_input_diff" in chk
                 else json.dumps(chk))
        lines.append(f"| {e['label']} | {e['samples']} | {pct(e['plain_top1'])} ({e['plain_scope']}) | "
                     f"{pct(e['fp32'].get('pytorch'))} ({d.get('pytorch', float('nan')):+.2f}) | {' | '.join(fp)} | "
                     f"{'met' if e['fp32_ok'] else 'MISSED'} (<= {FP32_GOAL_PP}) | {' | '.join(i8)} | "
                     f"{'met' if e['int8_ok'] else 'MISSED'} (<= {INT8_GOAL_PP}) | {chk_s} |")
    return lines + [""]


def describe_attempt(a: dict) -> str:
    st = a.get("settings", {})
    what = [a.get("stage", "?"), str(st.get("method", "default")), f"{st.get('calibration_samples')} calib"]
    if st.get("exclude"):
        what.append(f"{len(st['exclude'])} in float")
    drop = f"{a['drop_pp']:+.2f}" if a.get("status") == "ok" else f"failed ({a.get('error', '')[:80]})"
    return f"#{a.get('index')} {' / '.join(what)}: {drop}"


def size_cell(a: dict) -> str:
    if not a.get("bytes") or not a.get("fp32_bytes"):
        return "n/a"
    cell = f"{a['bytes'] / 1e3:.0f} / {a['fp32_bytes'] / 1e3:.0f} kB"
    return cell + (" (**identical to fp32**)" if a.get("same_sha256_as_fp32") else "")


def search_lines(r: dict) -> list[str]:
    budget = r.get("budget", INT8_GOAL_PP)
    lines = [f"### (b) default calibration (photo crops) with --max-drop {budget} ({r['date']})", ""]
    c = r["commands"][0]
    lines += [f"`{c['command']}` -> rc {c['rc']} in {c['seconds']} s", ""]
    if r.get("failed"):
        return lines + ["```", (c["stderr_tail"] or c["stdout_tail"])[-1500:].strip(), "```", ""]
    ev = r.get("eval") or {}
    cal = r.get("calibration") or {}
    lines += [f"Calibration: {cal.get('source')}, {cal.get('samples')} samples. Final artefacts scored on "
              f"{ev.get('dataset')} {ev.get('split')} ({ev.get('samples')} samples); PyTorch fp32 "
              f"{pct(r.get('fp32'))}, plain PyTorch {pct(r.get('plain_top1'))} ({r.get('plain_scope')}).", "",
              "| format | status | search: default drop on its held-out set | attempts (stage / method / calib "
              "/ layers in float: drop) | kept | met | final int8 top-1 on test | final drop on test | goal "
              "| int8 / fp32 bytes |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in FORMATS:
        a = r["artefacts"].get(f)
        if a is None:
            lines.append(f"| {f} | absent | | | | | | | | |")
            continue
        e, s = a.get("eval") or {}, a.get("search")
        drop = e.get("drop_pp")
        ok = "met" if drop is not None and drop <= budget + 1e-9 else "MISSED"
        if s:
            att = s.get("attempts", [])
            held = s.get("held_out", {})
            first = f"{att[0]['drop_pp']:+.2f} ({held.get('split')}, {held.get('samples')})" if att else "n/a"
            tried = "<br>".join(describe_attempt(x) for x in att)
            kept, met = f"#{s.get('chosen')}", ("yes" if s.get("met") else f"no: {s.get('reason', '')}")
        else:
            first, tried, kept, met = "no search record", "", "", ""
        lines.append(f"| {f} | {a['status']} | {first} | {tried} | {kept} | {met} | {pct(e.get('top1'))} | "
                     f"{'n/a' if drop is None else f'{drop:+.2f}'} | {ok} (<= {budget}) | {size_cell(a)} |")
    tail = (c["stderr_tail"] + "\n" + c["stdout_tail"]).strip()
    return lines + ["", "What the export printed (tail):", "", "```", tail[-2500:], "```", ""]


def cifar_lines(rows: list[dict]) -> list[str]:
    lines = ["### (c) CIFAR-10, zoo models trained here (32x32, squash), int8 calibrated on cifar10/train", "",
             "| date | model | width | test samples | fp32 | ONNX int8 (drop) | TFLite int8 (drop) | "
             "OpenVINO int8 (drop) | train s (epochs run/planned) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        train_s = ""
        if r["commands"]:
            epochs = re.findall(r"^epoch (\d+)/(\d+) ", r["commands"][0]["stdout_tail"], re.M)
            cap = re.search(r"--max-minutes (\S+)", r["commands"][0]["command"])
            train_s = (f"{r['commands'][0]['seconds']}" + (f" ({epochs[-1][0]}/{epochs[-1][1]})" if epochs else "")
                       + (f", cap {cap[1]} min" if cap else ""))
        if r.get("failed"):
            lines.append(f"| {r['date']} | {r['model']} | {r['width']} | {r['failed']} failed, see jsonl | | | | | |")
            continue
        i8 = [("failed" if r["int8"][f] is None else f"{pct(r['int8'][f]['top1'])} ({r['int8'][f]['drop_pp']:+.2f})")
              for f in FORMATS]
        lines.append(f"| {r['date']} | {r['model']} | {r['width']} | {r['samples']} | {pct(r['fp32'])} | "
                     f"{' | '.join(i8)} | {train_s} |")
    return lines + [""]


def write_table(rows: list[dict]) -> None:
    latest: dict[str, dict] = {}
    for r in rows:
        latest[r["part"]] = r
    lines = ["# Accuracy on real data: the user's own model and data, and CIFAR-10", "",
             "Made by `benchmarks/accuracy_real.py` (raw numbers, commands and output in accuracy_real.jsonl). "
             "Drop = PyTorch fp32 minus int8 on the same samples, in percentage points (positive = lost). "
             f"Goals: fp32 through edgekit within {FP32_GOAL_PP} point of plain PyTorch; int8 within "
             f"{INT8_GOAL_PP} point in every format.", ""]
    if "mnist" in latest:
        lines += mnist_lines(latest["mnist"])
    for key in sorted((k for k in latest if k.startswith("search")), key=lambda k: -latest[k].get("budget", 0)):
        lines += search_lines(latest[key])
    cifar = [r for k, r in latest.items() if k.startswith("cifar:")]
    if cifar:
        lines += cifar_lines(cifar)
    (RESULTS / "accuracy_real.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("parts", nargs="*", help="mnist and/or search (default: both, unless --cifar)")
    ap.add_argument("--cifar", nargs="*", choices=list(CIFAR_MODELS), default=None,
                    help="also train and export on CIFAR-10 (long); default models: all three")
    ap.add_argument("--cifar-minutes", type=float, default=30.0, help="--max-minutes of each training")
    ap.add_argument("--budgets", type=lambda v: [float(b) for b in v.split(",")], default=[INT8_GOAL_PP, 0.1],
                    help="--max-drop budgets of the search part (default: 0.3 = the goal, and 0.1 to make "
                    "the search work)")
    ap.add_argument("--keep-runs", action="store_true", help="keep the run directories (printed)")
    args = ap.parse_args()
    parts = args.parts or ([] if args.cifar is not None else ["mnist", "search"])
    unknown = sorted(set(parts) - {"mnist", "search"})
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; known: mnist, search")
    missing = missing_options(parts, args.cifar is not None)
    if missing:
        ap.error(f"edgekit export lacks {', '.join(missing)} (not implemented yet?)")
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "accuracy_real.jsonl"
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-acc-real-"))
    jobs = [("mnist", part_mnist)] if "mnist" in parts else []
    if "search" in parts:
        jobs += [(f"search:{b:g}", lambda t, b=b: part_search(t, b)) for b in args.budgets]
    if args.cifar is not None:
        jobs += [(f"cifar:{m}", lambda t, m=m: part_cifar(t, m, args.cifar_minutes))
                 for m in (args.cifar or CIFAR_MODELS)]
    try:
        for name, job in jobs:
            print(f"== {name}", flush=True)
            row = job(tmp)
            with log.open("a") as f:
                f.write(json.dumps(row, default=str) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k not in ("commands", "tools", "verify")},
                             default=str)[:3000], flush=True)
            write_table([json.loads(line) for line in log.read_text().splitlines() if line.strip()])
    finally:
        if args.keep_runs:
            print(f"run directories kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
