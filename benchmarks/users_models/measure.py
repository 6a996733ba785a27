"""Users' own models through `edgekit export --int8 --eval`: what each format really gives them.

    .venv/bin/python benchmarks/users_models/measure.py --label after [--only rows_lstm,gru] \
        [--to rows_lstm=onnx,openvino] [--train]

For each model of this folder (trained by train.py into benchmarks/_work/users_models/; --train,
or a missing file, runs train.py first) it runs, one model at a time, as a user would:

    edgekit export FILE.py:Class --weights W.pt --input-shape ... --int8 \
        --calib DATA.npz --eval DATA.npz --out benchmarks/_work/users_models/runs/LABEL/NAME

(an ONNX file instead of FILE.py:Class for the three ONNX models), and records per format:
fp32 parity (the export's verify verdict, and eval top-1 against plain PyTorch on the same 2,000
held-out digits), the int8 drop in points against plain PyTorch, the int8 weight share when the
manifest records one (n/a otherwise), the size ratio int8/fp32, the export line's verdict
(ok / partly int8 / FAILED) and the command's exit code, and whether the issue-22 goal is met.

The table goes into benchmarks/results/users_models.md as the section named by --label (replaced
when it exists, others kept); the raw records into benchmarks/results/users_models.jsonl.
EDGEKIT_EXPORT_JOBS=1 and one model at a time keep the run to about one core.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "_work" / "users_models"
RESULTS = ROOT / "benchmarks" / "results"
FORMATS = ("onnx", "openvino", "tflite", "executorch")
RECURRENT_GOAL = "int8 file <= 0.6 of fp32, weight share recorded, drop <= 1 pt; or FAILED / partly int8"
ONNX_GOAL = "onnx and openvino int8 within 0.5 pt"


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    model: str  # FILE.py:Class or an ONNX file, relative to the repo root
    data: str  # the .npz under WORK/data
    input_shape: tuple[str, ...] = ()
    batch_axis: int | None = None
    weights: str | None = None  # under WORK/weights
    plain: tuple[str, str] = ("", "")  # (file, class) of the plain-PyTorch reference
    seq_first: bool = False
    binary: bool = False
    goal: str = RECURRENT_GOAL
    extra: tuple[str, ...] = field(default=())


U = "benchmarks/users_models"
ONNX_DIR = "benchmarks/_work/users_models/onnx"
CASES = [
    Case("rows_lstm", "seq-first 2-layer LSTM(28, 128), input (28, N, 28)", f"{U}/rows_lstm.py:RowLSTM",
         "rows.npz", ("28,1,28",), 1, "rows_lstm.pt", ("rows_lstm.py", "RowLSTM"), seq_first=True),
    Case("bigru_binary", "bidirectional GRU(28, 64), one logit (N,)", f"{U}/bigru_binary.py:BiGRUBinary",
         "binary.npz", ("1,28,28",), None, "bigru_binary.pt", ("bigru_binary.py", "BiGRUBinary"),
         binary=True),
    Case("bigru_2col", "the same bi-GRU wrapped by hand to (N, 2) logits (issue 22's workaround)",
         f"{U}/bigru_wrapped.py:BiGRUTwoColumns", "binary.npz", ("1,28,28",), None, "bigru_binary.pt",
         ("bigru_wrapped.py", "BiGRUTwoColumns")),
    Case("gru", "GRU(28, 64) batch-first", f"{U}/small_rnns.py:GRUNet", "rows.npz", ("1,28,28",), None,
         "gru.pt", ("small_rnns.py", "GRUNet")),
    Case("rnn", "nn.RNN(28, 64) tanh batch-first", f"{U}/small_rnns.py:RNNNet", "rows.npz", ("1,28,28",),
         None, "rnn.pt", ("small_rnns.py", "RNNNet")),
    Case("cnn_lstm", "2 conv + LSTM(224, 64) over rows", f"{U}/cnn_lstm.py:CNNLSTM", "images.npz",
         ("1,1,28,28",), None, "cnn_lstm.pt", ("cnn_lstm.py", "CNNLSTM")),
    Case("onnx_opset11", "LeNet-like CNN, ONNX opset 11", f"{ONNX_DIR}/lenet_opset11.onnx", "images.npz",
         plain=("lenet.py", "Net"), goal=ONNX_GOAL),
    Case("onnx_opset9", "LeNet-like CNN, ONNX opset 9", f"{ONNX_DIR}/lenet_opset9.onnx", "images.npz",
         plain=("lenet.py", "Net"), goal=ONNX_GOAL),
    Case("onnx_raw255", "LeNet-like CNN taking 0-255 pixels, ONNX opset 13", f"{ONNX_DIR}/lenet_raw255.onnx",
         "images_raw.npz", plain=("lenet.py", "RawNet"), goal=ONNX_GOAL),
]
PLAIN_WEIGHTS = {"Net": "lenet.pt", "RawNet": "lenet.pt"}


# --- plain PyTorch on the held-out digits ---------------------------------------------------------

def plain_top1(case: Case, work: Path) -> float:
    """Top-1 (binary: sigmoid >= 0.5) of the model in plain PyTorch on x_test of its .npz."""
    import torch

    file, cls = case.plain
    spec = importlib.util.spec_from_file_location(f"plain_{case.name}", HERE / file)
    module = importlib.util.module_from_spec(spec)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # a model file may import its neighbours, as edgekit allows
    spec.loader.exec_module(module)
    model = getattr(module, cls)()
    weights = case.weights or PLAIN_WEIGHTS[cls]
    model.load_state_dict(torch.load(work / "weights" / weights, weights_only=True))
    model.eval()
    with np.load(work / "data" / case.data) as z:
        x, y = z["x_test"], z["y_test"]
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), 500):
            t = torch.from_numpy(np.ascontiguousarray(x[i:i + 500]))
            outs.append(model(t.transpose(0, 1) if case.seq_first else t).numpy())
    out = np.concatenate(outs)
    pred = (out >= 0).astype(np.int64) if case.binary else out.argmax(1)
    return float((pred == y).mean())


# --- one export --------------------------------------------------------------------------------

def export_command(case: Case, work: Path, out: Path, to: str | None) -> list[str]:
    data = str((work / "data" / case.data).relative_to(ROOT))
    cmd = [sys.executable, "-m", "edgekit", "export", case.model]
    if case.weights:
        cmd += ["--weights", str((work / "weights" / case.weights).relative_to(ROOT))]
    for shape in case.input_shape:
        cmd += ["--input-shape", shape]
    if case.batch_axis is not None:
        cmd += ["--batch-axis", str(case.batch_axis)]
    if to:
        cmd += ["--to", to]
    return [*cmd, "--int8", "--calib", data, "--eval", data, *case.extra, "--out", str(out.relative_to(ROOT))]


LINE = re.compile(r"^(?P<status>.*?)\s*\b(?P<fmt>onnx|openvino|tflite|executorch)\s+(?P<rest>.*)$")


def export_lines(output: str) -> dict[tuple[str, str], str]:
    """{(format, "fp32"|"int8"): the export's line about it}, from the printed output."""
    found = {}
    for line in output.splitlines():
        m = LINE.match(line.strip())
        if not m or len(m["status"].split()) > 2 or (m["status"] and not m["status"][0].isalpha()):
            continue
        precision = "fp32" if m["rest"].startswith("fp32") else "int8" if "int8" in m["rest"][:30] else None
        if precision and (m["fmt"], precision) not in found:
            found[(m["fmt"], precision)] = line.strip()
    return found


def verdict(line: str | None, art: dict | None) -> str:
    if line is None:
        return "FAILED" if art and art.get("status") != "ok" else "(no line)"
    if line.startswith("FAILED"):
        return "FAILED"
    if "partly int8" in line:
        return "partly int8"
    return line.split()[0]


def int8_share(art: dict | None) -> float | None:
    """The share of weights stored in 8 bits the manifest records for an int8 artefact, if any."""
    if not art:
        return None
    keys = ("int8_share", "weights_int8", "int8_weight_share", "weight_int8_share", "int8_weights_share")

    def as_share(v):
        if isinstance(v, dict):
            for k in ("weights", "weight_bytes", "share", "bytes", "fraction"):
                if k in v:
                    return as_share(v[k])
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v / 100 if v > 1 else float(v)
        return None

    stack = [art]
    while stack:
        d = stack.pop()
        for k, v in d.items():
            if k in keys or ("int8" in k and "share" in k):
                share = as_share(v)
                if share is not None:
                    return share
            if isinstance(v, dict):
                stack.append(v)
    return None


def score(row: dict | None) -> float | None:
    """An eval row's top-1, or its accuracy where a binary head is scored so."""
    if not row:
        return None
    return row.get("top1", row.get("accuracy"))


def file_bytes(art: dict | None) -> int | None:
    if not art or art.get("status") != "ok":
        return None
    files = art.get("files") or []
    return sum(f["bytes"] for f in files) if files else art.get("bytes")


def shorten(text: str, width: int = 110) -> str:
    """A failure line without onnxruntime's boilerplate and folder names, cut to ``width``."""
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : ", "", text)
    text = re.sub(r"Load model from \S+ failed:", "", text)
    text = re.sub(r"\S*/", "", text).replace("|", "/")  # a path's folders; its file name stays
    return text if len(text) <= width else text[: width - 1] + "…"


def failed_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("FAILED")]


