"""Train the users' models of this folder with plain PyTorch and write what a user would hand edgekit.

    .venv/bin/python benchmarks/users_models/train.py [--only rows_lstm,lenet] [--mnist DIR] [--work DIR]

Data: MNIST's t10k IDX files (../shared/data/mnist), the first 8,000 digits for training, the last
2,000 held out; pixels scaled to 0-1 here (raw 0-255 for the raw-input ONNX model). One thread
(torch.set_num_threads(1)), Adam, seed 0. Writes into benchmarks/_work/users_models/ (git-ignored):

  data/rows.npz      x_train (8000, 28, 28) float32 0-1, y_train, x_test (2000, 28, 28), y_test
  data/binary.npz    the same rows, y = digit >= 5 (0/1)
  data/images.npz    x_* (N, 1, 28, 28) float32 0-1
  data/images_raw.npz  x_* (N, 1, 28, 28) float32 0-255
  weights/NAME.pt    state dicts (torch.load(weights_only=True))
  onnx/lenet_opset11.onnx, lenet_opset9.onnx (0-1 input), lenet_raw255.onnx (0-255 input, opset 13)
  train.json         per model: plain-PyTorch held-out accuracy, epochs, seconds
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "_work" / "users_models"
sys.path.insert(0, str(HERE))

from bigru_binary import BiGRUBinary  # noqa: E402
from cnn_lstm import CNNLSTM  # noqa: E402
from lenet import Net, RawNet  # noqa: E402
from rows_lstm import RowLSTM  # noqa: E402
from small_rnns import GRUNet, RNNNet  # noqa: E402

N_TRAIN = 8000

# name: (class, data file, how the (N, 28, 28) rows become its input, epochs, lr, binary)
MODELS = {
    "rows_lstm": (RowLSTM, "rows", "seq_first", 8, 2e-3, False),
    "bigru_binary": (BiGRUBinary, "binary", "rows", 4, 2e-3, True),
    "gru": (GRUNet, "rows", "rows", 6, 3e-3, False),
    "rnn": (RNNNet, "rows", "rows", 12, 2e-3, False),
    "cnn_lstm": (CNNLSTM, "images", "image", 3, 2e-3, False),
    "lenet": (Net, "images", "image", 4, 2e-3, False),
}


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_data(mnist: Path, out: Path) -> dict[str, dict[str, np.ndarray]]:
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz").astype(np.float32)
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    rows = images / 255.0
    split = {"train": slice(0, N_TRAIN), "test": slice(N_TRAIN, None)}
    sets = {
        "rows": (rows, labels),
        "binary": (rows, (labels >= 5).astype(np.int64)),
        "images": (rows[:, None], labels),
        "images_raw": (images[:, None], labels),
    }
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, (x, y) in sets.items():
        arrays[name] = {f"{k}_{s}": a[sl] for s, sl in split.items() for k, a in (("x", x), ("y", y))}
        np.savez(out / f"{name}.npz", **arrays[name])
    return arrays


def as_input(x: np.ndarray, how: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.transpose(0, 1).contiguous() if how == "seq_first" else t  # (28, N, 28)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, how: str, binary: bool) -> float:
    model.eval()
    outs = [model(as_input(x[i:i + 500], how)) for i in range(0, len(x), 500)]
    out = torch.cat(outs).numpy()
    pred = (out >= 0).astype(np.int64) if binary else out.argmax(1)  # sigmoid(z) >= 0.5 <=> z >= 0
    return float((pred == y).mean())


def train(name: str, data: dict[str, np.ndarray]) -> tuple[nn.Module, dict]:
    cls, _, how, epochs, lr, binary = MODELS[name]
    torch.manual_seed(0)
    model = cls()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss() if binary else nn.CrossEntropyLoss()
    x, y = data["x_train"], data["y_train"]
    rng = np.random.default_rng(0)
    start, history = time.perf_counter(), []
    for epoch in range(epochs):
        model.train()
        for idx in np.array_split(rng.permutation(len(x)), len(x) // 64):
            out = model(as_input(x[idx], how))
            target = torch.from_numpy(y[idx])
            loss = loss_fn(out, target.float()) if binary else loss_fn(out, target)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        acc = accuracy(model, data["x_test"], data["y_test"], how, binary)
        history.append(round(acc, 4))
        print(f"{name} epoch {epoch + 1}/{epochs}: held-out top-1 {acc:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    record = {"class": f"{cls.__module__}.py:{cls.__name__}", "epochs": epochs, "lr": lr,
              "train_seconds": round(time.perf_counter() - start, 1), "top1_test": history[-1],
              "history": history, "train": len(x), "test": len(data["x_test"])}
    return model, record


def export_onnx(model: Net, raw: RawNet, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    example = torch.zeros(1, 1, 28, 28)
    for name, m, opset in (("lenet_opset11", model, 11), ("lenet_opset9", model, 9),
                           ("lenet_raw255", raw, 13)):
        path = out / f"{name}.onnx"
        torch.onnx.export(m.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["logits"])
        files[name] = {"path": str(path.relative_to(ROOT)), "opset": opset, "bytes": path.stat().st_size}
    return files


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--only", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    arrays = write_data(Path(args.mnist), work / "data")
    record_path = work / "train.json"
    records = json.loads(record_path.read_text()) if record_path.exists() else {}
    (work / "weights").mkdir(parents=True, exist_ok=True)
    for name in args.only.split(","):
        model, record = train(name, arrays[MODELS[name][1]])
        torch.save(model.state_dict(), work / "weights" / f"{name}.pt")
        if name == "lenet":
            raw = RawNet()
            raw.load_state_dict(model.state_dict())
            record["onnx"] = export_onnx(model, raw, work / "onnx")
            record["top1_test_raw255"] = accuracy(raw, arrays["images_raw"]["x_test"],
                                                  arrays["images_raw"]["y_test"], "image", False)
        records[name] = record
        record_path.write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
