"""Accuracy of the PyTorch model and of every artefact of a run, on the same labelled samples."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.runs import manifest as mf

SHARD = 256  # a Ray shard holds whole multiples of this many samples
# Batches tried (in this order, on the first samples, whose outputs are kept) for the PyTorch model
# and for artefacts with a dynamic batch; the rest runs at the one fastest per sample here. A
# batch that is not faster per sample than the best so far, or a call longer than PROBE_SLOW_S,
# ends the trials. Fixed-batch artefacts (the default export) run at their batch, 1, as `bench`.
PROBE_BATCHES = (1, 4, 16, 64, 256)
PROBE_SLOW_S = 2.0


def evaluate_run(
    run_dir: Path,
    source: str,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    preprocessing_overrides: dict | None = None,
    report: Callable[[str], None] = print,
    ray: str | None = None,
    task: str | None = None,
    accept_changed: bool = False,
    target=None,
) -> dict:
    """Evaluate the run's PyTorch model and each artefact; store and return the results. ``ray``
    ("auto" or an address): run each of them on shards of the samples as Ray tasks (same numbers).
    ``task`` (``--task``): what the model's output means, instead of the run's (recorded).

    Each artefact's sha256 is checked against the manifest before anything is loaded
    (``manifest.check_artefacts``): a changed one stops it (exit 2) unless ``accept_changed`` (then
    its row records the new sha256); a missing one is a row marked missing and the others are scored.
    The record becomes ``manifest["eval"]``; the one it replaces moves to ``history``.

    ``target`` a microcontroller (``Device.judged_here``): its artefacts (.tflite) are scored in
    TensorFlow Lite Micro, the device's kernels, and each row says how often TFLM's top-1 agrees with
    LiteRT's on the same file (``row["litert"]``); the others are skipped."""
    from edgekit.data.datasets import load_dataset
    from edgekit.data.preprocess import fit_to_input, override_preprocessing
    from edgekit.measure.metrics import REGRESS_TOLERANCE, agreement, drop_pp, metrics, primary_metric
    from edgekit.models.describe import apply_task
    from edgekit.models.resolve import load_run_model

    run_dir = Path(run_dir)
    manifest = mf.read_manifest(run_dir)
    exported = [a for a in manifest["artefacts"] if a.get("status") == "ok"]
    found = mf.check_artefacts(run_dir, exported, accept_changed)  # first: nothing scored under a wrong name
    model = apply_task(load_run_model(manifest, run_dir), task)
    pre = override_preprocessing(model.preprocessing, **(preprocessing_overrides or {}))
    pre = fit_to_input(pre, model.input_spec, model.name, preprocessing_overrides)  # what really runs
    data = load_dataset(source, model, split=split, n=limit, seed=seed, preprocessing=pre)
    if data.extra.get("skipped"):
        from edgekit.data.calibration import skipped_message

        report(f"warning: {skipped_message(source, data.extra['skipped'])}")
    if (data.extra.get("values") or {}).get("warning"):  # the source's values contradict the preprocessing
        report(f"warning: {data.extra['values']['warning']}")
    key = primary_metric(model.task)
    arts = [(a["format"], a["precision"], a["path"]) for a, f in zip(exported, found)
            if f.status != "missing"]
    labels = {(a["format"], a["precision"]): a.get("int8_share", {}).get("label")
              for a in manifest["artefacts"]}
    micro = _micro(target, ray)
    if micro:
        arts = [a for a in arts if a[0] in micro] + [(*a, MICRO) for a in arts if a[0] in micro]
    if ray:
        from edgekit.distributed import connect

        backend = connect(ray)
        outputs = _sharded(backend, run_dir, arts, data.x)
    else:
        backend = None
        module = model.axes.module(model.module)
        outputs = [shard_logits(str(run_dir), None, data.x, module)]
        changed = {(a["format"], a["precision"]): f.status == "changed" for a, f in zip(exported, found)}
        outputs += [_scored(run_dir, which, data.x, module, changed[which[:2]]) for which in arts]
    ref_logits = outputs[0][0]
    ref = metrics(ref_logits, data)
    label = getattr(model.module, "label", None)  # an ONNX file's reference: "onnxruntime (source)"
    rows = [{"format": "pytorch", "precision": "fp32", "status": "ok", **({"label": label} if label else {}),
             **ref, "agreement": 1.0, "drop_pp": 0.0, "seconds": round(outputs[0][2], 2)}]
    timing = [{"format": "pytorch", "precision": "fp32", **outputs[0][3]}]
    scored = iter(outputs[1:])
    litert = {}
    if micro:  # each TFLM output against LiteRT's on the same file (scored first)
        litert = {a[:2]: next(scored)[0] for a in arts if len(a) == 3}
    for art, state in zip(exported, found):
        fmt_name, precision = art["format"], art["precision"]
        if state.status == "missing":
            rows.append({"format": fmt_name, "precision": precision, **state.row(run_dir)})
            continue
        if micro and fmt_name not in micro:
            rows.append({"format": fmt_name, "precision": precision, "status": "skipped",
                         "error": f"target {target.name} runs {', '.join(micro)} only"})
            continue
        logits, inference_precision, seconds, batches = next(scored)
        if isinstance(logits, str):  # its runtime could not run it (a file changed into junk): one row
            rows.append({"format": fmt_name, "precision": precision, "status": "failed", "error": logits,
                         **state.row(run_dir)})
            continue
        m = metrics(logits, data)
        timing.append({"format": fmt_name, "precision": precision, **batches})
        row = {"format": fmt_name, "precision": precision, "status": "ok", **m,
               "agreement": agreement(ref_logits, logits, model.task),
               "drop_pp": drop_pp(ref[key], m[key], key), "seconds": round(seconds, 2), **state.row(run_dir)}
        if inference_precision:
            row["inference_precision"] = inference_precision
        if (fmt_name, precision) in litert:
            row["runtime"] = "tflite-micro"
            row["litert"] = _beside(litert[(fmt_name, precision)], logits, data, key, model.task)
        label = labels.get((fmt_name, precision))
        if label and label != precision:  # "partly int8 (N% of weights)", read back at export
            row["int8_label"] = label
        rows.append(row)
    result = {
        "created": mf.utc_now(),
        "dataset": data.name,
        "split": data.split,
        "samples": int(len(data)),
        "sha256": data.sha256,
        "metric": key,
        "task": model.task,
        **({"agreement_tolerance": f"{REGRESS_TOLERANCE:g} of the PyTorch outputs' range",
            "drop": "percent the MAE rose above PyTorch's"} if model.task == "regression" else {}),
        **({"task_given": task} if task else {}),
        **({"target": target.name, "runtime": _micro_version()} if micro else {}),
        "preprocessing": pre.to_dict(),
        "preprocessing_overrides": dict(preprocessing_overrides or {}),
        **({"values": data.extra["values"]} if data.extra.get("values") else {}),
        "backend": backend.to_dict() if backend else {"backend": "local"},
        "timing": timing,  # per model: the batch it ran at, its threads, the batches tried (ms/sample)
        "results": rows,
    }
    by_key = {(r["format"], r["precision"]): r for r in rows}

    def add(fresh: dict) -> None:  # the manifest as it is now: a bench that finished meanwhile is kept
        mf.keep_record(fresh, "eval", result)
        for art in fresh.get("artefacts", []):
            if art.get("status") == "ok" and (art["format"], art["precision"]) in by_key:
                art["eval"] = by_key[(art["format"], art["precision"])] | {"record": result["id"]}

    mf.update_or_note(run_dir, add, result)
    return result


