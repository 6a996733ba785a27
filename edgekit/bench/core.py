"""``edgekit bench``: latency, memory and size of every artefact of a run (or of one model file).

Each artefact runs in its own process (``devices``), so one crash or one runtime's memory never
touches another's numbers. For a run directory on this machine, the PyTorch fp32 model the run
was made from is timed too (eager, in its own process), as the base the artefacts are compared to.
Results go into the run's manifest under ``bench[<target>]`` (the latest; each earlier or concurrent
record of the target moves to ``history``, so none is lost) and into each artefact's entry. Every
artefact's sha256 is checked against the manifest first (``manifest.check_artefacts``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.errors import DataError, UsageError
from edgekit.runs import manifest as mf
from edgekit.targets import Target

DEFAULT_SECONDS = 3.0
MIN_ITERS = 10


@dataclass(frozen=True)
class BenchSettings:
    threads: int | None = None  # None: the target's; 0: one per core
    batch: int = 1
    warmup: int = 5
    iters: int | None = None
    seconds: float | None = None  # neither iters nor seconds: DEFAULT_SECONDS
    seed: int = 0
    torch_baseline: bool = True

    def loop(self) -> dict:
        seconds = self.seconds if self.seconds is not None or self.iters is not None else DEFAULT_SECONDS
        return {"warmup": self.warmup, "iters": self.iters, "seconds": seconds,
                "min_iters": 1 if self.iters is not None else MIN_ITERS, "batch": self.batch,
                "seed": self.seed}

    @classmethod
    def from_mapping(cls, mapping: dict, where: str = "", base=None,
                     extra: tuple[str, ...] = ()) -> BenchSettings:
        """Checked settings from option names (``edgekit.settings``): ``bench``'s options or a recipe's
        [[bench]] table; ``extra``: the keys the caller reads itself (target, the connection's)."""
        from edgekit.settings import Reader

        r = Reader(mapping, where, base)
        settings = cls(threads=r.integer("threads", least=0), batch=r.integer("batch", 1, least=1),
                       warmup=r.integer("warmup", 5, least=0), iters=r.integer("iters", least=1),
                       seconds=r.number("seconds", above=0), torch_baseline=not r.flag("no_torch"))
        r.done(extra)
        if settings.iters is not None and settings.seconds is not None:
            raise r.error(f"pass {r.name('iters')} or {r.name('seconds')}, not both")
        return settings


@dataclass
class Item:
    """One thing to time: an artefact of a run, a lone model file, or the PyTorch model."""

    format: str
    precision: str
    files: list[Path]
    manifest_entry: dict | None = None
    check: mf.FileCheck | None = None  # its files against the manifest (``check_files``)

    @property
    def key(self) -> str:
        return f"{self.format}/{self.precision}"


def collect(path: Path) -> tuple[dict | None, list[Item]]:
    """(manifest or None, items) for a run directory or one .onnx/.xml/.tflite file."""
    from edgekit.formats import format_class, format_for_file

    path = Path(path)
    if path.is_dir():
        if not (path / mf.MANIFEST).is_file():
            raise UsageError(f"{path} is not an edgekit run directory (no manifest.json); pass a run "
                             "directory written by 'edgekit export' or a .onnx/.xml/.tflite file")
        manifest = mf.read_manifest(path)
        items = []
        for art in manifest.get("artefacts", []):
            if art.get("status") != "ok":
                continue
            files = [path / f["path"] for f in art.get("files", [])] or [path / art["path"]]
            items.append(Item(art["format"], art["precision"], files, art))
        if not items:
            raise UsageError(f"{path} holds no artefact that exported; run 'edgekit export' again")
        return manifest, items
    if not path.is_file():
        raise UsageError(f"{path} does not exist; pass a run directory or a .onnx/.xml/.tflite file")
    fmt = format_for_file(path)
    cls = format_class(fmt)
    files = [path]
    for suffix in cls.companions:  # files that travel beside the main one (OpenVINO's .bin)
        companion = path.with_suffix(suffix)
        if not companion.is_file():
            what = cls.files_note or f"a {fmt} artefact is the {cls.extension} and its {suffix}"
            raise DataError(f"{companion.name} is missing beside {path.name}: {what}; put both in one folder")
        files.append(companion)
    return None, [Item(fmt, "file", files)]


def check_files(path: Path, items: list[Item], accept_changed: bool = False) -> None:
    """Each artefact's files against the sha256 the manifest recorded (``manifest.check_artefacts``:
    a changed one stops here, exit 2, unless ``accept_changed``), kept in ``item.check``."""
    mine = [i for i in items if i.manifest_entry is not None]
    for item, found in zip(mine, mf.check_artefacts(path, [i.manifest_entry for i in mine], accept_changed)):
        item.check = found


def missing(item: Item) -> bool:
    return item.check is not None and item.check.status == "missing"


def make_device(target: Target, overrides: dict | None = None):
    """The device of ``target``'s connection kind; ``overrides``: the command line's options of
    that kind (profile key -> value, None: not given)."""
    from edgekit.devices import build

    return build(target, overrides)


def support_files(formats) -> dict[str, list[Path]]:
    """What the device runner loads beside the model files: the formats' shared runtime kit and
    each format's runtime module (its one session class), keyed like ``Device.stage``'s files."""
    from edgekit.bench import runtime_kit
    from edgekit.formats import format_class

    found = {"kit": [Path(runtime_kit.__file__)]}
    for fmt in sorted(set(formats)):
        found[f"runtime:{fmt}"] = [format_class(fmt).runtime_file()]
    return found


def runner_spec(fmt: str, where: dict[str, str] | None = None) -> dict:
    """The spec keys that tell the runner how to open ``fmt``: its runtime module and the kit, as
    ``Device.stage`` placed them (``where``), else here in edgekit; its companion suffixes."""
    from edgekit.formats import format_class

    where = where or {key: str(paths[0]) for key, paths in support_files([fmt]).items()}
    return {"runtime": where[f"runtime:{fmt}"], "kit": where["kit"],
            "companions": list(format_class(fmt).companions)}


def spec_for(item: Item, where: str, target: Target, settings: BenchSettings,
             support: dict[str, str] | None = None) -> dict:
    threads = settings.threads if settings.threads is not None else target.threads
    return {
        "path": where,
        **runner_spec(item.format, support),
        "format": item.format,
        "threads": threads,
        "runtimes": target.runtimes,
        **target.runner_settings(),
        "require_accelerator": target.accelerator,
        **settings.loop(),
    }


def timeout_for(settings: BenchSettings) -> float:
    budget = settings.seconds or DEFAULT_SECONDS
    return 600.0 + 4 * budget + (settings.iters or 0) * 1.0


def bench(
    path: Path,
    target: Target,
    settings: BenchSettings,
    overrides: dict | None = None,
    report: Callable[[str], None] = print,
    accept_changed: bool = False,
) -> dict:
    """Time every artefact on ``target``; store the results in the run's manifest; return them. A
    missing artefact is a row marked missing; a changed one stops it all (``check_files``)."""
    from edgekit.devices.base import check_no_device_everywhere, check_runtime_somewhere

    path = Path(path)
    manifest, items = collect(path)
    check_files(path, items, accept_changed)
    from edgekit.layout import manifest_axes

    batch_axis = manifest_axes(manifest).input if manifest else 0
    if batch_axis and settings.batch > 1:
        raise UsageError(f"--batch {settings.batch}: this run's model takes its batch at axis {batch_axis}, "
                         "and its artefacts have a fixed batch of 1; bench it with --batch 1")
    from edgekit.devices import connection, given_address

    device = make_device(target, overrides)
    address = given_address(target, overrides)  # the device the command line named, or None
    if device.judged_here:  # a microcontroller: Vela's estimate, or a refusal (edgekit.mcu)
        from edgekit.mcu.estimate import bench_estimates

        record = bench_estimates(path, target, device, manifest, items, asdict(settings), report)
        if manifest is not None:
            store(path, target_key(target, address), record)
        return record
    runnable = set(target.formats())
    results: list[dict] = []
    todo: list[Item] = []
    for item in items:
        if item.format not in runnable:
            results.append({"format": item.format, "precision": item.precision, "status": "skipped",
                            "error": f"target {target.name} runs no {item.format}"})
        elif missing(item):
            results.append({"format": item.format, "precision": item.precision, **item.check.row(path)})
        else:
            todo.append(item)
    if todo and not device.this_machine:  # will each run there (edgekit.compat)? Before copying anything
        from edgekit.compat.device import preflight

        todo, refused = preflight(todo, target, device, (manifest or {}).get("tools"), report)
        results.extend(refused)
    started = time.perf_counter()
    with device:
        if todo:
            where = device.stage({**{item.key: item.files for item in todo},
                                  **support_files(item.format for item in todo)})
            for item in todo:
                report(f"timing {item.format} {item.precision} on {device.name} ...")
                spec = {**spec_for(item, where[item.key], target, settings, where), "batch_axis": batch_axis}
                result = device.run(spec, timeout_for(settings))
                results.append({"format": item.format, "precision": item.precision, **result,
                                **(item.check.row(path) if item.check else {})})
    if target.accelerator:
        check_no_device_everywhere(results, target.name)
    check_runtime_somewhere(results, device.name)
    for r in results:  # a device that runs some formats: the others are skipped, not failures
        if r.get("kind") == "no_runtime":
            r["status"] = "skipped"
    local_cpu = connection(target.connect).this_machine and not target.accelerator
    if manifest is not None and settings.torch_baseline and local_cpu:
        report("timing the PyTorch fp32 model (eager) ...")
        results.insert(0, torch_baseline(path, settings, target))
    order = {(i.format, i.precision): n for n, i in enumerate(items)}
    results.sort(key=lambda r: (r["format"] != "pytorch", order.get((r["format"], r["precision"]), 99)))
    add_speedups(results)
    name_files(results, items, path, manifest)
    record = {
        "created": mf.utc_now(),
        "target": target.to_dict() | ({connection(target.connect).address_key: address} if address
                                      else {}),
        "settings": asdict(settings) | {"resolved_threads": settings.threads if settings.threads is not None
                                        else target.threads},
        "environment": next((r["environment"] for r in results if r.get("environment")), None),
        "emulated": emulated(target, results),
        "host_environment": mf.environment(),
        "tools": _tools(items) if manifest is None else {"edgekit": mf.tool_versions()["edgekit"]},
        "seconds": round(time.perf_counter() - started, 2),
        "results": results,
        "warnings": slower_int8(results),
    }
    if manifest is not None:
        store(path, target_key(target, address), record)
    return record


def _tools(items: list[Item]) -> dict[str, str]:
    """Versions of edgekit's core tools and of the formats of the files benched."""
    from edgekit.formats import get_format

    found = mf.tool_versions()
    for name in dict.fromkeys(i.format for i in items):
        found.update(get_format(name).tool_versions())
    return found


def emulated(target: Target, results: list[dict]) -> str | None:
    """Why these figures are not device latency (QEMU), or None: the profile says so or the runner saw it."""
    envs = [r.get("environment") or {} for r in results]
    seen = next((env["emulated"] for env in envs if env.get("emulated")), None)
    return seen or (f"target {target.name} is emulated (emulated = true in its profile)" if target.emulated
                    else None)


def target_key(target: Target, address: str | None) -> str:
    """The record's name: the target's, or NAME@ADDRESS when the command line named another device."""
    return f"{target.name}@{address}" if address and address != target.address() else target.name


def torch_baseline(run_dir: Path, settings: BenchSettings, target: Target) -> dict:
    """The run's PyTorch model, eager fp32, timed like the artefacts in its own process."""
    import sys

    from edgekit.devices.local import run_process

    threads = settings.threads if settings.threads is not None else target.threads
    spec = {"run_dir": str(Path(run_dir).resolve()), "threads": threads or os.cpu_count(),
            **settings.loop()}
    result = run_process([sys.executable, "-m", "edgekit.bench.torch_baseline", "-"], spec,
                         timeout_for(settings), "this machine")
    return {"format": "pytorch", "precision": "fp32", **result}


def add_speedups(results: list[dict]) -> None:
    """speedup_vs_fp32: the format's fp32 p50 over this one's; speedup_vs_torch likewise for PyTorch."""
    p50 = {(r["format"], r["precision"]): r.get("p50_ms") for r in results if r.get("status") == "ok"}
    base = p50.get(("pytorch", "fp32"))
    for r in results:
        if r.get("status") != "ok":
            continue
        fp32 = p50.get((r["format"], "fp32"))
        if r["precision"] == "int8" and fp32:
            r["speedup_vs_fp32"] = fp32 / r["p50_ms"]
        if base and r["format"] != "pytorch":
            r["speedup_vs_torch"] = base / r["p50_ms"]


def slower_int8(results: list[dict]) -> list[str]:
    """One line per int8 artefact that is slower than its own fp32 on this target (int8 is only worth
    deploying where the runtime has int8 kernels for the CPU), naming what to do about it."""
    rows = {(r["format"], r["precision"]): r for r in results if r.get("status") == "ok"}
    lines = []
    for (fmt, precision), r in rows.items():
        fp32 = rows.get((fmt, "fp32"))
        if precision != "int8" or not fp32 or r["p50_ms"] <= fp32["p50_ms"]:
            continue
        noisy = max(r.get("cv") or 0, fp32.get("cv") or 0)
        lines.append(
            f"{fmt} int8 is slower than {fmt} fp32 here (p50 {r['p50_ms']:.3g} vs {fp32['p50_ms']:.3g} ms): "
            + (f"the timings vary (CV {noisy:.0%}), so rerun with --seconds 10 on a quiet machine; "
               "if it holds, " if noisy > 0.1 else "")
            + f"deploy {fmt} fp32 on this target, or another format's int8")
    return lines


SUMMARY_KEYS = ("status", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "cv", "throughput_per_s",
                "peak_rss_bytes", "load_ms", "first_inference_ms", "device", "threads", "batch",
                "speedup_vs_fp32", "error", "sha256", "accepted_changed", "estimated")


def store(run_dir: Path, key: str, record: dict) -> None:
    """Add the bench record to the run's manifest as it is now (``manifest.update``: under its lock,
    so an eval or another bench that finished meanwhile is kept): the latest of target ``key`` in
    ``bench[key]``, the one it takes the place of in ``history`` (``manifest.keep_record``), each
    artefact's figures in its entry (naming the record). A run directory that cannot take it:
    ``record["not_stored"]`` says why (``manifest.update_or_note``)."""
    by_key = {(r["format"], r["precision"]): r for r in record["results"]}

    def add(fresh: dict) -> None:
        mf.keep_record(fresh, "bench", record, key)
        for art in fresh.get("artefacts", []):
            r = by_key.get((art["format"], art["precision"]))
            if r is not None:
                art.setdefault("bench", {})[key] = {k: r[k] for k in SUMMARY_KEYS if k in r} | {
                    "record": record["id"]}

    mf.update_or_note(run_dir, add, record)


def name_files(results: list[dict], items: list[Item], path: Path, manifest: dict | None) -> None:
    """Put in each row the file it measured: ``path`` (relative to the run directory, or the lone
    file as given) and its ``sha256``; the PyTorch row names the checkpoint or weights it loaded."""
    by_key = {(i.format, i.precision): i for i in items}
    for n, r in enumerate(results):
        if r["format"] == "pytorch":
            ident = baseline_source(manifest or {})
        else:
            ident = file_identity(by_key[(r["format"], r["precision"])], path, r.get("status"))
        results[n] = {"format": r["format"], "precision": r["precision"], **ident, **r}


def file_identity(item: Item, root: Path, status: str | None) -> dict:
    entry = item.manifest_entry
    if entry is None:  # a lone file: as the user named it
        return {"path": str(root), "sha256": mf.sha256_file(root)}
    main = item.files[0]
    if status == "ok" and item.check is not None and item.check.status == "ok":  # compared before it ran
        return {"path": entry["path"], "sha256": entry.get("sha256")}
    return {"path": entry["path"], "sha256": mf.sha256_file(main) if main.is_file() else None}


def baseline_source(manifest: dict) -> dict:
    """The file the PyTorch model was rebuilt from (``models.resolve.run_plan_fields``): the run's
    pruned checkpoint, else the weights or training checkpoint, else a user model's .py file (random
    weights); None for a zoo model with random weights."""
    from edgekit.models.resolve import PRUNED_CHECKPOINT

    if manifest.get("pruning"):
        return {"path": PRUNED_CHECKPOINT, "sha256": manifest["pruning"].get("checkpoint", {}).get("sha256")}
    weights = manifest.get("model", {}).get("weights") or {}
    if weights.get("path"):
        return {"path": weights["path"], "sha256": weights.get("sha256")}
    code = Path(manifest.get("settings", {}).get("model", "").rpartition(":")[0])
    if code.suffix == ".py" and code.is_file():
        return {"path": str(code), "sha256": mf.sha256_file(code)}
    return {"path": None, "sha256": None}
