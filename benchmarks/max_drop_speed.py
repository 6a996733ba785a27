"""How much slower `edgekit export --int8` gets with `--max-drop` on a CIFAR ResNet-20.

    .venv/bin/python benchmarks/max_drop_speed.py [--budgets 1] [--repeats 1]
        [--code before=/tmp/edgekit-before,after=.] [--formats onnx,tflite,openvino,executorch]

The model: ``tests/data/user_models/cifar_resnet.py:resnet20`` (the widely copied ResNet-20 of
pytorch_resnet_cifar10, 0.27 M parameters), trained here with plain PyTorch for a few epochs on
the train split of ../shared/data/cifar10 (the first run trains it, a few minutes on 2 cores, and
caches the state dict under $EDGEKIT_BENCH_CACHE, default /tmp/edgekit-bench). Accuracy is not the
point, a realistic int8 drop is: a trained model's int8 is close to fp32, a random one's is not.

Each measurement runs the CLI in a subprocess (``python -m edgekit`` with PYTHONPATH the code
under test), as a user would, one after the other on the same machine in the same invocation: per
``--code`` variant (a label and a folder holding an ``edgekit`` package, e.g. the code before a
change unpacked with ``git archive COMMIT edgekit | tar -x -C /tmp/edgekit-before``), the plain
export (``--int8 --calib CIFAR``) and then, per budget, the same command with ``--max-drop B --eval
CIFAR`` (the val split: 10% of cifar10/train, 5,000 images). Timed: from the start of the process
to the ``run directory:`` line (the export finished, search included); the evaluation on the test
split that ``--eval`` also starts is not the search's and is stopped there. The ratio is the
search's time over the plain one's of the same variant and repeat. Every number, the commands and the search
records go to benchmarks/results/max_drop.jsonl; a table is appended to benchmarks/results/max_drop.md.

Subprocesses run with OMP/MKL threads 1 (the machine is shared); both exports run the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
MODEL_FILE = ROOT / "tests" / "data" / "user_models" / "cifar_resnet.py"
MODEL = f"{os.path.relpath(MODEL_FILE, ROOT)}:resnet20"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
PRE = ["--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)), "--resize", "squash"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
CACHE = Path(os.environ.get("EDGEKIT_BENCH_CACHE", "/tmp/edgekit-bench"))


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _images(split: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class of cifar10/<split>, normalised, NCHW float32."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, folder in enumerate(sorted(p for p in (CIFAR / split).iterdir() if p.is_dir())):
        files = sorted(folder.glob("*.jpg"))
        for f in rng.permutation(files)[:per_class]:
            with Image.open(f) as im:
                xs.append(np.asarray(im.convert("RGB"), np.float32) / 255.0)
            ys.append(label)
    x = (np.stack(xs) - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32), np.array(ys, np.int64)


def trained_weights(epochs: int = 2, per_class: int = 600) -> Path:
    """The cached state dict of a ResNet-20 trained for ``epochs`` on ``per_class`` train images per
    class (plain PyTorch, SGD with momentum, flips as the only augmentation)."""
    path = CACHE / f"resnet20_cifar_e{epochs}_n{per_class}.pt"
    if path.exists():
        return path
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("cifar_resnet", MODEL_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a shared machine: one thread spins less
    net = mod.resnet20()
    x, y = _images("train", per_class, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * (len(x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(x))
        for i in range(0, len(order) - 127, 128):
            idx = order[i : i + 128]
            xb = x[idx].copy()
            flip = rng.random(len(idx)) < 0.5
            xb[flip] = xb[flip][..., ::-1]
            loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            if i // 128 % 10 == 0:
                print(f"    batch {i // 128}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
            opt.step()
            sched.step()
        print(f"  epoch {epoch + 1}/{epochs}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    xt, yt = _images("test", 100, seed=1)
    net.eval()
    with torch.inference_mode():
        top1 = float((net(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())
    print(f"  trained: top-1 {top1:.1%} on 1,000 test images", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"epochs": epochs, "per_class": per_class,
                                                     "test_top1_1000": top1}))
    return path


def run(args: list[str], code: Path) -> dict:
    """``python -m edgekit ARGS`` with the package in ``code``: seconds until it prints ``run
    directory:`` (the export done: process start, model and data loading, the exports, any search),
    its exit code and stderr's tail. The evaluation that ``--eval`` starts after the export is not
    timed: the process is stopped there (rc None)."""
    import tempfile

    args = [sys.executable, "-P", "-m", "edgekit", *args]  # -P: the package from PYTHONPATH, not the cwd
    print(f"$ PYTHONPATH={code}", " ".join(args), flush=True)
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, env={**ENV, "PYTHONPATH": str(code)}, stdout=subprocess.PIPE,
                                stderr=err, text=True)
        seconds = None
        for line in proc.stdout:
            if line.startswith("run directory:"):
                seconds = round(time.perf_counter() - start, 1)
                break
        if seconds is not None and "--eval" in args:
            proc.kill()
        rc = proc.wait()
        seconds = seconds if seconds is not None else round(time.perf_counter() - start, 1)
        err.seek(0)
        tail = err.read()[-1500:]
    rc = None if "--eval" in args and rc < 0 else rc
    print(f"  rc {rc}: export done in {seconds} s", flush=True)
    return {"command": " ".join(["edgekit", *args[4:]]), "rc": rc, "seconds": seconds, "stderr_tail": tail}


def searches(out: Path) -> dict:
    """Per format: what the search recorded, condensed."""
    manifest = json.loads((out / "manifest.json").read_text())
    rows = {}
    for a in manifest["artefacts"]:
        s = a.get("search")
        if not s:
            continue
        rows[a["format"]] = {
            "met": s["met"], "chosen": s["chosen"], "held_out_samples": s["held_out"]["samples"],
            "sample": s.get("sample"),
            "attempts": [{k: t.get(k) for k in ("stage", "status", "drop_pp", "scored", "stopped_early",
                                                "seconds")} for t in s["attempts"]],
        }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="1")
    ap.add_argument("--code", default=f"after={ROOT}", help="LABEL=DIR,... (DIR holds the edgekit package)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--formats", default="")
    ap.add_argument("--out", default="/tmp/edgekit-max-drop-bench")
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)  # export refuses an existing run directory
    weights = trained_weights()
    variants = {k: Path(v).resolve() for k, v in (c.split("=", 1) for c in a.code.split(","))}
    for label, code in variants.items():  # each variant runs its own package, not this checkout's
        found = subprocess.run([sys.executable, "-P", "-c", "import edgekit; print(edgekit.__file__)"], cwd=ROOT,
                               env={**ENV, "PYTHONPATH": str(code)}, capture_output=True, text=True).stdout
        assert Path(found.strip()).is_relative_to(code), (label, found)
    base = ["export", MODEL, "--input-shape", "1,3,32,32", "--weights", str(weights), "--int8",
            "--calib", str(CIFAR), *PRE, *(["--to", a.formats] if a.formats else [])]
    budgets = [float(b) for b in a.budgets.split(",")]
    rows, when = [], now()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    for rep in range(a.repeats):
        for label, code in variants.items():
            plain = run([*base, "--out", f"{a.out}/{label}-plain-{rep}"], code)
            rows.append({"code": label, "case": "plain", "repeat": rep, **plain})
            for b in budgets:
                out = Path(f"{a.out}/{label}-max-drop-{b:g}-{rep}")
                r = run([*base, "--max-drop", f"{b:g}", "--eval", str(CIFAR), "--out", str(out)], code)
                row = {"code": label, "case": f"max-drop {b:g}", "budget": b, "repeat": rep, **r,
                       "ratio": round(r["seconds"] / plain["seconds"], 2)}
                if (out / "manifest.json").is_file():  # rc None: stopped in the eval after the export
                    row["search"] = searches(out)
                rows.append(row)
                print(f"  ratio {row['ratio']}", flush=True)
    meta = {"when": when, "commit": commit, "model": MODEL, "weights": weights.name,
            "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
            "formats": a.formats or "default"}
    with open(RESULTS / "max_drop.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps({**meta, **row}) + "\n")
    lines = [f"\n### {when}, commit {commit} (+ working tree), {meta['machine']}, formats {meta['formats']}\n",
             "| code | case | repeat | seconds | ratio to plain | per format: scored samples / attempts (stopped early) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        detail = ""
        for fmt, s in (row.get("search") or {}).items():
            stopped = sum(1 for t in s["attempts"] if t.get("stopped_early"))
            detail += f"{fmt}: {s['held_out_samples']} / {len(s['attempts'])} ({stopped}); "
        lines.append(f"| {row['code']} | {row['case']} | {row['repeat']} | {row['seconds']} | {row.get('ratio', 1.0)} | "
                     f"{detail.rstrip('; ')} |")
    with open(RESULTS / "max_drop.md", "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