def shard_logits(run_dir: str, which: tuple[str, str, str] | None, x, module=None, start: int = 0,
                 stop: int | None = None) -> tuple:
    """(logits, inference precision or None, seconds, {"batch", "threads", "ms_per_sample"}) of the
    run's PyTorch model (``which`` None) or of the artefact (format, precision, path) on
    ``x[start:stop]``, each at the batch fastest per sample here (``run_fastest``); the same code
    runs locally (with ``module``, the loaded model) and in a Ray task (which loads the model or
    opens the artefact once per worker and keeps it for the next shard). The seconds include
    opening the artefact (loading the model where ``module`` is None)."""
    opener = _open if module is not None else _cached_open
    from edgekit.export.verify import run_batched
    from edgekit.layout import count, first, manifest_axes, take
    from edgekit.measure.metrics import predict

    began = time.perf_counter()
    x = take(x, slice(start, stop))
    if which is None:
        import torch

        model = module if module is not None else opener(run_dir, None)
        logits, timing = run_fastest(lambda b: predict(model, b, count(b)), x, PROBE_BATCHES[-1])
        return logits, None, time.perf_counter() - began, {**timing, "threads": torch.get_num_threads()}
    manifest = mf.read_manifest(Path(run_dir))
    session = opener(run_dir, which)
    axes = manifest_axes(manifest)
    logits, timing = run_fastest(lambda b: first(run_batched(session, b, count(b), axes)), x,
                                 _largest_batch(manifest, which, axes))
    return (logits, getattr(session, "precision", None), time.perf_counter() - began,
            {**timing, "threads": _threads()})


