"""The report's accuracy-against-latency plot, judged on what a reader sees in the drawn figure:
every label readable (no label over another label or over a point, inside the plot, attributable
to its point), an accuracy axis inside 0-100%, and round, separate tick labels on the log latency
axis. Drawn with matplotlib in memory, no run needed: about 3 s."""

from __future__ import annotations

import itertools
import math

import pytest

from edgekit import report

COLOURS = {"pytorch": "#555555", "onnx": "#1f77b4", "openvino": "#9467bd", "executorch": "#2ca02c",
           "tflite": "#ff7f0e"}


def _items(points: dict[tuple[str, str], tuple[float, float]]) -> list[dict]:
    return [{"name": f"{f} {p}", "format": f, "precision": p, "p50_ms": ms, "accuracy": acc}
            for (f, p), (ms, acc) in points.items()]


# The main job's own run (lenet5, 4 formats x fp32/int8 + PyTorch): nine points within a factor of 3
# in latency (0.019-0.056 ms, PyTorch apart), all at the same accuracy. The plot this issue was about.
LENET_9 = _items({
    ("pytorch", "fp32"): (0.2689, 0.98141), ("onnx", "fp32"): (0.02917, 0.98141),
    ("onnx", "int8"): (0.05601, 0.98141), ("openvino", "fp32"): (0.03692, 0.98141),
    ("openvino", "int8"): (0.03865, 0.98141), ("executorch", "fp32"): (0.02645, 0.98141),
    ("executorch", "int8"): (0.02839, 0.98141), ("tflite", "fp32"): (0.01910, 0.98141),
    ("tflite", "int8"): (0.02569, 0.98141)})
# ResNet-50's latencies (benchmarks/results/latency.md), int8 0.1-0.6 point below fp32; three fp32
# points within 4% of each other.
RESNET_9 = _items({
    ("pytorch", "fp32"): (67.54, 0.7613), ("onnx", "fp32"): (42.62, 0.7613),
    ("onnx", "int8"): (34.46, 0.7589),
    ("tflite", "fp32"): (43.13, 0.7613), ("tflite", "int8"): (12.20, 0.7552),
    ("openvino", "fp32"): (22.74, 0.7612), ("openvino", "int8"): (11.55, 0.7601),
    ("executorch", "fp32"): (41.36, 0.7613), ("executorch", "int8"): (15.20, 0.7570)})
# Ten artefacts at 100% within 10% of latency: the labels must all fit below the top of the axis.
PERFECT_10 = _items({(f, p): (1.0 + 0.01 * i, 1.0) for i, (f, p) in enumerate(
    itertools.product(["onnx", "openvino", "executorch", "tflite", "pytorch"], ["fp32", "int8"]))})


def _drawn(items, dpi=None):
    fig = report.tradeoff_figure(items, "model", COLOURS)
    if dpi:  # the PNG is saved at another dpi than it is laid out at: everything must scale together
        fig.set_dpi(dpi)
    fig.canvas.draw()
    return fig, fig.axes[0], fig.canvas.get_renderer()


def _gap(box, point) -> float:
    x, y = point
    return math.hypot(max(box.x0 - x, 0, x - box.x1), max(box.y0 - y, 0, y - box.y1))


def _to_segment(point, start, end) -> float:
    (px, py), (x0, y0), (x1, y1) = point, start, end
    length2 = (x1 - x0) ** 2 + (y1 - y0) ** 2
    t = max(0.0, min(1.0, ((px - x0) * (x1 - x0) + (py - y0) * (y1 - y0)) / length2)) if length2 else 0.0
    return math.hypot(px - (x0 + t * (x1 - x0)), py - (y0 + t * (y1 - y0)))