def first_error(output: str) -> str:
    """The line a user would read first when something went wrong (edgekit's own lines only)."""
    for line in output.splitlines():
        s = line.strip()
        if s.startswith(("FAILED", "error", "Error", "edgekit:")) or re.match(r"^[A-Za-z]*Error\b", s):
            return s
    return ""


TRAILER = re.compile(r"^\[measure\] exit (?P<rc>\S+) in (?P<s>[0-9.]+) s$", re.M)


def run_export(case: Case, work: Path, label: str, to: str | None, timeout: int) -> tuple:
    """Run the export; (exit code, printed output, seconds, command). The log keeps all of it."""
    out = work / "runs" / label / case.name
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = export_command(case, work, out, to)
    env = {**os.environ, "EDGEKIT_EXPORT_JOBS": "1", "PYTHONPATH": str(ROOT)}
    print(f"[{case.name}] {' '.join(cmd[2:])}", flush=True)
    began = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, output = "timeout", f"{exc.stdout or ''}{exc.stderr or ''}"
        output = output.decode() if isinstance(output, bytes) else output
    seconds = time.perf_counter() - began
    (work / "logs" / label).mkdir(parents=True, exist_ok=True)
    (work / "logs" / label / f"{case.name}.log").write_text(
        " ".join(cmd) + "\n\n" + output + f"\n[measure] exit {rc} in {seconds:.1f} s\n")
    return rc, output, seconds, cmd


