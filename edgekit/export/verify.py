"""Compare an artefact's outputs with the PyTorch reference on held-out samples."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np

from edgekit.layout import BATCH_FIRST, BatchAxes, concat, count, take

FP32_RELATIVE_TOLERANCE = 1e-3  # of the reference output range
VERIFY_BATCH = 4  # artefacts with a dynamic batch are also checked in batches of this many samples


INT8_TIE_STEPS = 2  # a reference decision closer than this many int8 output steps is a tie to int8


@dataclass(frozen=True)
class VerifyResult:
    """How an artefact's outputs compare with the reference's. ``top1_agreement`` is the share of
    decisions that agree, whatever the task: the argmax of each sample (or time step) for
    classifiers, the decision sigmoid(logit) >= 0.5 (logit >= 0) for binary ones, and for
    regression the share of output values within ``agreement_tolerance`` of the reference
    (``edgekit.measure.metrics.REGRESS_TOLERANCE`` of the reference outputs' range)."""

    samples: int
    max_abs_diff: float
    tolerance: float
    top1_agreement: float  # share of decisions that agree (see above)
    top1_mismatches: int  # disagreements where the reference is not a near-tie (regression: all)
    cosine: float
    sqnr_db: float
    passed: bool | None  # fp32: the pass/fail verdict; int8: None (metrics are recorded, not judged)
    outputs: list | None = None  # a model with several outputs: each one's metrics (the fields above)
    task: str = "classification"  # how top1_agreement was decided (edgekit.models.spec.TASKS)
    agreement_tolerance: float | None = None  # regression: the absolute tolerance of agreement
    # Agreement where the reference's decision is clearer than int8 rounding can flip: its top two
    # classes (a binary logit and 0) further apart than ``INT8_TIE_STEPS`` steps of an int8 output
    # over the reference's range. The int8 verdict reads it (a sequence model's steps with two
    # valid next symbols are near-ties whose argmax int8 flips without anything being broken).
    decided_agreement: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None or k == "passed"}


def run_session(session, x: np.ndarray, axes: BatchAxes = BATCH_FIRST) -> np.ndarray:
    """Run every sample of the batch-first ``x`` separately (artefacts have batch 1) and stack the
    outputs batch-first; ``axes`` says where the artefact has its batch."""
    return run_batched(session, x, 1, axes)


def run_batched(session, x: np.ndarray, batch: int = VERIFY_BATCH,
                axes: BatchAxes = BATCH_FIRST) -> np.ndarray:
    """Run ``x`` in batches of ``batch`` samples (the last may be smaller) and stack the outputs."""
    return concat([axes.from_model(session.run(axes.to_model(take(x, slice(i, i + batch)))))
                   for i in range(0, count(x), batch)])


def batched_metrics(fmt, session, x: np.ndarray, reference: np.ndarray, judge: bool,
                    axes: BatchAxes = BATCH_FIRST, task: str | None = None) -> dict:
    """For a format writing a dynamic batch (``fmt.dynamic_batch``): the artefact's outputs on ``x``
    run ``VERIFY_BATCH`` samples at a time against the reference, as {"batched": metrics}; {} else.
    ``judge`` (fp32): raise ExportError when they disagree beyond the fp32 tolerance."""
    if not fmt.dynamic_batch:
        return {}
    from edgekit.errors import ExportError

    result = compare(reference, run_batched(session, x, VERIFY_BATCH, axes), judge=judge, task=task)
    if judge and not result.passed:
        raise ExportError(
            f"fp32 {fmt.name} artefact disagrees with PyTorch at batch {VERIFY_BATCH}: max abs diff "
            f"{result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g}), "
            f"{result.top1_mismatches} top-1 mismatches on {result.samples} samples"
        )
    return {"batched": {"batch": VERIFY_BATCH, **result.to_dict()}}


def reference_outputs(module, x) -> np.ndarray | tuple:
    """The PyTorch outputs of each sample of ``x`` (batch-first; a tuple of arrays for several
    inputs), stacked: an array, or a tuple of them for a model with several outputs."""
    import torch

    def one(i: int):
        batch = take(x, slice(i, i + 1))
        y = module(*(torch.from_numpy(a) for a in (batch if isinstance(batch, tuple) else (batch,))))
        if isinstance(y, (tuple, list)):
            return tuple(t.numpy().astype(np.float32) for t in y)
        return y.numpy().astype(np.float32)

    with torch.no_grad():
        return concat([one(i) for i in range(count(x))])


