"""Tracing a toolchain's op back to the PyTorch module it came from."""

from __future__ import annotations

import numpy as np

from edgekit.inspect import CONV_OPS, LINEAR_OPS


def module_kind(op: str):
    from torch import nn

    if op in CONV_OPS:
        return nn.modules.conv._ConvNd
    if op in LINEAR_OPS:
        return nn.Linear
    return None


def fit_module(path: str, op: str, modules: dict) -> str:
    """Narrow a module path to the Conv/Linear module an op of that type came from: a BatchNorm
    folded into a conv names the conv before it; a block with one conv names that conv."""
    kind = module_kind(op)
    if kind is None or isinstance(modules[path], kind):
        return path
    parent = path.rpartition(".")[0]
    siblings = [p for p in modules if p.rpartition(".")[0] == parent and p != parent]
    before = [p for p in siblings[: siblings.index(path)] if isinstance(modules[p], kind)]
    if before and type(modules[path]).__name__.startswith("BatchNorm"):
        return before[-1]

    inside = [p for p in modules if p.startswith(path + ".") and isinstance(modules[p], kind)]
    return inside[0] if len(inside) == 1 else path


def trace_weights(weights: np.ndarray, modules: dict) -> str | None:
    """The Conv/Linear module whose weight rows match ``weights`` up to a per-row scale (what
    folding a BatchNorm into the conv does)."""
    w = np.asarray(weights, np.float64)
    best, best_score = None, 0.999
    for path, mod in modules.items():
        mw = getattr(mod, "weight", None)
        if mw is None or not hasattr(mw, "shape") or mw.numel() != w.size or mw.dim() < 2:
            continue
        a = mw.detach().double().reshape(mw.shape[0], -1).numpy()
        for b in (w.reshape(a.shape), w.reshape(w.shape[0], -1).T.reshape(a.shape) if w.ndim == 2 else None):
            if b is None:
                continue
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            ok = norms > 0
            if not ok.any():
                continue
            score = float(np.min(np.abs(np.sum(a * b, axis=1)[ok]) / norms[ok]))
            if score > best_score:
                best, best_score = path, score
    return best