def reuse_export(case: Case, work: Path, label: str) -> tuple:
    """What an earlier run of this label printed, from its log (--reuse: no export is run)."""
    log = work / "logs" / label / f"{case.name}.log"
    if not log.exists():
        sys.exit(f"--reuse: no log {log}; run without --reuse first")
    text = log.read_text()
    first, _, output = text.partition("\n\n")
    m = TRAILER.search(output)
    if m is None:
        sys.exit(f"--reuse: {log} has no '[measure] exit N in S s' line")
    rc = int(m["rc"]) if m["rc"].lstrip("-").isdigit() else m["rc"]
    return rc, output[: m.start()], float(m["s"]), first.split()


def measure(case: Case, work: Path, label: str, to: str | None, timeout: int, reuse: bool = False) -> dict:
    out = work / "runs" / label / case.name
    if reuse:
        rc, output, seconds, cmd = reuse_export(case, work, label)
    else:
        rc, output, seconds, cmd = run_export(case, work, label, to, timeout)
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    arts = {(a["format"], a["precision"]): a for a in manifest.get("artefacts", [])}
    evals = {(r["format"], r["precision"]): r for r in (manifest.get("eval") or {}).get("results", [])}
    lines = export_lines(output)
    ref = next((r for (f, _), r in evals.items() if f not in FORMATS), None)
    rec = {"model": case.name, "what": case.what, "command": "edgekit " + " ".join(cmd[3:]),
           "exit": rc, "seconds": round(seconds, 1), "plain_top1": plain_top1(case, work),
           "reference_row": ref and {"label": ref.get("label", ref["format"]), "top1": score(ref)},
           "error": first_error(output) if rc != 0 or not evals else "", "failed": failed_lines(output),
           "goal": case.goal, "formats": []}
    formats = [f for f in FORMATS if any(k[0] == f for k in arts) or any(k[0] == f for k in lines)]
    for fmt in formats:
        fp, q = arts.get((fmt, "fp32")), arts.get((fmt, "int8"))
        efp, eq = evals.get((fmt, "fp32")), evals.get((fmt, "int8"))
        fb, qb = file_bytes(fp), file_bytes(q)
        rec["formats"].append({
            "format": fmt,
            "fp32_verdict": verdict(lines.get((fmt, "fp32")), fp),
            "fp32_verify": fp and fp.get("verify"),
            "fp32_top1": score(efp),
            "int8_verdict": verdict(lines.get((fmt, "int8")), q),
            "int8_line": lines.get((fmt, "int8")) or (q and q.get("error")) or "",
            "int8_scheme": q and q.get("scheme"),
            "int8_verify": q and q.get("verify"),
            "int8_top1": score(eq),
            "int8_share": int8_share(q),
            "fp32_bytes": fb, "int8_bytes": qb,
        })
    return rec


