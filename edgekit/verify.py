"""Compare an artefact's outputs with the PyTorch reference on held-out samples."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FP32_RELATIVE_TOLERANCE = 1e-3  # of the reference output range
VERIFY_BATCH = 4  # artefacts with a dynamic batch are also checked in batches of this many samples


@dataclass(frozen=True)
class VerifyResult:
    samples: int
    max_abs_diff: float
    tolerance: float
    top1_agreement: float  # fraction of predictions (samples, or time steps) with the same argmax
    top1_mismatches: int  # mismatches where the reference is not a near-tie
    cosine: float
    sqnr_db: float
    passed: bool | None  # fp32: the pass/fail verdict; int8: None (metrics are recorded, not judged)

    def to_dict(self) -> dict:
        return asdict(self)


def run_session(session, x: np.ndarray) -> np.ndarray:
    """Run every sample separately (artefacts have batch 1) and stack the outputs."""
    return np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))], axis=0)


def run_batched(session, x: np.ndarray, batch: int = VERIFY_BATCH) -> np.ndarray:
    """Run ``x`` in batches of ``batch`` samples (the last may be smaller) and stack the outputs."""
    return np.concatenate([session.run(x[i : i + batch]) for i in range(0, len(x), batch)], axis=0)


def batched_metrics(fmt, session, x: np.ndarray, reference: np.ndarray, judge: bool) -> dict:
    """For a format writing a dynamic batch (``fmt.dynamic_batch``): the artefact's outputs on ``x``
    run ``VERIFY_BATCH`` samples at a time against the reference, as {"batched": metrics}; {} else.
    ``judge`` (fp32): raise ExportError when they disagree beyond the fp32 tolerance."""
    if not fmt.dynamic_batch:
        return {}
    from edgekit.errors import ExportError

    result = compare(reference, run_batched(session, x), judge=judge)
    if judge and not result.passed:
        raise ExportError(
            f"fp32 {fmt.name} artefact disagrees with PyTorch at batch {VERIFY_BATCH}: max abs diff "
            f"{result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g}), "
            f"{result.top1_mismatches} top-1 mismatches on {result.samples} samples"
        )
    return {"batched": {"batch": VERIFY_BATCH, **result.to_dict()}}


def reference_outputs(module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        outs = [module(torch.from_numpy(x[i : i + 1])).numpy() for i in range(len(x))]
    return np.concatenate(outs, axis=0).astype(np.float32)


def compare(ref: np.ndarray, out: np.ndarray, judge: bool) -> VerifyResult:
    """Metrics of ``out`` against ``ref``. With ``judge`` (fp32) decide pass/fail.

    fp32 passes when the max abs difference is below 1e-3 of the reference's output range and the
    top-1 class is the same everywhere, except where the reference's top two are closer than the
    tolerance (a genuine tie that float rounding may flip).
    """
    if ref.shape != out.shape:
        raise ValueError(f"output shape {out.shape} differs from the PyTorch output {ref.shape}")
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    diff = np.abs(ref64 - out64)
    tol = FP32_RELATIVE_TOLERANCE * max(float(ref64.max() - ref64.min()), 1e-6)
    r2 = ref64.reshape(-1, ref64.shape[-1])
    o2 = out64.reshape(-1, out64.shape[-1])
    same = r2.argmax(-1) == o2.argmax(-1)
    top2 = np.sort(r2, axis=-1)[:, -2:] if r2.shape[-1] > 1 else np.zeros((len(r2), 2))
    near_tie = (top2[:, 1] - top2[:, 0]) < tol
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
    )
