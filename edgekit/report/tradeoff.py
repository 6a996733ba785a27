"""The report's accuracy-against-latency plot: axes that show what accuracy can be, round log
ticks, and labels placed beside their points without overlapping (split from edgekit.report)."""

from __future__ import annotations

import math

# The accuracy-against-latency plot: its markers, and its labels' font and lines.
MARKER_SIZE = 60  # points^2
LEADER_MIN = 18  # pixels: a label further from its point than this gets a line to it
LABEL_FONT = 8


def error_limits(values: list[float]) -> tuple[float, float]:
    """An error axis (MAE, RMSE): the data with a 15% margin (at least 5% of the largest), from 0 up."""
    lo, hi = min(values), max(values)
    pad = max(0.15 * (hi - lo), 0.05 * abs(hi), 1e-9)
    return max(0.0, lo - pad), hi + pad


def accuracy_limits(values: list[float]) -> tuple[float, float]:
    """The accuracy axis (in %): the data with a margin of at least 1 point each side (15% of the
    spread when wider), never below 0 or past 100; at either end the window moves instead of shrinking."""
    lo, hi = min(values), max(values)
    pad = max(0.15 * (hi - lo), 1.0)
    lo, hi = lo - pad, hi + pad
    if hi > 100:  # at the top: the window moves down rather than shrinks
        lo, hi = max(0.0, lo - (hi - 100)), 100.0
    if lo < 0:
        lo, hi = 0.0, min(100.0, hi - lo)
    return lo, hi


# Tick values per decade, coarse to fine: the coarsest that gives at least 3 ticks is used.
_MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8))


def log_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """Limits and labelled ticks of a log latency axis holding [lo, hi]: plain round numbers (0.02,
    0.05, 0.1; not 2x10^-2), at most 8 of them, on an axis at least 0.3 decade wide so that a tight
    cluster of points still gets two or three ticks."""
    a, b = math.log10(lo), math.log10(hi)
    if b - a < 0.3:
        mid = (a + b) / 2
        a, b = mid - 0.15, mid + 0.15
    pad = 0.08 * (b - a)
    a, b = a - pad, b + pad
    decades = range(math.floor(a) - 1, math.ceil(b) + 1)
    for mantissas in _MANTISSAS:
        values = [float(f"{m * 10 ** d:.6g}") for d in decades for m in mantissas]
        x_lo, x_hi = 10 ** a, 10 ** b
        below = [t for t in values if t < x_lo and math.log10(x_lo / t) < 0.1]
        above = [t for t in values if t > x_hi and math.log10(t / x_hi) < 0.1]
        x_lo = max(below) / 1.04 if below else x_lo  # a round value just past the margin: show it
        x_hi = min(above) * 1.04 if above else x_hi
        ticks = [t for t in values if x_lo <= t <= x_hi]
        if len(ticks) >= 3:
            break
    step = max(1, math.ceil(len(ticks) / 8))  # many decades: every other (third, ...) decade
    return x_lo, x_hi, ticks[::step]


def _tick_label(t: float) -> str:
    return f"{t:g}"