# --- the table and the goal ----------------------------------------------------------------------

def pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def goal_met(rec: dict, f: dict) -> str:
    drop = None if f["int8_top1"] is None else 100 * (rec["plain_top1"] - f["int8_top1"])
    ratio = f["int8_bytes"] / f["fp32_bytes"] if f["int8_bytes"] and f["fp32_bytes"] else None
    v = f["int8_verdict"]
    if rec["goal"] == ONNX_GOAL:
        if f["format"] not in ("onnx", "openvino"):
            return ""
        return "yes" if v == "ok" and drop is not None and drop <= 0.5 else "no"
    if v in ("FAILED", "partly int8"):
        return "yes (says so)"
    sqnr = (f["int8_verify"] or {}).get("sqnr_db")
    why = []
    if ratio is None or ratio > 0.6:
        why.append("size")
    if f["int8_share"] is None:
        why.append("no share")
    if drop is None or drop > 1:
        why.append("drop")
    if v == "ok" and sqnr is not None and sqnr < 10:
        why.append("ok at SQNR<10")
    return "yes" if not why else "no: " + ", ".join(why)


def row(rec: dict, f: dict) -> list[str]:
    vf = f["fp32_verify"] or {}
    fp = f["fp32_verdict"]
    if vf.get("max_abs_diff") is not None:
        fp += f" ({vf['max_abs_diff']:.1e})"
    fp_top = "—" if f["fp32_top1"] is None else \
        f"{pct(f['fp32_top1'])} ({100 * (f['fp32_top1'] - rec['plain_top1']):+.2f})"
    v = f["int8_verdict"]
    if v == "FAILED" and f["int8_line"]:
        v += ": " + shorten(f["int8_line"].split(":", 1)[-1].strip(), 80)
    vq = f["int8_verify"] or {}
    agree = vq.get("top1_agreement", vq.get("agreement"))
    sqnr = vq.get("sqnr_db")
    ver = "—" if agree is None else \
        f"{100 * agree:.1f}% / {'—' if sqnr is None else f'{sqnr:.1f}'} dB (n={vq.get('samples')})"
    drop = "—" if f["int8_top1"] is None else f"{100 * (rec['plain_top1'] - f['int8_top1']):+.2f}"
    share = "n/a" if f["int8_share"] is None else f"{100 * f['int8_share']:.0f}%"
    ratio = "—" if not (f["int8_bytes"] and f["fp32_bytes"]) else \
        f"{f['int8_bytes'] / f['fp32_bytes']:.2f} ({f['int8_bytes'] / 1e6:.2f}/{f['fp32_bytes'] / 1e6:.2f} MB)"
    scheme = f["int8_scheme"] or {}
    sch = "; ".join(str(scheme[k]) for k in ("type", "weights") if scheme.get(k))
    return [rec["model"], f["format"], fp, fp_top, v, sch or "—", ver, pct(f["int8_top1"]), drop, share, ratio,
            str(rec["exit"]), goal_met(rec, f)]


