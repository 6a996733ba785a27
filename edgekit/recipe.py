"""``edgekit run RECIPE.toml``: the whole pipeline from one file, so that a CI job is one command.

Keys are the CLI's option names (``calib-size`` or ``calib_size``, both accepted):

    model = "lenet5"                      # zoo name, file.py:Class, or a checkpoint
    out = "runs/lenet5-ci"                # the run directory (must not exist; default
                                          # runs/<time>-<recipe name>)
    to = ["onnx", "tflite", "openvino"]   # or "onnx,tflite"
    int8 = true
    calib = "digits"
    calib-size = 64
    # weights, num-classes, width, input-size, input-shape, model-args, seed, verify-samples
    max-drop = 0.3                        # int8 budget in points, measured on [eval]'s val split

    [preprocess] # optional: the model's preprocessing (keys of --preprocess files: resize, mean,
    resize = "squash"                    #   std, grayscale, crop-fraction, interpolation, scale,
    mean = 0.1307                        #   layout, pad-value), or preprocess = "file.toml"

    [train]      # optional, first: edgekit train MODEL --dataset ... (then export the checkpoint)
    dataset = "digits"
    epochs = 20
    [prune]      # optional: ratio, method, scope, keep, round-to, finetune-epochs, dataset
    [eval]       # optional: dataset, split, limit
    [[bench]]    # optional, any number: target, host, python, ssh-config, threads, batch, warmup,
    target = "local-cpu"                 #   iters, seconds, no-torch
    seconds = 1
    [gate]       # optional: the rules of `edgekit gate` (max-drop, min-agreement, baseline, ...)
    max-drop = 1.0

Steps run in that order; a report (RUN_DIR/report/) is always written. Exit status: 4 when the
gate fails, else 1 when any artefact failed to export or run, else 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EXIT_FAILED, EXIT_GATE, DeviceError, UsageError
from edgekit.tomlfile import read_toml

TOP = {"model", "out", "to", "int8", "calib", "calib_size", "weights", "num_classes", "width", "input_size",
       "input_shape", "model_args", "seed", "verify_samples", "train", "prune", "eval", "bench", "gate",
       "preprocess", "max_drop"}
TRAIN = {"dataset", "epochs", "batch_size", "lr", "max_minutes", "out", "seed"}
PRUNE = {"ratio", "method", "scope", "keep", "round_to", "finetune_epochs", "finetune_lr", "dataset"}
EVAL = {"dataset", "split", "limit"}
BENCH = {"target", "host", "python", "ssh_config", "targets_dir", "threads", "batch", "warmup", "iters",
         "seconds", "no_torch"}


NUM = (int, float)
TYPES = {
    "model": str, "out": str, "to": (str, list), "int8": bool, "calib": str, "calib_size": int,
    "weights": str,
    "num_classes": int, "width": NUM, "input_size": int, "input_shape": list, "model_args": dict, "seed": int,
    "verify_samples": int, "train": dict, "prune": dict, "eval": dict, "bench": (dict, list), "gate": dict,
    "dataset": str, "epochs": int, "batch_size": int, "lr": NUM, "max_minutes": NUM, "ratio": NUM,
    "method": str, "scope": str, "keep": list, "round_to": int, "finetune_epochs": int, "finetune_lr": NUM,
    "split": str, "limit": int, "target": str, "host": str, "python": str, "ssh_config": str,
    "targets_dir": str, "threads": int, "batch": int, "warmup": int, "iters": int, "seconds": NUM,
    "no_torch": bool, "preprocess": (dict, str), "max_drop": NUM,
}
_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "a table", list: "a list",
          NUM: "a number", (str, list): "a string or a list", (dict, list): "a table or a list of tables",
          (dict, str): "a table or a file name"}


def _check_types(table: dict, where: str) -> None:
    for key, value in table.items():
        kind = TYPES.get(key)
        if kind is None:
            continue
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, NUM))
        if not ok:
            raise UsageError(f"{where}: {key.replace('_', '-')} must be {_NAMES.get(kind, kind)}, "
                             f"got {value!r}")
        if key in ("keep", "input_shape") or (key == "to" and isinstance(value, list)):
            inner = int if key == "input_shape" else str
            if not all(isinstance(v, inner) and not isinstance(v, bool) for v in value):
                raise UsageError(f"{where}: {key.replace('_', '-')} must be a list of "
                                 f"{'integers' if inner is int else 'strings'}, got {value!r}")


def _norm(table: dict, known: set[str], where: str) -> dict:
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table of settings, got {table!r}")
    out = {str(k).replace("-", "_"): v for k, v in table.items()}
    unknown = sorted(set(out) - known)
    if unknown:
        raise UsageError(f"{where}: unknown keys {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(k.replace('_', '-') for k in known))}")
    _check_types({k: v for k, v in out.items() if k != "gate"}, where)
    return out


@dataclass
class Recipe:
    path: Path
    top: dict
    train: dict | None
    prune: dict | None
    eval: dict | None
    bench: list[dict]
    gate: dict | None

    def data(self, value: str | None) -> str | None:
        """A data source: a built-in name stays as it is; a path is taken relative to the recipe."""
        if value is None:
            return None
        if "/" not in value and "\\" not in value and not Path(value).suffix \
                and not (self.path.parent / value).exists():
            return value
        return str(self.resolve(value))

    def resolve(self, value: str | None) -> Path | None:
        """Paths in a recipe are relative to the recipe file's folder."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p)


