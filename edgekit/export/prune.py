"""Pruning: structured channel pruning that shrinks the layers (Torch-Pruning's dependency graph),
or unstructured global magnitude pruning that only zeroes weights; an optional fine-tune after.

Structured pruning removes whole channels, so the exported artefact has smaller layers and runs
faster on every dense runtime. The dependency graph keeps coupled layers consistent: the
channels tied by ResNet-50's residual additions are removed together, each GoogLeNet Inception
branch shrinks with the slice of the concatenation it feeds, and the layers after follow. The
final classifier keeps its outputs (only its inputs shrink), as do layers named with ``--keep``.
For the LSTM the hidden size is pruned consistently across the four gates (i, f, g, o) of
``weight_ih``/``weight_hh``/biases and the head's inputs; Torch-Pruning 1.6's own LSTM pruner
indexes those wrongly, so edgekit passes a corrected one (single-layer, unidirectional, no
projection; anything else is refused).

Unstructured pruning zeroes the smallest weights of all conv/linear layers globally; dense
runtimes do exactly the same work on zeros, so it helps compression, not latency (the output
says so). The achieved sparsity is recorded.

A pruned checkpoint stores its layer shapes implicitly in the state dict;
``edgekit.models.weights.reshape_to_state_dict`` resizes a freshly built model to match before loading
(no Torch-Pruning needed to load).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from edgekit.errors import UsageError, require

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekit.models.spec import LoadedModel

METHODS = ("structured", "unstructured")
SCOPES = ("uniform", "global")
GLOBAL_MAX_RATIO = 0.85  # global pruning may not empty a layer: at most this share of its channels


@dataclass(frozen=True)
class PruneSettings:
    ratio: float
    method: str = "structured"
    scope: str = "uniform"  # structured: the same ratio per layer, or ranked across layers
    keep: tuple[str, ...] = ()  # module names left unpruned (the classifier always is)
    round_to: int | None = None  # kept channel counts a multiple of this; None: chosen for this CPU
    finetune_epochs: int = 0
    dataset: str | None = None
    finetune_lr: float | None = None  # default: a tenth of the model's training LR

    def check(self) -> None:
        if not 0 < self.ratio < 1:
            raise UsageError(f"--ratio must be between 0 and 1 (exclusive), got {self.ratio}",
                             hint="0.3 removes 30% of the channels of each prunable layer")
        if self.method not in METHODS:
            raise UsageError(f"unknown pruning method {self.method!r}; use {' or '.join(METHODS)}")
        if self.scope not in SCOPES:
            raise UsageError(f"unknown pruning scope {self.scope!r}; use {' or '.join(SCOPES)}")
        if self.finetune_epochs and not self.dataset:
            raise UsageError("--finetune-epochs needs --dataset to fine-tune on")
        if self.dataset and not self.finetune_epochs:
            raise UsageError("--dataset is the data to fine-tune on; add --finetune-epochs N "
                             "(or drop --dataset)")
        if self.finetune_epochs < 0:
            raise UsageError("--finetune-epochs must be >= 0")

    @classmethod
    def from_mapping(cls, mapping: dict, where: str = "", base=None,
                     required: bool = True) -> PruneSettings | None:
        """Checked settings from option names (``edgekit.settings``): ``prune``'s options or a recipe's
        [prune] table; ``required=False`` (``export --prune``): None when no ratio is given."""
        from edgekit.settings import Reader, check_dataset

        r = Reader(mapping, where, base)
        ratio = r.number("ratio")
        settings = cls(ratio=ratio or 0.0, method=r.text("method", "structured"),
                       scope=r.text("scope", "uniform"), keep=r.texts("keep"),
                       round_to=r.integer("round_to", least=1),
                       finetune_epochs=r.integer("finetune_epochs", 0), dataset=r.data("dataset"),
                       finetune_lr=r.number("finetune_lr", above=0))
        r.done()
        if ratio is None:
            if required:
                raise r.error("give the ratio (ratio = 0.3)")
            if settings.finetune_epochs or settings.keep or settings.dataset:
                raise r.error("--keep, --finetune-epochs and --dataset apply with --prune RATIO")
            return None
        if settings.dataset:
            check_dataset(settings.dataset)
        settings.check()
        return settings

    def to_dict(self) -> dict:
        d = asdict(self)
        d["keep"] = list(self.keep)
        return d


@dataclass
class PruneReport:
    settings: dict
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    sparsity: float | None = None  # unstructured: zero weights / prunable weights
    layers: dict = field(default_factory=dict)  # structured: module -> [channels before, after]
    round_to: dict | None = None  # structured: {"multiple", "chosen": {"cpu", "why"}}
    kept: list[str] = field(default_factory=list)  # modules left whole
    finetune: dict | None = None
    seconds: float = 0.0
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def macs_fraction(self) -> float | None:
        return self.macs_after / self.macs_before if self.macs_before and self.macs_after else None


def classifier_names(module: nn.Module) -> list[str]:
    """The output layer(s): the last Linear (or last Conv when there is no Linear)."""
    import torch.nn as nn

    linear = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if linear:
        return [linear[-1]]
    conv = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    return conv[-1:]


def _kept_modules(module: nn.Module, keep: tuple[str, ...]) -> tuple[list, list[str]]:
    names = dict(module.named_modules())
    unknown = [k for k in keep if k not in names]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(names), n=1)
        raise UsageError(f"--keep {unknown[0]!r} is no layer of this model"
                         + (f"; did you mean {close[0]!r}?" if close else ""),
                         hint="layer names are the module names of the state dict keys, e.g. layer4.2.conv3")
    kept = list(dict.fromkeys([*classifier_names(module), *keep]))
    return [names[k] for k in kept], kept


def prune_model(
    model: LoadedModel, settings: PruneSettings, report=print, keep_masks: bool = False
) -> PruneReport:
    """Prune ``model.module`` in place and recount its parameters and MACs. ``keep_masks``
    (unstructured only) leaves torch's pruning masks on, so a fine-tune keeps the zeros; call
    ``remove_masks`` after."""
    from edgekit.models.complexity import count_macs, count_params

    settings.check()
    if getattr(model.module, "onnx_path", None) is not None:  # edgekit/models/onnx_reference.py
        raise UsageError(f"{model.name} is an ONNX file: pruning needs the PyTorch model; prune that "
                         "and export it again")
    start = time.perf_counter()
    module = model.module.eval()
    example = model.example_input()
    params_before, macs_before = count_params(module), count_macs(module, example)
    kept_modules, kept = _kept_modules(module, settings.keep)
    round_to = None
    if settings.method == "structured":
        round_to = round_to_choice(settings)
        layers = _structured(module, example, settings, kept_modules, round_to["multiple"])
        sparsity, note = None, ""
    else:
        sparsity = _unstructured(module, settings.ratio, kept_modules, keep_masks)
        layers = {}
        note = ("unstructured pruning zeroes weights but keeps every layer's size: dense runtimes "
                "(onnxruntime, OpenVINO, LiteRT) run it no faster; it helps compressed size only")
        report(f"note: {note}")
    module.eval()
    model.params = count_params(module)
    model.macs = count_macs(module, example)
    return PruneReport(
        settings=settings.to_dict(), params_before=params_before, params_after=model.params,
        macs_before=macs_before, macs_after=model.macs, sparsity=sparsity, layers=layers, kept=kept,
        round_to=round_to, seconds=round(time.perf_counter() - start, 2), note=note,
    )


def _channels(module: nn.Module) -> dict[str, int]:
    import torch.nn as nn

    out = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = m.out_channels
        elif isinstance(m, nn.Linear):
            out[name] = m.out_features
        elif isinstance(m, nn.LSTM):
            out[name] = m.hidden_size
    return out


def round_to_choice(settings: PruneSettings) -> dict:
    """The channel multiple structured pruning keeps: ``--round-to`` as given, else the one this CPU's
    int8 kernels take (``edgekit.cpu.prune_round_to``); recorded with the CPU and the reason."""
    from edgekit.cpu import prune_round_to, this_cpu

    cpu = this_cpu()
    if settings.round_to is not None:
        why = ("given (--round-to 1: the ratio's exact counts)" if settings.round_to == 1
               else "given with --round-to")
        return {"multiple": settings.round_to, "chosen": {"cpu": cpu.describe(), "why": why}}
    multiple, why = prune_round_to(cpu)
    return {"multiple": multiple, "chosen": {"cpu": cpu.describe(), "why": why}}


def rounded_keep(channels: int, keep: int, multiple: int) -> int:
    """``keep`` of ``channels`` rounded to the nearest multiple of ``multiple`` that still prunes
    (above 0, below ``channels``); ``keep`` itself where the layer has no such multiple (it is no
    wider than ``multiple``). Torch-Pruning's own ``round_to`` rounds down (64 channels at 0.3 keep
    32 with 16, half of them), so an asked ratio would prune far more of narrow layers."""
    if multiple <= 1 or channels <= multiple:
        return keep
    nearest = int(keep / multiple + 0.5) * multiple
    return min(max(nearest, multiple), (channels - 1) // multiple * multiple)


def _structured(module: nn.Module, example, settings: PruneSettings, kept_modules: list,
                multiple: int = 1) -> dict:
    import torch.nn as nn

    tp = require("torch_pruning", "torch-pruning", "prune")
    for m in module.modules():
        if isinstance(m, nn.LSTM) and (m.num_layers != 1 or m.bidirectional or m.proj_size):
            raise UsageError("structured pruning supports single-layer, unidirectional LSTMs without "
                             "projections; use --method unstructured for this model")
    before = _channels(module)
    class NearestRoundingPruner(tp.pruner.MetaPruner):
        def _round_to(self, n_pruned, current_channels, round_to):  # Torch-Pruning 1.6's hook
            return current_channels - rounded_keep(current_channels, current_channels - n_pruned, round_to)

    pruner = NearestRoundingPruner(
        module, example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=settings.ratio,
        global_pruning=settings.scope == "global",
        max_pruning_ratio=GLOBAL_MAX_RATIO if settings.scope == "global" else 1.0,
        ignored_layers=kept_modules,
        round_to=multiple if multiple > 1 else None,
        customized_pruners={nn.LSTM: _lstm_pruner(tp)},
    )
    pruner.step()
    after = _channels(module)
    return {name: [before[name], after[name]] for name in before if before[name] != after.get(name)}


def _lstm_pruner(tp):
    """Torch-Pruning 1.6's LSTMPruner selects weight_hh rows with the hidden indices instead of the
    4H gate rows and gathers weight_ih along the wrong axis (IndexError); this one indexes the four
    gate blocks (i, f, g, o) of every weight and bias, and weight_hh's columns."""
    import torch

    class GateConsistentLSTMPruner(tp.pruner.function.LSTMPruner):
        def prune_out_channels(self, layer, idxs):
            hidden = layer.hidden_size
            drop = {int(i) for i in idxs}
            keep = torch.tensor(sorted(set(range(hidden)) - drop), dtype=torch.long)
            keep4 = torch.cat([keep + g * hidden for g in range(4)])
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                if hasattr(layer, name) and getattr(layer, name) is not None:
                    setattr(layer, name, self._prune_parameter_and_grad(getattr(layer, name), keep4, 0))
            layer.weight_hh_l0 = self._prune_parameter_and_grad(layer.weight_hh_l0, keep, 1)
            layer.hidden_size = len(keep)
            layer._init_flat_weights()
            return layer

    return GateConsistentLSTMPruner()