def compare(ref, out, judge: bool, task: str | None = None) -> VerifyResult:
    """``compare_one`` of each output; for several outputs the verdict covers all of them, the
    headline metrics are the first output's (the one eval scores) and ``outputs`` lists each.
    ``task`` (the model's) is the first output's; the others' is implied by their shapes, except
    that all outputs of a regression model are compared as real values."""
    if not isinstance(ref, tuple):
        return compare_one(ref, out, judge, task)
    if not isinstance(out, tuple) or len(out) != len(ref):
        got = len(out) if isinstance(out, tuple) else 1
        raise ValueError(f"the artefact gives {got} outputs, PyTorch {len(ref)}")
    each = [compare_one(r, o, judge, task if i == 0 or task == "regression" else None)
            for i, (r, o) in enumerate(zip(ref, out))]
    passed = all(e.passed for e in each) if judge else None
    mismatches = sum(e.top1_mismatches for e in each)
    head = next((e for e in each if judge and not e.passed), each[0])  # a failure names its numbers
    return dataclasses.replace(head, passed=passed, top1_mismatches=mismatches,
                               outputs=[e.to_dict() for e in each])


def compare_one(ref: np.ndarray, out: np.ndarray, judge: bool, task: str | None = None) -> VerifyResult:
    """Metrics of ``out`` against ``ref``. With ``judge`` (fp32) decide pass/fail. ``task``: the
    model's (``edgekit.models.spec.TASKS``); None: implied by the shape (one value per sample is a
    binary logit, else logits whose argmax decides).

    fp32 passes when the max abs difference is below 1e-3 of the reference's output range and the
    decision is the same everywhere, except where the reference is a near-tie closer than the
    tolerance that float rounding may flip (its top two classes; a binary logit near 0).
    """
    from edgekit.measure.metrics import regress_tolerance, task_of

    if ref.shape != out.shape:
        raise ValueError(f"output shape {out.shape} differs from the PyTorch output {ref.shape}")
    task = task_of(ref, task)
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    diff = np.abs(ref64 - out64)
    tol = FP32_RELATIVE_TOLERANCE * max(float(ref64.max() - ref64.min()), 1e-6)
    within = None
    if task == "binary":  # one logit per sample: sigmoid(logit) >= 0.5 decides
        same = (ref64.ravel() >= 0) == (out64.ravel() >= 0)
        near_tie = np.abs(ref64.ravel()) < tol
    elif task == "regression":  # real values: agree within a tolerance of the reference
        within = regress_tolerance(ref64)
        same = diff.ravel() <= within
        near_tie = np.zeros_like(same)
    else:
        r2 = ref64.reshape(-1, ref64.shape[-1])
        o2 = out64.reshape(-1, out64.shape[-1])
        same = r2.argmax(-1) == o2.argmax(-1)
        top2 = np.sort(r2, axis=-1)[:, -2:] if r2.shape[-1] > 1 else np.zeros((len(r2), 2))
        near_tie = (top2[:, 1] - top2[:, 0]) < tol
    decided = None
    if task != "regression":  # where int8 rounding alone cannot flip the decision
        margin = np.abs(ref64.ravel()) if task == "binary" else top2[:, 1] - top2[:, 0]
        clear = margin >= INT8_TIE_STEPS * max(float(ref64.max() - ref64.min()), 1e-6) / 255
        decided = float(same[clear].mean()) if clear.any() else 1.0
    mismatches = int(np.sum(~same & ~near_tie))
    noise = float(np.sum((ref64 - out64) ** 2))
    signal = float(np.sum(ref64**2))
    sqnr = float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)
    denom = float(np.linalg.norm(ref64) * np.linalg.norm(out64))
    cosine = float(np.dot(ref64.ravel(), out64.ravel()) / denom) if denom else 0.0
    max_diff = float(diff.max()) if diff.size else 0.0
    passed = (max_diff <= tol and mismatches == 0) if judge else None
    return VerifyResult(
        samples=int(ref.shape[0]),
        max_abs_diff=max_diff,
        tolerance=tol,
        top1_agreement=float(same.mean()) if same.size else 1.0,
        top1_mismatches=mismatches,
        cosine=cosine,
        sqnr_db=sqnr,
        passed=passed,
        task=task,
        agreement_tolerance=within,
        decided_agreement=decided,
    )
