"""eval runs each model at the batch fastest per sample here (``evaluate.run_fastest``)."""

import time

import numpy as np

from edgekit.measure.evaluate import PROBE_BATCHES, run_fastest


def _recorder(seconds_per_call: float = 0.0):
    sizes = []

    def call(batch):
        sizes.append(len(batch))
        time.sleep(seconds_per_call)
        return batch * 2

    return call, sizes


def test_every_sample_runs_once_in_order_whatever_the_batches():
    x = np.arange(1000, dtype=np.float32).reshape(500, 2)
    call, sizes = _recorder()
    out, timing = run_fastest(call, x, PROBE_BATCHES[-1])
    np.testing.assert_array_equal(out, x * 2)
    assert sum(sizes) == 500 and timing["batch"] in PROBE_BATCHES


def test_a_fixed_batch_artefact_runs_one_sample_at_a_time():
    x = np.zeros((40, 3), np.float32)
    call, sizes = _recorder()
    out, timing = run_fastest(call, x, 1)
    assert sizes == [1] * 40 and timing == {"batch": 1} and out.shape == (40, 3)


def test_a_model_whose_calls_cost_the_same_at_any_batch_runs_at_the_largest_tried():
    x = np.zeros((300, 3), np.float32)
    call, sizes = _recorder(0.01)  # 10 ms a call: per sample 10 ms at batch 1, 0.6 ms at 16
    _, timing = run_fastest(call, x, 16)
    assert timing["batch"] == 16 and max(sizes) == 16
    assert set(timing["ms_per_sample"]) == {"1", "4", "16"}
    assert timing["ms_per_sample"]["1"] > timing["ms_per_sample"]["16"]


def test_several_inputs_are_split_together():
    x = (np.arange(20, dtype=np.float32).reshape(10, 2), np.ones((10, 1), np.float32))
    out, _ = run_fastest(lambda b: b[0] + b[1], x, 4)
    np.testing.assert_array_equal(out, x[0] + x[1])