def run_fastest(call: Callable, x, largest: int) -> tuple:
    """(outputs of ``call`` on all of ``x``, {"batch": the batch the bulk ran at, "ms_per_sample":
    {batch: ms} of the trials}). ``call`` takes a batch of ``x`` (batch-first) and returns its
    outputs, batch-first. Each batch of ``PROBE_BATCHES`` up to ``largest`` runs twice on the next
    samples (the first call sets up that shape; the second is timed) while it keeps getting faster
    per sample; every output is kept, so no sample runs twice."""
    from edgekit.layout import concat, count, take

    n, done, outs, per, best = count(x), 0, [], {}, 1
    for b in PROBE_BATCHES:
        if b > largest or done + 2 * b > n:
            break
        outs.append(call(take(x, slice(done, done + b))))
        began = time.perf_counter()
        outs.append(call(take(x, slice(done + b, done + 2 * b))))
        seconds = time.perf_counter() - began
        done += 2 * b
        per[b] = seconds / b
        if per[b] < per[best]:
            best = b
        elif b != best:
            break
        if seconds > PROBE_SLOW_S:
            break
    outs += [call(take(x, slice(i, i + best))) for i in range(done, n, best)]
    timing = {"batch": best}
    if len(per) > 1:
        timing["ms_per_sample"] = {str(b): round(1e3 * v, 3) for b, v in per.items()}
    return concat(outs), timing


MICRO = "tflite-micro"  # a 4th item of ``which``: run the artefact in TensorFlow Lite Micro


def _micro(target, ray) -> tuple[str, ...]:
    """The formats a microcontroller ``target`` runs (in TFLM); () for any other target."""
    from edgekit.devices import connection

    if target is None or not connection(target.connect).judged_here:
        return ()
    if ray:
        raise UsageError(f"--ray with --target {target.name}: TensorFlow Lite Micro runs on this machine",
                         hint="leave out --ray")
    return tuple(target.formats())


def _micro_version() -> str:
    from edgekit.formats._util import dist_version

    return f"tflite-micro {dist_version('tflite-micro')}"


def _beside(litert_logits, logits, data, key: str, task: str) -> dict:
    """LiteRT's score of the same file, and how often TFLM's top-1 (decision) agrees with LiteRT's."""
    import numpy as np

    from edgekit.measure.metrics import agreement, metrics

    diff = float(np.max(np.abs(np.asarray(litert_logits, np.float64) - np.asarray(logits, np.float64))))
    return {key: metrics(litert_logits, data)[key], "max_abs_diff": diff,
            "agreement_with_tflm": agreement(litert_logits, logits, task)}


def _largest_batch(manifest: dict, which: tuple[str, str, str], axes) -> int:
    """The largest batch the artefact ``which`` takes: 1 unless it was exported with a dynamic batch
    at axis 0 (then its bound, if any)."""
    if axes.input != 0:
        return 1
    for art in manifest["artefacts"]:
        if (art["format"], art["precision"]) == which[:2] and art.get("dynamic_batch"):
            return int(art.get("max_batch") or PROBE_BATCHES[-1])
    return 1


def _scored(run_dir: Path, which: tuple[str, str, str], x, module, changed: bool) -> tuple:
    """``shard_logits`` of one artefact; where a file accepted as ``changed`` does not run, the error
    as a line in place of its logits (an exported artefact's error is edgekit's bug: raised)."""
    try:
        return shard_logits(str(run_dir), which, x, module)
    except Exception as exc:  # noqa: BLE001 - a file that is not what was exported: its row says so
        if not changed:
            raise
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:240]}", None, 0.0, {}


