import numpy as np

from edgekit.export.verify import compare


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


def test_a_binary_logit_agrees_on_the_decision_not_the_argmax():
    ref = np.array([2.0, -1.0, 0.5, -3.0], np.float32)  # (N,): one logit per sample
    out = ref.copy()
    out[2] = -0.1  # sigmoid(0.5) >= 0.5 but sigmoid(-0.1) < 0.5: the decision flips
    r = compare(ref, out, judge=True, task="binary")
    assert r.task == "binary" and r.top1_agreement == 0.75 and r.top1_mismatches == 1 and not r.passed
    # (N, 1) is a binary logit too, judged the same way without being told
    r1 = compare(ref[:, None], out[:, None], judge=False)
    assert r1.task == "binary" and r1.top1_agreement == 0.75 and r1.passed is None
    assert compare(ref[:, None], ref[:, None] + 1e-6, judge=True).passed  # fp32 noise passes


def test_a_binary_logit_near_zero_is_a_tie_float_rounding_may_flip():
    ref = np.array([1e-7, 2.0, -2.0], np.float32)
    out = np.array([-1e-7, 2.0, -2.0], np.float32)
    r = compare(ref, out, judge=True)
    assert r.top1_agreement == 2 / 3 and r.top1_mismatches == 0 and r.passed


def test_regression_agreement_is_the_share_within_a_recorded_tolerance():
    from edgekit.measure.metrics import REGRESS_TOLERANCE

    ref = np.linspace(0.0, 10.0, 8, dtype=np.float32)[:, None]  # range 10: tolerance 0.1 at 1%
    out = ref.copy()
    out[:2] += 0.05  # within
    out[2:4] += 0.3  # beyond
    r = compare(ref, out, judge=False, task="regression")
    assert r.task == "regression" and r.agreement_tolerance == REGRESS_TOLERANCE * 10.0
    assert r.top1_agreement == 0.75 and r.top1_mismatches == 2
    d = r.to_dict()
    assert d["agreement_tolerance"] == r.agreement_tolerance and d["passed"] is None and "outputs" not in d
    # fp32: the same outputs fail the fp32 tolerance (1e-3 of the range); exact ones pass
    assert not compare(ref, out, judge=True, task="regression").passed
    assert compare(ref, ref + 1e-5, judge=True, task="regression").passed
