"""`edgekit train`: datasets + model + training loop + checkpoint, for the CLI and recipes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.runs import manifest as mf


def run_training(
    model_name: str,
    dataset: str,
    out: Path | None = None,
    seed: int = 0,
    options: dict | None = None,
    overrides: dict | None = None,
    config: dict | None = None,
    report: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[Path, dict]:
    """Train and write the checkpoint; returns its path and its "edgekit" record."""
    import torch

    from edgekit.data.datasets import load_dataset, resolve_dataset
    from edgekit.data.preprocess import override_preprocessing
    from edgekit.measure.metrics import accuracy
    from edgekit.models import MODELS, load_model
    from edgekit.models.checkpoint import save_checkpoint
    from edgekit.models.spec import ModelOptions
    from edgekit.train import default_config, default_options, rich_progress
    from edgekit.train import train as train_loop

    MODELS.get(model_name)  # only zoo models: a user's class has its own training code
    kind, where = resolve_dataset(dataset)
    ds_key = str(where) if kind == "builtin" else "user"
    opts = {**default_options(model_name, ds_key), **{k: v for k, v in (options or {}).items() if v}}
    cfg = default_config(model_name, ds_key, seed=seed, **(config or {}))

    def build(num_classes: int | None):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return load_model(model_name, ModelOptions(num_classes=num_classes, width=opts.get("width", 1.0),
                                                       input_size=opts.get("input_size")))

    model = build(opts.get("num_classes"))
    pre = override_preprocessing(model.preprocessing, **(overrides or {}))
    if kind == "builtin" and "resize" not in (overrides or {}) and pre.kind == "image":
        # built-in images are drawn at the model's size, never cropped: files of them load alike
        pre = override_preprocessing(pre, resize="squash")
    probe = load_dataset(dataset, model, split="train", n=1, seed=seed, preprocessing=pre)
    fits = len(probe.classes) == model.num_classes
    if not opts.get("num_classes") and model.task == "classification" and not fits:
        model = build(len(probe.classes))  # the dataset decides the classifier's width
    elif opts.get("num_classes") and model.num_classes < len(probe.classes):
        raise UsageError(f"--num-classes {model.num_classes} is fewer than the dataset's "
                         f"{len(probe.classes)} classes; drop --num-classes to use the dataset's")
    train_set = load_dataset(dataset, model, split="train", seed=seed, preprocessing=pre)
    val_set = load_dataset(dataset, model, split="val", seed=seed, preprocessing=pre)
    test_set = load_dataset(dataset, model, split="test", seed=seed, preprocessing=pre)
    report(f"training {model_name} ({model.params:,} parameters, options {model.options}) on "
           f"{train_set.name}: {len(train_set)} train / {len(val_set)} val / {len(test_set)} test samples")
    if progress:
        with rich_progress(cfg.epochs, f"{model_name} on {train_set.name}") as callback:
            result = train_loop(model, train_set, val_set, cfg, progress=callback)
    else:
        result = train_loop(model, train_set, val_set, cfg)
    test = accuracy(model.axes.module(model.module), test_set)
    out = Path(out) if out else Path("checkpoints") / (
        f"{model_name}-{train_set.name.replace(':', '_').replace('/', '_')}-"
        f"{mf.utc_stamp()}.pt")
    if out.exists():
        raise UsageError(f"checkpoint {out} already exists; choose another --out or remove it")
    record = save_checkpoint(out, model, train_set, result, cfg, metrics={"test": test}, preprocessing=pre)
    summary = ", ".join(f"{k} {100 * v:.2f}%" for k, v in test.items() if k != "n")
    report(f"test ({test['n']} samples): {summary}")
    report(f"checkpoint: {out}")
    return out, record
