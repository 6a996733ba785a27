"""Reading weights files and fitting them to a model, with one clear error when they do not fit.

Accepted files: a pickled state dict (``torch.save(model.state_dict(), f)``), a pickled checkpoint
dict holding one (under ``state_dict``, ``model_state_dict``, ``model``, ...), or ``.safetensors``.
Pickles are loaded with ``weights_only=True``: a file that needs arbitrary code to load (a whole
pickled ``nn.Module``) is refused rather than executed. ``reshape_to_state_dict`` resizes the layers
of a freshly built model to a pruned model's state dict, so that its weights fit.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import WeightsError

WEIGHTS_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")  # a state dict or checkpoint file

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

# Where checkpoints keep their state dict, most specific first.
CHECKPOINT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "module",
    "weights",
    "params",
    "ema",
    "model_ema",
    "state_dict_ema",
)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
SHOW = 5
# What torch's weights-only unpickler says when a file would run code (classes, functions).
NEEDS_CODE = re.compile(
    r"global|reduce|unsupported class|can only build", re.IGNORECASE
)  # keys listed per kind of problem before "and N more"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``path``; return its state dict and {"path", "sha256", "format"[, "edgekit"]}.

    ``info["edgekit"]`` is the ``{"model": ..., "options": ...}`` record that ``edgekit train``
    writes into its checkpoints, passed through when present.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty")
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    if _is_safetensors(path):
        state, extra, fmt = *_load_safetensors(path), "safetensors"
    else:
        state, extra, fmt = *_find_state_dict(_load_pickle(path), path), "pickle"
    info = {"path": str(path), "sha256": digest, "format": fmt}
    if extra is not None:
        info["edgekit"] = extra
    return _strip_wrappers(state), info


def _is_safetensors(path: Path) -> bool:
    """By suffix, or by content: an 8-byte little-endian header length, then a JSON object."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30


def _load_safetensors(path: Path) -> tuple[dict, dict | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {path} as safetensors: {_first_line(exc)}") from None
    extra = meta.get("edgekit")
    try:
        extra = json.loads(extra) if extra else None
    except json.JSONDecodeError:
        extra = None
    return state, extra


def _load_pickle(path: Path):
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not NEEDS_CODE.search(str(exc)):  # e.g. "Unsupported operand": not a pickle at all
            raise _unreadable(path, "not a torch.save() file") from None
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise WeightsError(
            f"{path} needs arbitrary code to load (a pickled object{what}, not a state dict); "
            "save model.state_dict() instead, or use .safetensors"
        ) from None
    except Exception as exc:  # corrupt or foreign file: torch raises many kinds
        raise _unreadable(path, f"corrupt, or not a torch.save() file ({_first_line(exc)})") from None


def _unreadable(path: Path, why: str) -> WeightsError:
    return WeightsError(
        f"cannot read weights file {path}: {why}",
        hint="expected a torch.save()d state dict or checkpoint, or .safetensors",
    )


def _is_state_dict(obj) -> bool:
    import torch

    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _find_state_dict(obj, path: Path) -> tuple[dict, dict | None]:
    """The state dict inside a loaded pickle, and the checkpoint's "edgekit" record if any."""
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, dict):
        extra = obj.get("edgekit") if isinstance(obj.get("edgekit"), dict) else None
        for key in CHECKPOINT_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                return dict(inner), extra
            if isinstance(inner, dict) and _is_state_dict(inner.get("state_dict")):
                return dict(inner["state_dict"]), extra
        keys = ", ".join(map(str, list(obj)[:10])) or "none"
        raise WeightsError(
            f"no state dict found in {path}: its top-level keys are {keys}",
            hint=f"expected tensors by name, or a checkpoint holding them under one of "
            f"{', '.join(CHECKPOINT_KEYS[:4])}, ...",
        )
    raise WeightsError(
        f"{path} holds a {type(obj).__name__}, not a state dict",
        hint="save model.state_dict() instead",
    )


def _strip_wrappers(state: dict) -> dict:
    """Drop a prefix that every key carries (``module.`` from DataParallel, ``_orig_mod.``)."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _first_line(exc: BaseException) -> str:
    """``Type: first sentence of the message`` (torch's messages run to paragraphs)."""
    text = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:120]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def apply_weights(module: nn.Module, state_dict: dict, source: str) -> list[str]:
    """Load ``state_dict`` into ``module`` strictly; return notes on anything adapted.

    All missing keys, unexpected keys and shape mismatches are collected first and raised as one
    WeightsError. A model may define ``edgekit_adapt_state_dict(sd) -> (sd, notes)`` to reconcile
    known differences (GoogLeNet drops torchvision's training-only auxiliary heads).
    """
    notes: list[str] = []
    adapt = getattr(module, "edgekit_adapt_state_dict", None)
    if adapt is not None:
        state_dict, notes = adapt(state_dict)
    expected = module.state_dict()
    state_dict = dict(state_dict)
    for key in expected:  # old checkpoints predate BatchNorm's num_batches_tracked
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = expected[key]
    problems = _mismatches(expected, state_dict)
    if problems:
        raise WeightsError(
            f"weights in {source} do not fit the model: {'; '.join(problems)}",
            hint="check the model name, --num-classes and --width match the trained model",
        )
    module.load_state_dict(state_dict, strict=True)
    return notes


def _mismatches(expected: dict, given: dict) -> list[str]:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {_shape(given[k])} in the file vs {_shape(expected[k])} in the model"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            more = f", and {len(items) - SHOW} more" if len(items) > SHOW else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:SHOW])}{more}")
    return problems


def _shape(t) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def reshape_to_state_dict(module: nn.Module, state: dict) -> list[str]:
    """Resize conv, linear, batch-norm and LSTM layers of a freshly built ``module`` to the shapes
    in ``state`` (a pruned model's state dict), so that ``load_state_dict`` fits. Returns the
    names of the layers resized."""
    import torch
    import torch.nn as nn

    resized = []
    for name, m in module.named_modules():
        prefix = f"{name}." if name else ""
        own = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix) and "." not in k[len(prefix):]}
        if not own:
            continue
        changed = False
        for key, value in own.items():
            current = getattr(m, key, None)
            if isinstance(current, torch.Tensor) and tuple(current.shape) != tuple(value.shape):
                fresh = torch.empty(value.shape, dtype=current.dtype)
                if isinstance(current, nn.Parameter):
                    setattr(m, key, nn.Parameter(fresh, requires_grad=current.requires_grad))
                else:
                    m.register_buffer(key, fresh)
                changed = True
        if not changed:
            continue
        resized.append(name)
        if isinstance(m, nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            m.out_channels = m.weight.shape[0]
            m.groups = m.out_channels if depthwise else m.groups
            m.in_channels = m.weight.shape[1] * m.groups
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = m.weight.shape
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.num_features = m.running_mean.shape[0] if m.running_mean is not None else m.weight.shape[0]
        elif isinstance(m, nn.LSTM):
            m.hidden_size = m.weight_hh_l0.shape[1]
            m.input_size = m.weight_ih_l0.shape[1]
            m._init_flat_weights()
    return resized
