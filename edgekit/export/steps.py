"""One format's artefacts: export fp32, verify, quantize, verify; each a manifest entry (``step``).

Split from ``edgekit.export.plan`` so that the export worker process (``edgekit.export.jobs``) runs
exactly the same steps as the main process.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

from edgekit.errors import EdgekitError, ExportError
from edgekit.formats._util import quiet
from edgekit.formats.base import percent
from edgekit.runs import manifest as mf

log = logging.getLogger("edgekit")


class NoSpace(Exception):
    """A write of the export found the disk full: the whole run stops (``edgekit.runs.diskspace``)."""


def export_format(name, fmt, model, calib, held_out, reference, int8, stage, report, budget,
                  done=None) -> list[dict]:
    """The format's entries (fp32, then int8); ``done(entry)`` hears of each as soon as it is made."""
    folder = stage / name
    folder.mkdir()
    entries = []
    fp32_path = folder / f"model.fp32{fmt.extension}"
    entry = step(name, "fp32", lambda: _fp32(fmt, model, fp32_path, held_out, reference), stage, fmt, report)
    entries.append(entry)
    if done is not None:
        done(entry)
    if int8:
        if entry["status"] != "ok":
            entries.append(skipped(name, "int8", f"skipped: the fp32 {name} export failed"))
        else:
            path = folder / f"model.int8{fmt.extension}"
            work = lambda: _int8(fmt, model, fp32_path, calib, path, held_out, reference, budget)  # noqa: E731
            entries.append(step(name, "int8", work, stage, fmt, report))
            if budget is not None and not model.static_int8:
                report(f"  {name} int8: --max-drop searches static int8 only; {model.name}'s "
                       f"{entries[-1].get('scheme', {}).get('type', 'dynamic')} int8 is measured by eval")
            if entries[-1].get("search"):
                from edgekit.export.search import summary_lines

                for line in summary_lines(name, entries[-1]["search"]):
                    report(line)
            if done is not None:
                done(entries[-1])
    return entries


def _fp32(fmt, model, path, held_out, reference) -> tuple[Path, dict, dict]:
    from edgekit.errors import ExportError
    from edgekit.export.verify import batched_metrics, compare, run_session

    fmt.export_fp32(model, path)
    session = fmt.open_exact(path)
    result = compare(reference, run_session(session, held_out, model.axes), judge=True,
                     task=model.task)
    if not result.passed:
        raise ExportError(
            f"fp32 {fmt.name} artefact disagrees with PyTorch: max abs diff "
            f"{result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g}), "
            f"{result.top1_mismatches} top-1 mismatches on {result.samples} samples"
        )
    batched = batched_metrics(fmt, session, held_out, reference, judge=True, axes=model.axes,
                              task=model.task)
    sizes = axes_metrics(fmt, session, model, held_out, judge=True)
    return path, {"type": "none"}, {**result.to_dict(), **batched, **sizes, **_session_info(session)}