def load_recipe(path: Path) -> Recipe:
    path = Path(path)
    data = read_toml(path, "recipe")
    top = _norm(data, TOP, str(path))
    if "model" not in top:
        raise UsageError(f"{path}: name the model (model = \"lenet5\", a file.py:Class or a checkpoint)")
    bench = top.get("bench", [])
    if isinstance(bench, dict):
        bench = [bench]
    return Recipe(
        path=path.resolve(),
        top=top,
        train=_norm(top["train"], TRAIN, f"{path} [train]") if "train" in top else None,
        prune=_norm(top["prune"], PRUNE, f"{path} [prune]") if "prune" in top else None,
        eval=_norm(top["eval"], EVAL, f"{path} [eval]") if "eval" in top else None,
        bench=[_norm(b, BENCH, f"{path} [[bench]]") for b in bench],
        gate=top.get("gate"),
    )


def _formats(value) -> str:
    return ",".join(value) if isinstance(value, list) else str(value or "onnx,tflite,openvino")


def run_recipe(
    path: Path, out: Path | None = None, report: Callable[[str], None] = print
) -> tuple[int, Path]:
    """Run every step of the recipe; returns (exit status, run directory)."""
    from edgekit.formats import parse_formats
    from edgekit.models.spec import ModelOptions
    from edgekit.pipeline import ExportPlan, run_export
    from edgekit.prune import PruneSettings

    recipe = load_recipe(path)
    t = recipe.top
    if out is None and t.get("out") is None:  # like export: a new directory per run
        from edgekit.manifest import utc_stamp

        out = Path("runs") / f"{utc_stamp()}-{recipe.path.stem}"
    run_dir = Path(out) if out else recipe.resolve(t.get("out"))
    if run_dir.exists():
        raise UsageError(f"run directory {run_dir} already exists; remove it or pass --out")
    recipe_gate = _gate_rules(recipe) if recipe.gate else None  # check the rules before hours of work
    from edgekit.targets import get_target

    for spec in recipe.bench:  # and every target
        get_target(spec.get("target", "local-cpu"), recipe.resolve(spec.get("targets_dir")))
    preprocess = _preprocess(recipe)
    model = t["model"]
    weights = recipe.resolve(t.get("weights"))
    if Path(str(recipe.resolve(model))).suffix in (".pt", ".pth", ".safetensors") or ".py:" in model:
        model = str(recipe.resolve(model))
    if recipe.train is not None:
        model = _train(recipe, model, run_dir, preprocess, report)
    prune = None
    if recipe.prune is not None:
        p = recipe.prune
        if "ratio" not in p:
            raise UsageError(f"{recipe.path} [prune]: give the ratio (ratio = 0.3)")
        prune = PruneSettings(ratio=float(p["ratio"]), method=p.get("method", "structured"),
                              scope=p.get("scope", "uniform"), keep=tuple(p.get("keep", ())),
                              round_to=p.get("round_to"), finetune_epochs=int(p.get("finetune_epochs", 0)),
                              dataset=recipe.data(p.get("dataset")), finetune_lr=p.get("finetune_lr"))
        prune.check()
    if t.get("max_drop") is not None and not (t.get("int8") and recipe.eval):
        raise UsageError(f"{recipe.path}: max-drop needs int8 = true and an [eval] dataset, whose val "
                         "split measures the int8 drop")
    plan = ExportPlan(
        model=model,
        options=ModelOptions(num_classes=t.get("num_classes"), width=float(t.get("width", 1.0)),
                             input_size=t.get("input_size")),
        weights=weights,
        input_shape=tuple(t["input_shape"]) if t.get("input_shape") else None,
        model_args=t.get("model_args"),
        formats=parse_formats(_formats(t.get("to"))),
        int8=bool(t.get("int8", False)),
        calib=recipe.data(t.get("calib")),
        calib_size=int(t.get("calib_size", 32)),
        verify_samples=int(t.get("verify_samples", 8)),
        out=run_dir,
        seed=int(t.get("seed", 0)),
        command=("edgekit", "run", str(recipe.path)),
        prune=prune,
        preprocess=preprocess,
        max_drop=t.get("max_drop"),
        eval_data=recipe.data(recipe.eval["dataset"]) if recipe.eval and "dataset" in recipe.eval else None,
    )
    outcome = run_export(plan, report=report)
    report(f"run directory: {outcome.run_dir}")
    status = EXIT_FAILED if outcome.failed else 0
    if recipe.eval is not None:
        status = max(status, _eval(recipe, outcome.run_dir, report))
    target = "local-cpu"
    for spec in recipe.bench:
        target = spec.get("target", "local-cpu")
        try:
            status = max(status, _bench(recipe, outcome.run_dir, spec, report))
        except DeviceError as exc:  # one unusable target: say so, go on with the others
            report(f"FAILED bench on {target}: {exc}")
            status = max(status, exc.exit_code)
    from edgekit.report import build

    for kind, where in build(outcome.run_dir, target, want_html=True).items():
        if kind in ("markdown", "html"):
            report(f"report: {where}")
    if recipe_gate is not None:
        from edgekit.gate import run_gate

        named = any(str(k).replace("-", "_") == "target" for k in recipe.gate)
        rules = recipe_gate if named or not recipe.bench else \
            type(recipe_gate)(**{**recipe_gate.__dict__, "target": target})
        result = run_gate(outcome.run_dir, rules)
        failed = [c for c in result["checks"] if c["status"] != "pass"]
        report(f"gate: {'PASSED' if result['passed'] else 'FAILED'} ({len(result['checks'])} checks; "
               f"JUnit {result['junit']})")
        for c in failed:
            measured = "missing" if c["measured"] is None else f"{c['measured']:.4g}"
            report(f"FAILED gate {c['format']}/{c['precision']} {c['rule']}: {measured} "
                   f"(limit {c['op']} {c['limit']:g}) {c['detail']}".rstrip())
        if not result["passed"]:
            return EXIT_GATE, outcome.run_dir
    return status, outcome.run_dir