HEAD = ["model", "format", "fp32 verify (max diff)", "fp32 top-1 (vs plain)", "int8 export line",
        "int8 scheme (manifest)", "int8 verify agreement / SQNR", "int8 top-1", "int8 drop (pp)",
        "int8 weight share", "size int8/fp32", "exit", "goal met"]


def section(label: str, recs: list[dict], note: str) -> str:
    out = [f"<!-- section: {label} -->", f"## {label}", "", note, ""]
    out += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for rec in recs:
        if not rec["formats"]:
            out.append("| " + " | ".join([rec["model"], "(none)", "—", "—", f"FAILED: {shorten(rec['error'], 90)}", "—",
                                           "—", "—", "—", "n/a", "—", str(rec["exit"]), "no"]) + " |")
        out += ["| " + " | ".join(row(rec, f)) + " |" for f in rec["formats"]]
    out += ["", "Per model: plain PyTorch top-1 on the same 2,000 held-out digits, the export's exit code, "
            "its wall time, and the first error line when the command failed or printed no accuracy table:", ""]
    for rec in recs:
        ref = rec["reference_row"]
        ref_txt = f"; eval's reference row `{ref['label']}` {pct(ref['top1'])}" if ref else "; no eval table"
        err = f"; `{shorten(rec['error'], 300)}`" if rec["error"] and rec["error"] not in rec["failed"] else ""
        out.append(f"- **{rec['model']}** ({rec['what']}): plain {pct(rec['plain_top1'])}%{ref_txt}; "
                   f"exit {rec['exit']}, {rec['seconds']:.0f} s{err}")
        out += [f"  - `{shorten(line, 300)}`" for line in rec["failed"]]
    out += ["", "Commands (from the repository root):", "", "```"]
    out += [rec["command"] for rec in recs] + ["```", f"<!-- end: {label} -->", ""]
    return "\n".join(out)


INTRO = """# Users' own models through edgekit (issue 22)

Built by `benchmarks/users_models/` (model files in a public repo's style, `train.py`, `measure.py`):
recurrent classifiers over MNIST rows and ONNX files of a LeNet-like CNN, trained with plain
PyTorch on the first 8,000 digits of MNIST's t10k IDX files and scored on the last 2,000 (float
`.npz` files, pixels 0-1, or 0-255 for the raw-input model). Each model goes through `edgekit
export ... --int8 --calib DATA.npz --eval DATA.npz` as a user would run it, and `measure.py` reads
the export's lines, exit code and manifest.

Columns: *fp32 verify* is the export's verdict on the fp32 artefact (max abs difference to PyTorch);
*fp32 top-1 (vs plain)* is eval's top-1 and its difference in points from plain PyTorch on the same
samples; *int8 export line* is ok / partly int8 / FAILED as the export printed it; *int8 scheme* is
what the manifest claims; *int8 verify* the export's own agreement / SQNR and its sample count;
*int8 drop* is plain PyTorch top-1 minus the int8 artefact's, in points (positive = worse);
*int8 weight share* is read from the manifest when it records one (n/a otherwise); *size* counts
every file of the artefact. *goal met* checks issue 22's goals: recurrent models: """ + RECURRENT_GOAL + \
    """, never "ok" with SQNR under 10 dB; ONNX files: """ + ONNX_GOAL + """.

Rerun (retrains only if benchmarks/_work/users_models/ is missing):
`.venv/bin/python benchmarks/users_models/measure.py --label after`
"""