def tradeoff_figure(items: list[dict], title: str, colours: dict[str, str], metric: str = "accuracy"):
    """Accuracy against p50 latency, one point per artefact, each labelled beside its point without
    overlapping another label or point (a thin line joins a label set further away to its point).
    An error metric (a regression's MAE or RMSE) is drawn as it is, not as a percentage."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter

    from edgekit.measure.metrics import LOWER_IS_BETTER

    error = metric in LOWER_IS_BETTER
    xs = [r["p50_ms"] for r in items]
    ys = [r["accuracy"] if error else min(100.0, max(0.0, 100 * r["accuracy"])) for r in items]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.set_xscale("log")
    x_lo, x_hi, ticks = log_ticks(min(xs), max(xs))
    ax.set_xlim(x_lo, x_hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([_tick_label(t) for t in ticks]))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(*(error_limits(ys) if error else accuracy_limits(ys)))
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    for r, x, y in zip(items, xs, ys):
        ax.scatter(x, y, s=MARKER_SIZE, color=colours.get(r["format"], "grey"), alpha=0.85,
                   edgecolors="white", linewidths=0.8, marker="o" if r["precision"] == "fp32" else "s",
                   clip_on=False, zorder=3)
    ax.set_xlabel("p50 latency (ms, log scale)")
    what = f"{metric.upper()} (lower is better)" if error else "accuracy"
    ax.set_ylabel(what if error else "accuracy (%)")
    ax.set_title(f"{title}: {what.split(' ')[0]} against latency (\u25cf fp32, \u25a0 int8)")
    ax.grid(alpha=0.3)
    ax.grid(alpha=0.12, which="minor", axis="x")
    fig.tight_layout()  # before the labels are placed: they are placed in the final pixel geometry
    place_labels(ax, list(zip(xs, ys)), [r["name"] for r in items])
    return fig


def place_labels(ax, points: list[tuple[float, float]], names: list[str]) -> list:
    """Label each point with its name at the nearest free spot: inside the axes, clear of every other
    label, every point and every other label's line. Spots are searched on rings of growing radius
    around each point (beside it, or 18 px and more away with a thin line to it), greedily in a few
    orders (the most crowded points first, left to right, ...); the layout with the fewest
    collisions, then the shortest lines, wins. Returns the annotations."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    inside = (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2)
    px = [tuple(p) for p in ax.transData.transform(points)]
    to_pt = 72 / fig.dpi
    radius = math.sqrt(MARKER_SIZE) / 2 / to_pt + 1  # the marker's half-width, in pixels
    dots = [(x - radius, y - radius, x + radius, y + radius) for x, y in px]
    sizes = []
    for name in names:
        t = ax.text(0, 0, name, fontsize=LABEL_FONT)
        bb = t.get_window_extent(renderer)
        sizes.append((bb.width + 4, bb.height + 3))  # a little air between labels
        t.remove()

    def best_spot(i: int, placed: dict) -> tuple[tuple, float]:
        best, best_score = None, math.inf
        for spot in _spots(px[i], sizes[i], radius, inside):
            box, segment, dist = spot[0], spot[1], spot[4]
            cost = _overlap(box, segment, i, dots, placed)
            if segment is None and not _nearest_is_own(box, i, px, margin=6):
                cost += 30  # as close to another point as to its own one: a line makes it clear
            if cost * 1000 + dist < best_score:
                best, best_score = spot, cost * 1000 + dist
            if cost == 0:
                break
        if best is None:  # no room at all inside the axes: beside the point
            (x, y), (w, h) = px[i], sizes[i]
            best, best_score = ((x, y, x + w, y + h), None, "left", "bottom", radius, 0), 1e6
        return best, best_score

    def layout(order: list[int]) -> tuple[dict, float]:
        placed: dict[int, tuple] = {}
        total = 0.0
        for i in order:
            placed[i], score = best_spot(i, placed)
            total += score
        return placed, total

    def staircase(down: bool, side: str) -> tuple[dict, float]:
        """All labels in a staircase below (above) the points, each on a vertical line, hanging to
        the `side` of it: the point furthest to that side nearest. Where a greedy layout crosses
        lines over a tight row of points (ten artefacts at 100%), this one crosses nothing."""
        order = sorted(range(len(px)), key=lambda i: px[i][0], reverse=side == "left")
        edge = min(y for _, y in px) if down else max(y for _, y in px)
        placed: dict[int, tuple] = {}
        total, depth = 0.0, LEADER_MIN
        for i in order:
            (x, y), (w, h) = px[i], sizes[i]
            ay = edge - depth if down else edge + depth
            x0, y0 = (x if side == "left" else x - w), (ay - h if down else ay)
            box = (x0, y0, x0 + w, y0 + h)
            fits = inside[0] <= x0 and x0 + w <= inside[2] and inside[1] <= y0 and y0 + h <= inside[3]
            ha, va = ("left" if side == "left" else "right"), ("top" if down else "bottom")
            segment = (x, y, x, ay)
            total += (_overlap(box, segment, i, dots, placed) if fits else 1e6) * 1000 + abs(ay - y)
            placed[i] = (box, segment, ha, va, abs(ay - y), 270 if down else 90)
            depth += h
        return placed, total

    def crowd(i):
        return sum(math.dist(px[i], q) < 80 for q in px)

    orders = [sorted(range(len(px)), key=key) for key in (
        lambda i: (-crowd(i), px[i][0]), lambda i: (-crowd(i), -px[i][0]), lambda i: px[i][0],
        lambda i: -px[i][0])]
    layouts = [layout(order) for order in orders]
    layouts += [staircase(down, side) for down in (True, False) for side in ("left", "right")]
    placed = min(layouts, key=lambda result: result[1])[0]
    out = []
    for i, (_, segment, ha, va, dist, angle) in sorted(placed.items()):
        offset = (dist * math.cos(math.radians(angle)) * to_pt, dist * math.sin(math.radians(angle)) * to_pt)
        relpos = ({"left": 0, "center": 0.5, "right": 1}[ha], {"bottom": 0, "center": 0.5, "top": 1}[va])
        arrow = dict(arrowstyle="-", color="0.45", lw=0.6, shrinkA=0, shrinkB=radius * to_pt,
                     relpos=relpos) if segment else None
        out.append(ax.annotate(names[i], points[i], xytext=offset, textcoords="offset points", ha=ha, va=va,
                               fontsize=LABEL_FONT, arrowprops=arrow, zorder=4))
    return out