def _unstructured(module: nn.Module, ratio: float, kept_modules: list, keep_masks: bool = False) -> float:
    import torch.nn as nn
    import torch.nn.utils.prune as tprune

    kept_ids = {id(m) for m in kept_modules}
    params = [(m, "weight") for m in module.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in kept_ids]
    if not params:
        raise UsageError("this model has no conv or linear layers to prune")
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=ratio)
    sparsity = sparsity_of(module, kept_modules)
    if not keep_masks:
        remove_masks(module)
    return sparsity


def remove_masks(module: nn.Module) -> None:
    """Make unstructured pruning permanent: plain weights (with their zeros), no masks or hooks."""
    import torch.nn.utils.prune as tprune

    for m in module.modules():
        if tprune.is_pruned(m) and hasattr(m, "weight_mask"):
            tprune.remove(m, "weight")


def sparsity_of(module: nn.Module, kept_modules: list | None = None) -> float:
    """Zero weights over all conv/linear weights (except ``kept_modules``)."""
    import torch.nn as nn

    kept_ids = {id(m) for m in kept_modules or []}
    zeros = total = 0
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in kept_ids:
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / total if total else 0.0


# ---------------------------------------------------------------- fine-tune and checkpoint


def finetune(model: LoadedModel, settings: PruneSettings, seed: int = 0, report=print) -> dict:
    """Train the pruned model for ``settings.finetune_epochs`` on ``settings.dataset`` (train split,
    best epoch on val, a tenth of the model's training LR unless given); returns what it did."""
    from edgekit.data.datasets import load_dataset, resolve_dataset
    from edgekit.measure.metrics import accuracy
    from edgekit.train import default_config, train

    kind, where = resolve_dataset(settings.dataset)
    key = str(where) if kind == "builtin" else "user"
    base = default_config(model.name, key)
    config = default_config(
        model.name, key, seed=seed, epochs=settings.finetune_epochs,
        lr=settings.finetune_lr or base.lr / 10, warmup_epochs=0.0,
        zero_init_residual=False,  # the weights are trained: never reset a block to the identity
    )
    train_set = load_dataset(settings.dataset, model, split="train", seed=seed)
    val_set = load_dataset(settings.dataset, model, split="val", seed=seed)
    before = accuracy(model.axes.module(model.module), val_set)
    report(f"fine-tuning for {config.epochs} epochs on {train_set.name} (lr {config.lr:g}); "
           f"val top-1 right after pruning {100 * before['top1'] if 'top1' in before else 0:.2f}%")
    result = train(model, train_set, val_set, config)
    test_set = load_dataset(settings.dataset, model, split="test", seed=seed)
    test = accuracy(model.axes.module(model.module), test_set)
    return {"dataset": train_set.name, "dataset_sha256": train_set.sha256, "classes": train_set.classes,
            "config": config.to_dict(), "val_before": before, "val_after": result.val_metrics,
            "test": test, "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1)}


def pruned_record(model: LoadedModel, report: PruneReport, base: dict | None) -> dict:
    """The checkpoint record of a pruned model: the original's (model, options, preprocessing,
    dataset) plus "pruning"."""
    import torch

    import edgekit

    record = dict(base or {})
    if "metrics" in record:  # the unpruned model's training numbers no longer describe this one
        record["metrics"] = {"before_pruning": record["metrics"]}
    record.update({
        "model": model.name, "options": dict(model.options), "task": model.task,
        "input_shape": list(model.input_spec.shape), "preprocessing": model.preprocessing.to_dict(),
        "pruning": report.to_dict(),
        "versions": {"torch": torch.__version__.split("+")[0], "edgekit": edgekit.__version__},
    })
    if report.finetune:
        record.update(dataset=report.finetune["dataset"], dataset_sha256=report.finetune["dataset_sha256"],
                      classes=[str(c) for c in report.finetune["classes"]])
        record.setdefault("metrics", {})
        record["metrics"] = {**record["metrics"], "test": report.finetune["test"]}
    return record


def prune_and_finetune(
    model: LoadedModel, settings: PruneSettings, seed: int = 0, report=print
) -> PruneReport:
    """``prune_model`` then, if asked, ``finetune``; prints a summary line."""
    masks = settings.method == "unstructured" and settings.finetune_epochs > 0
    result = prune_model(model, settings, report, keep_masks=masks)
    frac = result.macs_fraction
    report(f"pruned {settings.method} {settings.ratio:g} ({settings.scope}): parameters "
           f"{result.params_before:,} -> {result.params_after:,}"
           + (f", MACs {result.macs_before:,} -> {result.macs_after:,} ({100 * frac:.1f}%)" if frac else "")
           + (f", sparsity {100 * result.sparsity:.1f}%" if result.sparsity is not None else "")
           + (f"; channels rounded to multiples of {result.round_to['multiple']} ("
              + ("given" if settings.round_to is not None else "this CPU's; --round-to 1: exact counts")
              + ")" if result.round_to and result.round_to["multiple"] > 1 else ""))
    if settings.finetune_epochs:
        result.finetune = finetune(model, settings, seed, report)  # masks keep pruned weights at zero
        if masks:
            remove_masks(model.module)
            result.sparsity = sparsity_of(model.module, [model.module.get_submodule(k) for k in result.kept])
    return result