def write_markdown(path: Path, label: str, text: str) -> None:
    old = path.read_text() if path.exists() else INTRO
    pattern = re.compile(rf"<!-- section: {re.escape(label)} -->.*?<!-- end: {re.escape(label)} -->\n?", re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="run", help="section of the results file to write (e.g. before, after)")
    ap.add_argument("--only", help="comma-separated models: " + ", ".join(c.name for c in CASES))
    ap.add_argument("--to", action="append", default=[], metavar="MODEL=FORMATS",
                    help="export only these formats for one model, e.g. rows_lstm=onnx,openvino")
    ap.add_argument("--train", action="store_true", help="retrain first (train.py)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per export")
    ap.add_argument("--reuse", action="store_true", help="rebuild the table from this label's logs and run "
                    "directories instead of exporting again")
    ap.add_argument("--note", default="", help="a line under the section heading (what code was measured)")
    ap.add_argument("--results", default=str(RESULTS / "users_models.md"))
    args = ap.parse_args()
    work = WORK
    if args.train or not (work / "train.json").exists():
        subprocess.run([sys.executable, str(HERE / "train.py")], check=True, cwd=ROOT)
    to = dict(t.split("=", 1) for t in args.to)
    chosen = args.only.split(",") if args.only else [c.name for c in CASES]
    unknown = set(chosen) - {c.name for c in CASES}
    if unknown:
        sys.exit(f"unknown model(s) {', '.join(sorted(unknown))}; known: {', '.join(c.name for c in CASES)}")
    recs = []
    for case in [c for c in CASES if c.name in chosen]:
        rec = measure(case, work, args.label, to.get(case.name), args.timeout, args.reuse)
        rec["label"] = args.label
        print(f"[{case.name}] exit {rec['exit']} in {rec['seconds']:.0f} s", flush=True)
        recs.append(rec)
    git = ["git", "log", "-1", "--format=%h", "--", "edgekit"]  # the last commit that changed edgekit/
    commit = subprocess.run(git, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "edgekit"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    note = args.note or (f"edgekit/ as of commit {commit}{' plus uncommitted changes' if dirty else ''}, "
                         f"measured {time.strftime('%Y-%m-%d', time.gmtime())}.")
    if to:
        note += " Formats limited: " + "; ".join(f"{k}: {v}" for k, v in to.items()) + "."
    jsonl = Path(args.results).with_suffix(".jsonl")
    with open(jsonl, "a") as f:
        for rec in recs:
            rec["note"] = note
            f.write(json.dumps(rec, default=str) + "\n")
    recs = latest_records(jsonl, args.label)
    notes = list(dict.fromkeys(r.get("note", "") for r in recs if r.get("note")))
    text = section(args.label, recs, " ".join(notes) if len(notes) == 1 else "\n".join(
        f"- {r['model']}: {r.get('note', '')}" for r in recs))
    print(text)
    write_markdown(Path(args.results), args.label, text)
    return 0


def latest_records(jsonl: Path, label: str) -> list[dict]:
    """The newest record of each model under ``label``, in CASES order: a run of some models
    (--only) keeps the others' rows in its section."""
    latest = {}
    for line in jsonl.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("label") == label:
            latest[rec["model"]] = rec
    order = [c.name for c in CASES]
    return sorted(latest.values(), key=lambda r: order.index(r["model"]) if r["model"] in order else len(order))


if __name__ == "__main__":
    sys.exit(main())