def _open(run_dir: str, which: tuple[str, str, str] | None):
    """The PyTorch module of the run, or a session of the artefact ``which``."""
    if which is None:
        from edgekit.models.resolve import load_run_model

        model = load_run_model(mf.read_manifest(Path(run_dir)), Path(run_dir))
        return model.axes.module(model.module)
    from edgekit.formats import get_format

    fmt, path = get_format(which[0]), Path(run_dir) / which[2]
    if which[3:] == (MICRO,):
        from edgekit.formats.base import Opened
        from edgekit.formats.tflite import micro

        return Opened(fmt, {"path": str(path)}, micro.Session)
    # fp32 artefacts run with exact fp32 numerics (OpenVINO would pick bf16 on some CPUs); int8
    # ones as their runtime runs them by default. The precision that ran is recorded. In a Ray
    # task, sessions get the task's share of the cores.
    if which[1] != "fp32":
        return fmt.open(path, _threads())
    return fmt.open_exact(path, _threads())


def _threads() -> int:
    """Intra-op threads of the sessions eval opens: as `bench` on this machine (one per core;
    TFLite's own default is one thread), or the Ray task's share of its node's cores."""
    import os

    from edgekit.distributed import task_threads

    return task_threads() or os.cpu_count() or 1


_cached_open = functools.lru_cache(maxsize=4)(_open)


def _sharded(backend, run_dir: Path, arts: list, x) -> list[tuple]:
    """shard_logits of the PyTorch model and each artefact, each on shards of ``x`` as Ray tasks,
    stitched back in sample order (each shard at its own fastest batch: ``run_fastest``)."""
    import numpy as np

    from edgekit.layout import count

    n = count(x)
    per = -(-n // backend.workers)
    size = max(SHARD, -(-per // SHARD) * SHARD)
    bounds = [(i, min(i + size, n)) for i in range(0, n, size)]
    contiguous = tuple(map(np.ascontiguousarray, x)) if isinstance(x, tuple) else np.ascontiguousarray(x)
    ref = backend.put(contiguous)
    which_all = [None, *arts]
    calls = [(str(Path(run_dir).resolve()), w, ref, None, a, b) for w in which_all for a, b in bounds]
    parts = backend.map(shard_logits, calls)
    out = []
    for i in range(len(which_all)):
        mine = parts[i * len(bounds):(i + 1) * len(bounds)]
        out.append((np.concatenate([p[0] for p in mine]), mine[0][1], sum(p[2] for p in mine), mine[0][3]))
    return out


_EXTRA_COLUMNS = ("top5", "deterministic_top1", "step_top1", "auc", "rmse")
_NUMBERS = ("auc", "mae", "rmse")  # shown as numbers, not percentages


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Columns and formatted rows for printing an eval result."""
    from edgekit.measure.metrics import LOWER_IS_BETTER

    key = result["metric"]
    extra = [k for k in _EXTRA_COLUMNS if k != key and any(k in r for r in result["results"])]
    drop = "MAE rise (%)" if key in LOWER_IS_BETTER else "drop (pp)"
    beside = any("litert" in r for r in result["results"])  # eval --target: TFLM beside LiteRT
    head = ["format", "precision", key, *extra, "agreement", drop, *(["LiteRT " + key, "TFLM=LiteRT"]
                                                                       if beside else [])]
    rows = []
    for r in result["results"]:
        if r.get("status") in ("missing", "failed", "skipped"):  # gone, would not run, not for the target
            rows.append([r["format"], r["precision"], r["status"], *["-"] * (len(head) - 3)])
            continue
        rows.append([r.get("label", r["format"]), r.get("int8_label", r["precision"]), _cell(r, key),
                     *[_cell(r, k) for k in extra],
                     f"{100 * r['agreement']:.2f}%", f"{r['drop_pp']:+.2f}",
                     *([_cell(r["litert"], key), f"{100 * r['litert']['agreement_with_tflm']:.2f}%"]
                       if "litert" in r else ["-", "-"] if beside else [])])
    return head, rows


def _cell(row: dict, key: str) -> str:
    if key not in row:
        return "-"
    if key == "auc":
        return f"{row[key]:.4f}"
    return f"{row[key]:.4g}" if key in _NUMBERS else f"{100 * row[key]:.2f}%"


def check_run_dir(path: Path) -> Path:
    if not (Path(path) / mf.MANIFEST).is_file():
        raise UsageError(f"{path} is not an edgekit run directory (no manifest.json); "
                         "pass a directory written by 'edgekit export'")
    return Path(path)
