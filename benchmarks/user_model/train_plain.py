"""Train the user's LeNet-style model (lenet_user.py:Net) on MNIST digits with plain PyTorch.

    .venv/bin/python benchmarks/user_model/train_plain.py [--mnist ../shared/data/mnist] [--epochs 20]

What a user would write, without edgekit: read the IDX files with numpy, preprocess each 28x28
digit as torchvision's Compose([Resize((32, 32)), ToTensor(), Normalize((0.1307,), (0.3081,))])
does (Pillow bilinear resize of the uint8 image, /255, normalise), train with Adam.

The one edgekit import is ``choose_split``, only to reproduce the 80/10/10 per-class split edgekit
makes of a single unsplit IDX set (rank = np.random.default_rng(0).permutation(n)), so that the
digits scored here as "test" are the ones `edgekit eval --split test` scores: train on train,
keep the epoch best on val, score on test (and on all 10,000 for reference).

Writes lenet_user.pt (the state dict) and lenet_user.json (the plain-PyTorch numbers).
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
from PIL import Image
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from lenet_user import Net  # noqa: E402

MEAN, STD, SIZE = 0.1307, 0.3081, 32


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    dtype = {0x08: ">u1"}[raw[2]]
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


def preprocess(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 1, 32, 32) float32, as torchvision's Resize/ToTensor/Normalize."""
    out = np.empty((len(images), 1, SIZE, SIZE), np.float32)
    for i, u8 in enumerate(images):
        img = Image.fromarray(u8).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        out[i, 0] = (np.asarray(img, np.float32) / 255.0 - MEAN) / STD
    return out


def edgekit_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Positions of train/val/test as edgekit splits a single unsplit array set."""
    from edgekit.data.datasets import choose_split

    rank = np.random.default_rng(0).permutation(len(labels))
    return {s: choose_split(labels, rank, None, s, "mnist") for s in ("train", "val", "test")}


@torch.no_grad()
def top1(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    pred = np.concatenate([model(torch.from_numpy(x[i:i + 500])).argmax(1).numpy()
                           for i in range(0, len(x), 500)])
    return float((pred == y).mean())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    mnist = Path(args.mnist)
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    x = preprocess(images)
    parts = edgekit_split(labels)
    xtr, ytr = x[parts["train"]], labels[parts["train"]]
    print({s: len(p) for s, p in parts.items()})

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(args.seed)
    best, best_state, history = -1.0, None, []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(xtr))
        for i in range(0, len(order), 64):
            b = order[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(model(torch.from_numpy(xtr[b])), torch.from_numpy(ytr[b]))
            loss.backward()
            opt.step()
        sched.step()
        val = top1(model, x[parts["val"]], labels[parts["val"]])
        history.append({"epoch": epoch + 1, "val_top1": val, "loss": loss.item()})
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} val {100 * val:.2f}%", flush=True)
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
            best_epoch = epoch + 1
    model.load_state_dict(best_state)
    torch.save(model.state_dict(), HERE / "lenet_user.pt")

    result = {
        "model": "benchmarks/user_model/lenet_user.py:Net",
        "preprocessing": {"resize": "PIL bilinear 28x28 -> 32x32", "mean": MEAN, "std": STD},
        "split": {s: int(len(p)) for s, p in parts.items()},
        "epochs": args.epochs, "best_epoch": best_epoch, "lr": args.lr, "batch": 64, "seed": args.seed,
        "train_seconds": round(time.perf_counter() - start, 1),
        "top1": {s: top1(model, x[p], labels[p]) for s, p in parts.items()},
        "correct": {s: int(round(top1(model, x[p], labels[p]) * len(p))) for s, p in parts.items()},
        "top1_all_10k": top1(model, x, labels),
        "history": history,
        "torch": torch.__version__,
        "sha256_pt": __import__("hashlib").sha256((HERE / "lenet_user.pt").read_bytes()).hexdigest(),
    }
    (HERE / "lenet_user.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("split", "best_epoch", "top1", "top1_all_10k")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