def _gate_rules(recipe: Recipe):
    from edgekit.gate import GateRules, check_rule_types

    if not isinstance(recipe.gate, dict):
        raise UsageError(f"{recipe.path}: [gate] must be a table of rules, e.g. max-drop = 1")
    table = {str(k).replace("-", "_"): v for k, v in recipe.gate.items()}
    table = check_rule_types(table, f"{recipe.path} [gate]")
    if table.get("baseline"):
        table["baseline"] = str(recipe.resolve(table["baseline"]))
        table.setdefault("max_accuracy_regression", table.get("max_drop"))
    try:
        rules = GateRules(**table)
    except TypeError as exc:
        raise UsageError(f"{recipe.path} [gate]: {exc}".replace("__init__() ", "")) from None
    rules.check()
    return rules


def _preprocess(recipe: Recipe) -> dict | None:
    """The recipe's declared preprocessing: a [preprocess] table or preprocess = "file.toml"."""
    from edgekit.data.preprocess import normalise_keys, read_preprocess_file

    value = recipe.top.get("preprocess")
    if value is None:
        return None
    from edgekit.data.preprocess import override_preprocessing
    from edgekit.models.spec import Preprocessing

    if isinstance(value, str):
        table = read_preprocess_file(recipe.resolve(value))
    else:
        table = normalise_keys(value, f"{recipe.path} [preprocess]")
    override_preprocessing(Preprocessing(), **table)  # bad values fail now, before any training
    return table or None


