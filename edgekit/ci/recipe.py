"""``edgekit run RECIPE.toml``: the whole pipeline from one file, so that a CI job is one command.

Keys are the CLI's option names (``calib-size`` or ``calib_size``, both accepted); each table is
read and checked by the settings class the command uses (``edgekit.settings``: ``ExportPlan`` the
top level with [prune] and [preprocess], ``BenchSettings`` each [[bench]], ``GateRules`` the
[gate]), all before any work:

    model = "lenet5"                      # zoo name, file.py:NAME, package.module:NAME, or a checkpoint
    out = "runs/lenet5-ci"                # the run directory (must not exist; default
                                          # runs/<time>-<recipe name>)
    to = ["onnx", "tflite", "openvino"]   # or "onnx,tflite"
    int8 = true
    calib = "digits"
    calib-size = 64
    # weights, num-classes, width, input-size, input-shape (a list of them for several inputs),
    # batch-axis, model-args, seed, verify-samples,
    # ray = "auto" (or an address: --max-drop trials and eval shards as Ray tasks)
    max-drop = 0.3                        # int8 budget in points, measured on [eval]'s val split
    # target = "cortex-m4-256k"           # a microcontroller: tflite full-integer int8, firmware/

    [preprocess] # optional: the model's preprocessing (keys of --preprocess files: resize, mean,
    resize = "squash"                    #   std, grayscale, crop-fraction, interpolation, scale,
    mean = 0.1307                        #   layout, pad-value), or preprocess = "file.toml"

    [train]      # optional, first: edgekit train MODEL --dataset ... (then export the checkpoint)
    dataset = "digits"
    epochs = 20
    [prune]      # optional: ratio, method, scope, keep, round-to, finetune-epochs, dataset
    [eval]       # optional: dataset, split, limit, target (a microcontroller: scored in TFLite Micro)
    [[bench]]    # optional, any number: target, targets-dir, threads, batch, warmup, iters, seconds,
    target = "local-cpu"                 #   no-torch, and bench's options of the target's connection
                                         #   kind (`edgekit bench --help`)
    seconds = 1
    [gate]       # optional: the rules of `edgekit gate` (max-drop, min-agreement, baseline, ...)
    max-drop = 1.0

Steps run in that order; a report (RUN_DIR/report/) is always written. Exit status: 4 when the
gate fails, else 1 when any artefact failed to export or run, else 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import EXIT_FAILED, EXIT_GATE, DeviceError, UsageError
from edgekit.settings import Reader
from edgekit.tomlfile import read_toml

if TYPE_CHECKING:
    from edgekit.ci.gate import GateRules
    from edgekit.export.plan import ExportPlan

STEPS = ("train", "bench", "gate")  # top-level tables besides the export's own (prune, preprocess, eval)
WHERE = ("target", "targets_dir")  # [[bench]] keys besides the settings and the connection kinds' options


@dataclass
class Recipe:
    """A recipe with every step read and checked, before any work."""

    path: Path
    plan: ExportPlan  # the export; its out is the recipe's (None: not given)
    options: dict  # num-classes, width, input-size as given (None: the trainer's default), for [train]
    train: dict | None  # dataset, out, seed, config
    eval: dict | None  # dataset, split, limit
    bench: list[dict]  # settings, target, targets_dir, overrides (the connection kind's options)
    gate: GateRules | None
    gate_target: bool  # [gate] names its target; else the last [[bench]]'s


def load_recipe(path: Path) -> Recipe:
    """Read a recipe; each table is checked by its settings class (``edgekit.settings``)."""
    from edgekit.ci.gate import GateRules
    from edgekit.export.plan import ExportPlan

    path = Path(path)
    where, base = str(path), path.resolve().parent
    top = Reader(read_toml(path, "recipe"), where, base)
    train, evaluation, gate = (top.table(key) for key in ("train", "eval", "gate"))
    ev = _eval_step(evaluation, f"{where} [eval]", base)
    plan = ExportPlan.from_mapping({**top.values, "eval": ev["dataset"] if ev else None}, where, base, STEPS)
    rules = None
    if gate:  # checked now, before hours of work
        rules = GateRules.from_mapping(gate, f"{where} [gate]", base)
        rules.check()
    return Recipe(
        path=path.resolve(),
        plan=plan,
        options={key: top.values.get(key) for key in ("num_classes", "width", "input_size")},
        train=_train_step(train, f"{where} [train]", base),
        eval=ev,
        bench=[_bench_step(table, f"{where} [[bench]]", base) for table in top.tables("bench")],
        gate=rules,
        gate_target="target" in Reader(gate or {}).values,
    )


def _train_step(table: dict | None, where: str, base: Path) -> dict | None:
    if table is None:
        return None
    r = Reader(table, where, base)
    step = {"dataset": r.data("dataset"), "out": r.path("out"), "seed": r.integer("seed"),
            "config": {"epochs": r.integer("epochs", least=1), "batch_size": r.integer("batch_size", least=1),
                       "lr": r.number("lr", above=0), "max_minutes": r.number("max_minutes", above=0)}}
    r.done()
    if step["dataset"] is None:
        raise r.error('name the dataset (dataset = "digits")')
    return step


def _eval_step(table: dict | None, where: str, base: Path) -> dict | None:
    if table is None:
        return None
    r = Reader(table, where, base)
    step = {"dataset": r.data("dataset"), "split": r.text("split", "test"),
            "limit": r.integer("limit", least=1), "target": r.text("target"),
            "targets_dir": r.path("targets_dir")}
    r.done()
    if step["dataset"] is None:
        raise r.error('name the dataset (dataset = "digits")')
    return step


def _bench_step(table: dict, where: str, base: Path) -> dict:
    from edgekit.bench.core import BenchSettings
    from edgekit.devices import connection, options, resolve
    from edgekit.targets import get_target

    known = options()
    settings = BenchSettings.from_mapping(table, where, base, extra=WHERE + tuple(o.key for o, _ in known))
    r = Reader(table, where, base)
    step = {"settings": settings, "target": r.text("target", "local-cpu"),
            "targets_dir": r.path("targets_dir"),
            "overrides": {o.key: r.path(o.key) if o.path else r.text(o.key) for o, _ in known}}
    # An unknown target, or an option its kind does not take, fails now too; so does a microcontroller
    # without a timing model (bench gives Vela's estimate of an Ethos-U; a plain Cortex-M has none).
    target = get_target(step["target"], step["targets_dir"])
    resolve(target, step["overrides"])
    kind = connection(target.connect)
    if kind.judged_here and not kind.vela:
        raise r.error(f"target {target.name} is a microcontroller edgekit has no timing model of; check it "
                      "(`edgekit check RUN --target ...`) or give [eval] that target for its accuracy in "
                      "TensorFlow Lite Micro")
    return step


def run_recipe(
    path: Path, out: Path | None = None, report: Callable[[str], None] = print
) -> tuple[int, Path]:
    """Run every step of the recipe; returns (exit status, run directory)."""
    from edgekit.export.plan import run_export

    recipe = load_recipe(path)
    plan = recipe.plan
    if out is None and plan.out is None:  # like export: a new directory per run
        from edgekit.runs.manifest import utc_stamp

        out = Path("runs") / f"{utc_stamp()}-{recipe.path.stem}"
    run_dir = Path(out) if out else plan.out
    if run_dir.exists():
        raise UsageError(f"run directory {run_dir} already exists; remove it or pass --out")
    if recipe.train is not None:
        plan = replace(plan, model=_train(recipe, run_dir, report))
    plan = replace(plan, out=run_dir, command=("edgekit", "run", str(recipe.path)))
    if plan.ray:  # ray = "auto" or an address: the search and eval use it; unreachable fails now
        from edgekit.distributed import connect

        connect(plan.ray)
    outcome = run_export(plan, report=report)
    report(f"run directory: {outcome.run_dir}")
    status = EXIT_FAILED if outcome.failed or outcome.firmware_error else 0
    if recipe.eval is not None:
        status = max(status, _eval(recipe, outcome.run_dir, report))
    target = "local-cpu"
    for step in recipe.bench:
        target = step["target"]
        try:
            status = max(status, _bench(outcome.run_dir, step, report))
        except DeviceError as exc:  # one unusable target: say so, go on with the others
            report(f"FAILED bench on {target}: {exc}")
            status = max(status, exc.exit_code)
    from edgekit.report import build

    for kind, where in build(outcome.run_dir, target, want_html=True).items():
        if kind in ("markdown", "html"):
            report(f"report: {where}")
    if recipe.gate is not None:
        from edgekit.ci.gate import run_gate

        named = recipe.gate_target or not recipe.bench
        rules = recipe.gate if named else replace(recipe.gate, target=target)
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


def _train(recipe: Recipe, run_dir: Path, report) -> str:
    from edgekit.train.trainer import run_training

    tr = recipe.train
    ckpt = tr["out"] or run_dir.with_name(run_dir.name + ".ckpt.pt")
    if ckpt.exists():
        raise UsageError(f"checkpoint {ckpt} already exists; remove it or set [train] out")
    seed = recipe.plan.seed if tr["seed"] is None else tr["seed"]
    path, _ = run_training(
        recipe.plan.model, tr["dataset"], out=ckpt, seed=seed,
        options=recipe.options, config=tr["config"], overrides=recipe.plan.preprocess,
        report=report, progress=False,
    )
    return str(Path(path).resolve())


def _eval(recipe: Recipe, run_dir: Path, report) -> int:
    from edgekit.measure.evaluate import evaluate_run, table_rows
    from edgekit.targets import get_target

    ev = recipe.eval
    result = evaluate_run(run_dir, ev["dataset"], split=ev["split"], limit=ev["limit"], report=report,
                          ray=recipe.plan.ray,
                          target=get_target(ev["target"], ev["targets_dir"]) if ev["target"] else None)
    head, rows = table_rows(result)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    for line in (head, *rows):
        report("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
    return 0


def _bench(run_dir: Path, step: dict, report) -> int:
    from edgekit.bench.core import bench
    from edgekit.targets import get_target

    target = get_target(step["target"], step["targets_dir"])
    record = bench(run_dir, target, step["settings"], step["overrides"], report=report)
    failed = [r for r in record["results"] if r.get("status") == "failed"]
    for r in record["results"]:
        if r.get("status") == "ok":
            report(f"  {r['format']:8} {r['precision']:5} p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
        elif r.get("status") == "skipped":
            report(f"  {r['format']:8} {r['precision']:5} skipped: {r.get('error')}")
        else:
            report(f"FAILED bench {r['format']} {r['precision']}: {r.get('error')}")
    for line in record.get("warnings", []):
        report(f"warning: {line}")
    return EXIT_FAILED if failed else 0