_ANGLES = (0, 180, 90, 270, 30, 150, 210, 330, 60, 120, 240, 300, 15, 165, 195, 345, 45, 135, 225, 315,
           75, 105, 255, 285)  # right, left, above, below first


def _spots(point, size, radius, inside):
    """Candidate label boxes around a point, nearest first: (box, line or None, ha, va, distance, angle).
    Straight above or below, a label also hangs to the right or left of its line: a row of close
    points then gets a staircase of labels whose vertical lines cross nothing."""
    (x, y), (w, h) = point, size
    for dist in [int(radius) + 2, *range(LEADER_MIN, 260, 6)]:
        for angle in _ANGLES:
            dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            ax, ay = x + dist * dx, y + dist * dy  # where the label's nearest corner or edge sits
            va = "bottom" if dy > 0.3 else "top" if dy < -0.3 else "center"
            y0 = ay if va == "bottom" else ay - h if va == "top" else ay - h / 2
            aligns = ["left"] if dx > 0.3 else ["right"] if dx < -0.3 else ["center", "left", "right"]
            for ha in aligns:
                x0 = ax if ha == "left" else ax - w if ha == "right" else ax - w / 2
                box = (x0, y0, x0 + w, y0 + h)
                if inside[0] <= x0 and x0 + w <= inside[2] and inside[1] <= y0 and y0 + h <= inside[3]:
                    yield box, ((x, y, ax, ay) if dist >= LEADER_MIN else None), ha, va, dist, angle


def _boxes_cross(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _segment_hits(segment, box) -> bool:
    """Whether the segment passes through the inside of the box (Liang-Barsky clipping)."""
    x0, y0, x1, y1 = segment
    if max(x0, x1) <= box[0] or min(x0, x1) >= box[2] or max(y0, y1) <= box[1] or min(y0, y1) >= box[3]:
        return False
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - box[0]), (dx, box[2] - x0), (-dy, y0 - box[1]), (dy, box[3] - y0)):
        if p == 0:
            if q <= 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 >= t1:
            return False
    return True


def _box_distance(box, point) -> float:
    x, y = point
    return ((max(box[0] - x, 0, x - box[2])) ** 2 + (max(box[1] - y, 0, y - box[3])) ** 2) ** 0.5


def _nearest_is_own(box, i, px, margin: float) -> bool:
    own = _box_distance(box, px[i])
    return all(_box_distance(box, q) > own + margin for j, q in enumerate(px) if j != i)


def _segments_cross(s, t) -> bool:
    def side(ax, ay, bx, by, cx, cy):
        return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)

    d1, d2 = side(*t[:2], *t[2:], *s[:2]), side(*t[:2], *t[2:], *s[2:])
    d3, d4 = side(*s[:2], *s[2:], *t[:2]), side(*s[:2], *s[2:], *t[2:])
    return d1 * d2 < 0 and d3 * d4 < 0


def _overlap(box, segment, i, dots, placed) -> float:
    """How badly a candidate label collides: area shared with other labels and points, plus a
    penalty per line it crosses or that crosses it, the worst for a line through another point
    (it would seem to lead there). 0: free."""
    cost = sum(_boxes_cross(box, d) for d in dots)  # its own point included
    for other, other_segment, *_ in placed.values():
        cost += _boxes_cross(box, other)
        if other_segment and _segment_hits(other_segment, box):
            cost += 50
        if segment and _segment_hits(segment, other):
            cost += 50
        if segment and other_segment and _segments_cross(segment, other_segment):
            cost += 20
    if segment:
        x, y = segment[:2]  # a point whose marker touches this one's cannot be avoided
        cost += sum(100 for j, d in enumerate(dots) if j != i and _segment_hits(segment, d)
                    and math.dist(((d[0] + d[2]) / 2, (d[1] + d[3]) / 2), (x, y)) > d[2] - d[0])
    return cost