def _train(recipe: Recipe, model: str, run_dir: Path, preprocess: dict | None, report) -> str:
    from edgekit.trainer import run_training

    tr = recipe.train
    if "dataset" not in tr:
        raise UsageError(f"{recipe.path} [train]: name the dataset (dataset = \"digits\")")
    t = recipe.top
    ckpt = recipe.resolve(tr.get("out")) or run_dir.with_name(run_dir.name + ".ckpt.pt")
    if ckpt.exists():
        raise UsageError(f"checkpoint {ckpt} already exists; remove it or set [train] out")
    path, _ = run_training(
        model, recipe.data(tr["dataset"]), out=ckpt, seed=int(tr.get("seed", t.get("seed", 0))),
        options={k: t.get(k) for k in ("num_classes", "width", "input_size")},
        config={k: tr.get(k) for k in ("epochs", "batch_size", "lr", "max_minutes")},
        overrides=preprocess,
        report=report, progress=False,
    )
    return str(Path(path).resolve())


def _eval(recipe: Recipe, run_dir: Path, report) -> int:
    from edgekit.evaluate import evaluate_run, table_rows

    ev = recipe.eval
    if "dataset" not in ev:
        raise UsageError(f"{recipe.path} [eval]: name the dataset (dataset = \"digits\")")
    dataset = recipe.data(ev["dataset"])
    result = evaluate_run(run_dir, dataset, split=ev.get("split", "test"), limit=ev.get("limit"),
                          report=report)
    head, rows = table_rows(result)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    for line in (head, *rows):
        report("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
    return 0


def _bench(recipe: Recipe, run_dir: Path, spec: dict, report) -> int:
    from edgekit.bench.core import BenchSettings, bench
    from edgekit.targets import get_target

    settings = BenchSettings(threads=spec.get("threads"), batch=int(spec.get("batch", 1)),
                             warmup=int(spec.get("warmup", 5)), iters=spec.get("iters"),
                             seconds=spec.get("seconds"), torch_baseline=not spec.get("no_torch", False))
    target = get_target(spec.get("target", "local-cpu"), recipe.resolve(spec.get("targets_dir")))
    record = bench(run_dir, target, settings, host=spec.get("host"), python=spec.get("python"),
                   ssh_config=recipe.resolve(spec.get("ssh_config")), report=report)
    failed = [r for r in record["results"] if r.get("status") == "failed"]
    for r in record["results"]:
        if r.get("status") == "ok":
            report(f"  {r['format']:8} {r['precision']:5} p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
        elif r.get("status") == "skipped":
            report(f"  {r['format']:8} {r['precision']:5} skipped: {r.get('error')}")
        else:
            report(f"FAILED bench {r['format']} {r['precision']}: {r.get('error')}")
    return EXIT_FAILED if failed else 0
