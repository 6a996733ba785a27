"""Accuracy of the PyTorch model and of every artefact of a run, on the same labelled samples."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgekit import manifest as mf
from edgekit.errors import UsageError


def evaluate_run(
    run_dir: Path,
    source: str,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    preprocessing_overrides: dict | None = None,
    report: Callable[[str], None] = print,
) -> dict:
    """Evaluate the run's PyTorch model and each artefact; store and return the results."""
    from edgekit.data.datasets import load_dataset
    from edgekit.data.preprocess import fit_to_input, override_preprocessing
    from edgekit.formats import get_format
    from edgekit.metrics import agreement, metrics, predict, primary_metric
    from edgekit.models.resolve import load_run_model
    from edgekit.verify import run_session

    run_dir = Path(run_dir)
    manifest = mf.read_manifest(run_dir)
    model = load_run_model(manifest, run_dir)
    pre = override_preprocessing(model.preprocessing, **(preprocessing_overrides or {}))
    pre = fit_to_input(pre, model.input_spec, model.name, preprocessing_overrides)  # what really runs
    data = load_dataset(source, model, split=split, n=limit, seed=seed, preprocessing=pre)
    if data.extra.get("skipped"):
        from edgekit.data.calibration import skipped_message

        report(f"warning: {skipped_message(source, data.extra['skipped'])}")
    key = primary_metric(model.task)
    ref_logits = predict(model.module, data.x)
    ref = metrics(ref_logits, data)
    rows = [{"format": "pytorch", "precision": "fp32", "status": "ok", **ref,
             "agreement": 1.0, "drop_pp": 0.0}]
    for art in manifest["artefacts"]:
        if art.get("status") != "ok":
            continue
        start = time.perf_counter()
        fmt = get_format(art["format"])
        # fp32 artefacts run with exact fp32 numerics (OpenVINO would pick bf16 on some CPUs);
        # int8 ones as their runtime runs them by default. The precision that ran is recorded.
        path = run_dir / art["path"]
        session = fmt.open_exact(path) if art["precision"] == "fp32" else fmt.open(path)
        logits = run_session(session, data.x)
        m = metrics(logits, data)
        row = {"format": art["format"], "precision": art["precision"], "status": "ok", **m,
               "agreement": agreement(ref_logits, logits),
               "drop_pp": round(100.0 * (ref[key] - m[key]), 3),
               "seconds": round(time.perf_counter() - start, 2)}
        if getattr(session, "precision", None):
            row["inference_precision"] = session.precision
        rows.append(row)
    result = {
        "created": mf.utc_now(),
        "dataset": data.name,
        "split": data.split,
        "samples": int(len(data)),
        "sha256": data.sha256,
        "metric": key,
        "preprocessing": pre.to_dict(),
        "preprocessing_overrides": dict(preprocessing_overrides or {}),
        "results": rows,
    }
    by_key = {(r["format"], r["precision"]): r for r in rows}

    def add(fresh: dict) -> None:  # the manifest as it is now: a bench that finished meanwhile is kept
        fresh["eval"] = result
        for art in fresh.get("artefacts", []):
            if art.get("status") == "ok" and (art["format"], art["precision"]) in by_key:
                art["eval"] = by_key[(art["format"], art["precision"])]

    mf.update(run_dir, add)
    return result


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Columns and formatted rows for printing an eval result."""
    key = result["metric"]
    extra = [k for k in ("top5", "deterministic_top1", "step_top1") if any(k in r for r in result["results"])]
    head = ["format", "precision", key, *extra, "agreement", "drop (pp)"]
    rows = []
    for r in result["results"]:
        rows.append([r["format"], r["precision"], f"{100 * r[key]:.2f}%",
                     *[f"{100 * r[k]:.2f}%" if k in r else "-" for k in extra],
                     f"{100 * r['agreement']:.2f}%", f"{r['drop_pp']:+.2f}"])
    return head, rows


def check_run_dir(path: Path) -> Path:
    if not (Path(path) / mf.MANIFEST).is_file():
        raise UsageError(f"{path} is not an edgekit run directory (no manifest.json); "
                         "pass a directory written by 'edgekit export'")
    return Path(path)