def _intersect(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("items,dpi", [(LENET_9, None), (LENET_9, 110), (RESNET_9, 110), (PERFECT_10, None),
                                       (RESNET_9[:4], None)], ids=["lenet9", "lenet9-saved", "resnet9",
                                                                    "perfect10", "four"])
def test_every_label_is_readable_and_beside_its_own_point(items, dpi):
    fig, ax, renderer = _drawn(items, dpi)
    labels = {t.get_text(): t for t in ax.texts}
    assert sorted(labels) == sorted(r["name"] for r in items)  # one label per artefact, no legend needed
    from matplotlib.text import Text

    boxes = {name: Text.get_window_extent(t, renderer) for name, t in labels.items()}  # without its line
    for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2):
        assert not _intersect(box_a, box_b), f"labels {a!r} and {b!r} overlap"
    frame = ax.get_window_extent(renderer)
    radius = math.sqrt(report.MARKER_SIZE) / 2 * fig.dpi / 72
    centres = {r["name"]: ax.transData.transform((r["p50_ms"], 100 * r["accuracy"])) for r in items}
    for name, box in boxes.items():
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, name
        for other, (x, y) in centres.items():  # no label hides a point
            assert not (box.x0 < x + radius and x - radius < box.x1 and box.y0 < y + radius
                        and y - radius < box.y1), f"label {name!r} covers the point of {other!r}"
        if labels[name].arrow_patch is None:  # a label without a line is nearest its own point
            own = _gap(box, centres[name])
            assert all(own < _gap(box, c) for other, c in centres.items() if other != name), name
        else:  # a line does not pass over another point (it would seem to lead there)
            start, end = labels[name].arrow_patch.get_path().vertices[[0, -1]]
            for other, c in centres.items():
                if math.dist(c, centres[name]) > 2 * radius:  # a point under its own marker cannot be missed
                    assert _to_segment(c, start, end) > radius, f"the line of {name!r} crosses {other!r}"


def test_the_accuracy_axis_stays_within_what_accuracy_can_be():
    for items in (LENET_9, PERFECT_10):
        fig, ax, _ = _drawn(items)
        lo, hi = ax.get_ylim()
        assert 0 <= lo and hi <= 100  # the axis this issue saw ran to 103%
        assert all(lo <= 100 * r["accuracy"] <= hi for r in items)
        assert hi - lo >= 2  # equal accuracies still get a readable 2-point window
    assert report.accuracy_limits([0.0, 0.5]) == (0.0, 2.5)
    assert report.accuracy_limits([100.0]) == (98.0, 100.0)
    assert report.accuracy_limits([40.0, 90.0])[0] == pytest.approx(32.5)  # 15% margin around a wide spread


@pytest.mark.parametrize("lo,hi", [(0.0191, 0.2689), (11.55, 67.54), (42.0, 43.1), (0.4, 0.4), (0.01, 5000)])
def test_latency_ticks_are_round_plain_numbers_that_do_not_collide(lo, hi):
    items = _items({("onnx", "fp32"): (lo, 0.9), ("onnx", "int8"): (hi, 0.89)})
    fig, ax, renderer = _drawn(items)
    x_lo, x_hi = ax.get_xlim()
    assert x_lo < lo and hi < x_hi
    shown = [t for t in ax.get_xticklabels() if t.get_text() and x_lo <= t.get_position()[0] <= x_hi]
    shown += [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert 2 <= len(shown) <= 8, [t.get_text() for t in shown]
    for t in shown:  # "0.02", "50", "1000": no 2x10^-2 mathtext
        assert "$" not in t.get_text() and "^" not in t.get_text()
        assert float(t.get_text()) == pytest.approx(t.get_position()[0])
    boxes = sorted((t.get_window_extent(renderer) for t in shown), key=lambda b: b.x0)
    for a, b in zip(boxes, boxes[1:]):
        assert a.x1 + 4 < b.x0, "tick labels touch"


def test_a_regression_run_plots_its_error_not_a_percentage():
    from edgekit.report import tradeoff_figure

    items = [{"p50_ms": 0.1 * (i + 1), "accuracy": 0.5 + 0.3 * i, "format": "onnx",
              "precision": "fp32" if i % 2 else "int8", "name": f"a{i}"} for i in range(4)]
    ax = tradeoff_figure(items, "t", {}, "mae").axes[0]
    low, high = ax.get_ylim()
    assert ax.get_ylabel() == "MAE (lower is better)"
    assert 0 <= low <= 0.5 and 1.4 <= high < 2.0  # the MAE values themselves, not 50%..140% clamped
