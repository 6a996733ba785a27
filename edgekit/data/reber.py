"""The Embedded Reber grammar (Hochreiter & Schmidhuber 1997, experiment 1).

A Reber string walks the graph below from B to E, taking either edge of each node with equal
probability. An embedded string wraps one: ``B T <reber> T E`` or ``B P <reber> P E``; predicting
the second-to-last symbol needs the memory of the second symbol across the whole inner string.

The task is next-symbol prediction: at step t the model sees symbol t and predicts symbol t+1.
Most steps have two equally likely successors, so only the *deterministic* steps (one valid
successor) can be scored by top-1 accuracy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SYMBOLS = "BTPSXVE"  # one-hot order of the 7 symbols
IGNORE_INDEX = -100  # target at padding (torch.nn.CrossEntropyLoss's default ignore_index)

# Reber graph: node -> ((symbol, next node), ...); None ends the inner string (after its "E").
_GRAPH: dict[int, tuple[tuple[str, int | None], ...]] = {
    0: (("B", 1),),
    1: (("T", 2), ("P", 3)),
    2: (("S", 2), ("X", 4)),  # S loop
    3: (("T", 3), ("V", 5)),  # T loop
    4: (("X", 3), ("S", 6)),
    5: (("P", 4), ("V", 6)),
    6: (("E", None),),
}


class ReberBatch(NamedTuple):
    """Encoded strings. Padding steps have x = 0, y = IGNORE_INDEX, valid/deterministic False."""

    x: np.ndarray  # (N, T, 7) float32 one-hot of each symbol of the string
    y: np.ndarray  # (N, T) int64 index of the next symbol; IGNORE_INDEX where there is none
    valid: np.ndarray  # (N, T, 7) bool: the symbols the grammar allows next
    deterministic: np.ndarray  # (N, T) bool: exactly one symbol is allowed next
    lengths: np.ndarray  # (N,) int64 string lengths


def _reber_string(rng: np.random.Generator, branch_p: float) -> str:
    node: int | None = 0
    out = []
    while node is not None:
        edges = _GRAPH[node]
        symbol, node = edges[0] if len(edges) == 1 or rng.random() < branch_p else edges[1]
        out.append(symbol)
    return "".join(out)


def embedded_reber_string(rng: np.random.Generator, branch_p: float = 0.5) -> str:
    """One embedded Reber string: B (T|P) <Reber string> (same T|P) E."""
    wrap = "T" if rng.random() < 0.5 else "P"
    return f"B{wrap}{_reber_string(rng, branch_p)}{wrap}E"


def generate_strings(n: int, seed: int, max_len: int, branch_p: float = 0.5) -> list[str]:
    """``n`` embedded Reber strings of at most ``max_len`` symbols (longer ones are redrawn)."""
    if max_len < 9:
        raise ValueError(f"max_len must be at least 9 (the shortest embedded string), got {max_len}")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        s = embedded_reber_string(rng, branch_p)
        if len(s) <= max_len:
            out.append(s)
    return out


def next_symbol_sets(string: str) -> list[frozenset[str]]:
    """For each position t, the symbols the grammar allows at t+1 (empty after the final E).

    Raises ValueError if ``string`` is not an embedded Reber string.
    """
    if len(string) < 9 or string[0] != "B" or string[1] not in "TP" or string[-1] != "E":
        raise ValueError(f"not an embedded Reber string: {string!r}")
    wrap, inner = string[1], string[2:-2]
    sets = [frozenset("TP"), frozenset("B")]
    node: int | None = 0
    for i, symbol in enumerate(inner):
        step = dict(_GRAPH[node]) if node is not None else {}
        if symbol not in step:
            raise ValueError(f"not an embedded Reber string: {string!r} (bad symbol at {i + 2})")
        node = step[symbol]
        sets.append(frozenset(wrap) if node is None else frozenset(s for s, _ in _GRAPH[node]))
    if node is not None or string[-2] != wrap:
        raise ValueError(f"not an embedded Reber string: {string!r}")
    return [*sets, frozenset("E"), frozenset()]


def encode(strings: list[str], seq_len: int) -> ReberBatch:
    """One-hot inputs, next-symbol targets and valid-successor masks, padded to ``seq_len``."""
    n = len(strings)
    x = np.zeros((n, seq_len, len(SYMBOLS)), np.float32)
    y = np.full((n, seq_len), IGNORE_INDEX, np.int64)
    valid = np.zeros((n, seq_len, len(SYMBOLS)), bool)
    index = {s: i for i, s in enumerate(SYMBOLS)}
    for row, s in enumerate(strings):
        if len(s) > seq_len:
            raise ValueError(f"string of length {len(s)} does not fit sequence length {seq_len}")
        for t, (symbol, allowed) in enumerate(zip(s, next_symbol_sets(s))):
            x[row, t, index[symbol]] = 1.0
            valid[row, t, [index[a] for a in allowed]] = True
            if t + 1 < len(s):
                y[row, t] = index[s[t + 1]]
    deterministic = valid.sum(axis=2) == 1
    lengths = np.array([len(s) for s in strings], np.int64)
    return ReberBatch(x, y, valid, deterministic, lengths)


def decode(x: np.ndarray) -> list[str]:
    """Back from one-hot (N, T, 7) to strings; all-zero steps are padding."""
    return ["".join(SYMBOLS[i] for i, on in zip(row.argmax(1), row.any(1)) if on) for row in x]