def axes_metrics(fmt, session, model, held_out, judge: bool) -> dict:
    """For each ``--dynamic-axis`` the format wrote: the artefact run on the held-out samples cut (or
    repeated) to another size of that axis, against PyTorch on the same, as {"dynamic_axes": [...]}.
    ``judge`` (fp32): raise ExportError when they disagree beyond the fp32 tolerance."""
    import numpy as np

    from edgekit.errors import ExportError
    from edgekit.export.verify import compare, reference_outputs, run_session

    found = []
    batch = model.input_spec.batch_axis
    for a in fmt.written_axes():
        size = model.input_spec.shape[a.axis]
        other = max(a.min, 2, size // 2) if size > max(a.min, 2) else min(a.max, size * 2)
        axis = 1 + (a.axis if a.axis < batch else a.axis - 1)  # in the batch-first samples
        x = np.take(held_out, np.arange(other) % size, axis=axis)
        reference = reference_outputs(model.axes.module(model.module), x)
        result = compare(reference, run_session(session, x, model.axes), judge=judge, task=model.task)
        if judge and not result.passed:
            raise ExportError(f"fp32 {fmt.name} artefact disagrees with PyTorch at {a.name} = {other} "
                              f"(exported at {size}): max abs diff {result.max_abs_diff:.3g} (tolerance "
                              f"{result.tolerance:.3g}); the model may not take that axis as variable")
        found.append({**a.to_dict(), "verified_at": other, **result.to_dict()})
    return {"dynamic_axes": found} if found else {}


def _int8(fmt, model, fp32_path, calib, path, held_out, reference, budget) -> tuple:
    """(path, scheme, verify metrics, search record or None) of the int8 artefact."""
    from edgekit.export.verify import batched_metrics, compare, run_session

    record = None
    if budget is None or not model.static_int8:
        result = fmt.export_int8(model, fp32_path, calib, path)
    else:
        from edgekit.export.search import SearchSettings, search_int8

        result, record = search_int8(fmt, model, fp32_path, path, calib, budget.held,
                                     SearchSettings(budget_pp=budget.pp), more_calib=budget.more,
                                     ray=budget.ray)
    session = fmt.open(result.path)
    metrics = compare(reference, run_session(session, held_out, model.axes), judge=False,
                      task=model.task)
    batched = batched_metrics(fmt, session, held_out, reference, judge=False, axes=model.axes,
                              task=model.task)
    batched.update(axes_metrics(fmt, session, model, held_out, judge=False))
    scheme = {**result.scheme, "why": model.int8_reason} if model.int8_reason else result.scheme
    verify = {**metrics.to_dict(), **batched, **_session_info(session),
              **judge_int8(metrics, decisions=model.weights is not None)}
    if not verify["passed"]:
        raise Int8Broken(result.path, scheme, verify, record)
    return result.path, scheme, verify, record


# An int8 artefact this far from its PyTorch reference is broken, not merely less accurate:
# it fails (exit 1) and is kept aside for `edgekit inspect`; --max-drop searches other methods.
INT8_MIN_AGREEMENT = 0.90
INT8_MIN_SQNR_DB = 10.0
REJECTED = "rejected"  # the run's folder for broken int8 artefacts, kept for inspection


def agreement_name(task: str | None) -> str:
    """What ``top1_agreement`` means for a task (``edgekit.export.verify.VerifyResult``)."""
    return {"binary": "decision agreement", "regression": "share within tolerance"}.get(task or "",
                                                                                        "top-1 agreement")


def judge_int8(metrics, decisions: bool = True) -> dict:
    """The int8 verdict on the held-out samples: ``passed`` and, when it fails, ``why``.

    Broken is an SQNR under ``INT8_MIN_SQNR_DB``, or, where the model's decisions mean something
    (``decisions``: its weights were given, not random), an agreement under ``INT8_MIN_AGREEMENT``
    (on the decisions clear of a tie that int8 rounding could flip) by more than one decision (on
    a handful of samples one changed decision is not a verdict). A random-weight model's outputs
    lie close together, so int8 rounding flips its decisions without anything being broken: there
    only the SQNR is judged."""
    problems = []
    n = metrics.samples
    # decisions int8 rounding cannot flip (``VerifyResult.decided_agreement``), where known
    agreed = getattr(metrics, "decided_agreement", None)
    agreed = metrics.top1_agreement if agreed is None else agreed
    changed = round((1 - agreed) * n) if n else 0
    if decisions and agreed < INT8_MIN_AGREEMENT and changed > 1:
        what = agreement_name(getattr(metrics, "task", None))
        clear = " where PyTorch's decision is clear of a tie" if agreed != metrics.top1_agreement else ""
        problems.append(f"{what} {agreed:.1%}{clear} (floor {INT8_MIN_AGREEMENT:.0%})")
    if metrics.sqnr_db < INT8_MIN_SQNR_DB:
        problems.append(f"SQNR {metrics.sqnr_db:.1f} dB (floor {INT8_MIN_SQNR_DB:.0f} dB)")
    floors = {"min_agreement": INT8_MIN_AGREEMENT if decisions else None, "min_sqnr_db": INT8_MIN_SQNR_DB}
    return {"passed": not problems, "floors": floors, **({"why": ", ".join(problems)} if problems else {})}


class Int8Broken(ExportError):
    """An int8 artefact below the floors: what was written and measured, to keep aside."""

    def __init__(self, path: Path, scheme: dict, verify: dict, record: dict | None):
        super().__init__(verify["why"])
        self.path, self.scheme, self.verify, self.record = path, scheme, verify, record


def _session_info(session) -> dict:
    info = {"runtime": session.runtime, "runtime_version": session.runtime_version,
            "device": session.device}
    if getattr(session, "precision", None):
        info["inference_precision"] = session.precision
    return info


def read_share(fmt, path: Path) -> dict:
    """``Format.int8_share`` of the written artefact as the manifest records it; a file that cannot
    be read says so (its label then says the share is unknown, never plain int8)."""
    try:
        with quiet():
            share = fmt.int8_share(path)
    except Exception as exc:  # noqa: BLE001 - the artefact is verified; only the read-back failed
        log.debug("reading %s's int8 share failed", path, exc_info=True)
        return {"label": "int8 (share of int8 weights unknown: the file could not be read back)",
                "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    if share is None:
        return {"label": f"int8 (share of int8 weights unknown: {fmt.name} cannot be read back)"}
    return share.to_dict()


def _rejected(entry: dict, exc: Int8Broken, stage: Path, fmt, start: float, report) -> dict:
    """Fail a broken int8 artefact and move its files to ``stage/rejected/<format>/`` for inspection."""
    aside = stage / REJECTED / entry["format"]
    aside.mkdir(parents=True, exist_ok=True)
    for f in fmt.files(exc.path):
        if f.exists():
            f.replace(aside / f.name)
    kept = aside / exc.path.name
    entry.update({"scheme": exc.scheme, "verify": exc.verify,
                  "kept": {"path": kept.relative_to(stage).as_posix(),
                           "files": [mf.file_entry(aside / f.name, stage) for f in fmt.files(exc.path)
                                     if (aside / f.name).exists()]},
                  "int8_share": read_share(fmt, kept)})
    if exc.record:
        entry["search"] = exc.record
    samples = exc.verify.get("samples")
    message = (f"int8 broke the model on {samples} held-out samples: {exc.verify['why']}; kept aside in "
               f"{REJECTED}/{entry['format']}/ (edgekit inspect RUN --formats {entry['format']} shows the "
               "layers that lose most); --max-drop POINTS searches other int8 methods and float layers")
    return failed(entry, message, start, report)


def step(fmt_name, precision, work, stage, fmt, report) -> dict:
    start = time.perf_counter()
    entry = {"format": fmt_name, "precision": precision}
    try:
        with quiet():  # converters log from C++ straight to the terminal
            path, scheme, verify, *search = work()
    except Int8Broken as exc:
        return _rejected(entry, exc, stage, fmt, start, report)
    except Exception as exc:
        from edgekit.runs.diskspace import is_full, nearly_full

        if is_full(exc) or nearly_full(stage):  # converters word a failed write vaguely ("iostream error")
            raise NoSpace(f"{type(exc).__name__}: {exc}") from exc
        return _failed_by(exc, entry, fmt_name, precision, start, report)
    files = [mf.file_entry(p, stage) for p in fmt.files(path)]
    entry.update({
        "status": "ok",
        "scheme": scheme,
        "path": files[0]["path"],
        "bytes": sum(f["bytes"] for f in files),
        "sha256": files[0]["sha256"],
        "files": files,
        "verify": verify,
        "seconds": round(time.perf_counter() - start, 2),
    })
    if search and search[0]:
        entry["search"] = search[0]
    if precision == "int8":
        entry["int8_share"] = read_share(fmt, path)
    entry.update(fmt.input_info(path))  # input_shape ("batch" where dynamic), dynamic_batch, max_batch
    details = fmt.details(path)
    if details:
        entry["details"] = details
    report(_summary_line(entry))
    return entry


def _failed_by(exc, entry, fmt_name, precision, start, report) -> dict:
    if isinstance(exc, EdgekitError):
        return failed(entry, str(exc), start, report)
    # a converter/runtime bug must not discard the other formats
    log.debug("%s %s failed", fmt_name, precision, exc_info=True)
    text = " ".join(str(exc).split())
    detail = f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"
    entry["traceback"] = traceback.format_exc(limit=8)
    return failed(entry, detail, start, report)


def failed(entry, message, start, report) -> dict:
    entry.update({"status": "failed", "error": message,
                  "seconds": round(time.perf_counter() - start, 2)})
    report(f"FAILED {entry['format']} {entry['precision']}: {message}")
    return entry


def skipped(fmt_name, precision, message) -> dict:
    return {"format": fmt_name, "precision": precision, "status": "skipped", "error": message}


def _summary_line(entry: dict) -> str:
    v = entry["verify"]
    size = entry["bytes"] / 1e6
    if entry["precision"] == "fp32":
        how = f"verified: max abs diff {v['max_abs_diff']:.2e} <= {v['tolerance']:.2e}"
    else:
        share = entry.get("int8_share", {}).get("weights")
        weights = f"{percent(share)} of weights int8, " if share is not None else ""
        agree = agreement_name(v.get("task"))
        how = (f"{weights}{agree} {v['top1_agreement']:.1%}, cosine {v['cosine']:.4f}, "
               f"SQNR {v['sqnr_db']:.1f} dB on {v['samples']} samples")
    label = entry.get("int8_share", {}).get("label", entry["precision"])
    line = f"ok {entry['format']:<8} {label:<4} {size:8.2f} MB  {how}  ({entry['seconds']}s)"
    summary = entry.get("details", {}).get("summary")
    return f"{line}\n   {summary}" if summary else line
