import numpy as np

from edgekit.verify import compare


def test_identical_outputs_pass_with_infinite_sqnr():
    ref = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    r = compare(ref, ref.copy(), judge=True)
    assert r.passed and r.max_abs_diff == 0 and r.top1_agreement == 1.0 and r.sqnr_db == float("inf")


def test_small_float_noise_passes_but_a_flipped_prediction_fails():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 10)).astype(np.float32)
    assert compare(ref, ref + 1e-6, judge=True).passed
    bad = ref.copy()
    bad[0, ref[0].argmin()] = ref[0].max() + 1.0  # a different class wins on sample 0
    r = compare(ref, bad, judge=True)
    assert not r.passed and r.top1_mismatches == 1 and r.top1_agreement == 0.75


def test_near_tie_is_not_counted_as_mismatch():
    ref = np.array([[1.0, 1.0 + 1e-7, -3.0]], dtype=np.float32)
    out = np.array([[1.0 + 2e-7, 1.0, -3.0]], dtype=np.float32)
    r = compare(ref, out, judge=True)
    assert r.top1_agreement == 0.0 and r.top1_mismatches == 0 and r.passed


def test_int8_metrics_are_recorded_not_judged():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(8, 5, 7)).astype(np.float32)  # sequence outputs: per time step
    out = ref + rng.normal(scale=0.1, size=ref.shape).astype(np.float32)
    r = compare(ref, out, judge=False)
    assert r.passed is None
    assert 0.98 < r.cosine < 1.0 and 10 < r.sqnr_db < 30
    assert r.samples == 8
