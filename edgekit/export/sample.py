"""What the int8 search (``edgekit.export.search``) scores its attempts on, and how.

**The sample.** A labelled split of thousands of samples run one at a time through every attempt is
most of what ``--max-drop`` costs. The search scores the fp32 reference and every attempt on the
same bounded sample of the split instead, sized by the budget's resolution: one sample is worth
100/n points of accuracy, and n is the least for which that is at most ``budget / per_budget``
points (``per_budget`` 10: a drop of the budget is told apart to a tenth of it), within
[``least``, ``most``] and never more than the split. It is stratified (each class keeps its share
of the split, rounded by largest remainders), seeded, and run in a seeded shuffled order, so that
every prefix is a fair mix of the classes. The search records the size, how it was chosen, the seed
and the per-class counts.

**The early stop.** An attempt is run in chunks of ``chunk`` samples. Where the metric is a
fraction of samples right (top-1, binary accuracy, whole strings), after each chunk the best it
can still reach is known exactly: every remaining sample right. Once even that drop exceeds the
bar (the budget, and the best drop so far: the attempt can neither meet the budget nor be kept),
the rest is not run; the attempt's ``drop_pp`` is then that bound (``stopped_early`` says after how
many samples). The chosen attempt is never one that stopped, so the choice is the full scoring's.
A Ray trial scores all of its sample and the search replays the same stop on its outputs, so both
record the same.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from edgekit.data.labelled import LabelledSet

FRACTIONS = ("top1", "accuracy", "strings")  # metrics that are a fraction of samples right


@dataclass(frozen=True)
class SampleSettings:
    per_budget: int = 10  # one sample is worth at most budget / per_budget points
    least: int = 200
    most: int = 2000
    seed: int = 0
    chunk: int = 50  # samples run between two early-stop checks


def choose(held: LabelledSet, budget_pp: float, key: str, s: SampleSettings) -> tuple[LabelledSet, dict]:
    """The stratified, shuffled sample of ``held`` the search scores on, and its record."""
    n_all = len(held)
    if key in FRACTIONS and budget_pp > 0:
        want = math.ceil(100.0 * s.per_budget / budget_pp - 1e-9)
        how = f"one sample is 100/n points, at most the budget / {s.per_budget}: n >= {want}"
    else:
        want = s.most
        how = (f"a budget of {budget_pp:g} pp has no resolution" if key in FRACTIONS
               else f"{key} is not a fraction of samples right") + f": the most, {s.most}"
    n = min(max(want, s.least), s.most, n_all)
    if n < want:
        how += f"; capped at {n}" + (" (the whole split)" if n == n_all else f" (at most {s.most})")
    elif n > want:
        how += f"; raised to {n}" + (" (the whole split)" if n == n_all else f" (at least {s.least})")
    rng = np.random.default_rng(s.seed)
    y = np.asarray(held.y)
    strata = y.ndim == 1 and y.dtype.kind in "iub"
    if strata:
        classes, counts = np.unique(y, return_counts=True)
        quota = _largest_remainders(counts, n)
        picks = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
        idx = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    else:
        idx = rng.permutation(n_all)[:n]
    idx = idx[rng.permutation(len(idx))]  # a shuffled order: every prefix mixes the classes
    record = {"size": int(n), "of": int(n_all), "how": how, "seed": s.seed, "stratified": bool(strata),
              "chunk": s.chunk}
    if strata:
        names = list(held.classes)
        record["per_class"] = {(names[int(c)] if 0 <= int(c) < len(names) else str(int(c))): int(q)
                               for c, q in zip(classes, quota)}
    return subset(held, idx), record


def _largest_remainders(counts: np.ndarray, n: int) -> np.ndarray:
    """Integer shares of ``n`` proportional to ``counts`` (each at most its count), summing to n."""
    exact = counts * (n / counts.sum())
    quota = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - quota), kind="stable")[: n - int(quota.sum())]:
        quota[i] += 1
    return np.minimum(quota, counts)


def subset(held: LabelledSet, idx, digest: bool = True) -> LabelledSet:
    """``held`` restricted to the samples ``idx`` (its per-sample ``extra`` arrays too); ``digest``
    False: its sha256 left empty (a prefix only scored)."""
    from edgekit.data.labelled import labelled_sha256
    from edgekit.layout import take

    n = len(held)
    extra = {k: (v[idx] if isinstance(v, np.ndarray) and len(v) == n else v) for k, v in held.extra.items()}
    x, y = take(held.x, idx), np.asarray(held.y)[idx]
    return dataclasses.replace(held, x=x, y=y, extra=extra, sha256=labelled_sha256(x, y) if digest else "")


def score(run: Callable[[slice], np.ndarray], held: LabelledSet, ref_logits, ref: float, key: str,
          task: str, bar: float | None, chunk: int) -> tuple[np.ndarray, dict]:
    """Outputs of ``run(slice of held)`` chunk by chunk and what they score: accuracy, drop_pp against
    ``ref``, agreement with ``ref_logits``, samples scored. ``bar`` (None: score all): stop once even
    every remaining sample right would leave a drop above it."""
    from edgekit.layout import concat
    from edgekit.measure.metrics import agreement, drop_pp, metrics

    n, done, outs, best = len(held), 0, [], None
    step = chunk if bar is not None and key in FRACTIONS else max(n, 1)
    while done < n:
        outs.append(run(slice(done, min(done + step, n))))
        done = min(done + step, n)
        if step < n and done < n:
            right = round(metrics(concat(outs), subset(held, slice(0, done), digest=False))[key] * done)
            best = (right + n - done) / n
            if drop_pp(ref, best, key) > bar:
                break
    logits = concat(outs)
    if done == n:
        value = metrics(logits, held)[key]
        record = {"accuracy": round(value, 6), "drop_pp": drop_pp(ref, value, key)}
    else:  # the best it could have reached; the drop is at least this
        record = {"accuracy": round(best, 6), "drop_pp": drop_pp(ref, best, key),
                  "stopped_early": {"after": done, "of": n, "bar_pp": bar}}
    record.update(agreement=round(agreement(ref_logits[:done], logits, task), 6), scored=done)
    return logits, record


def build_and_measure(fmt, model, fp32_path, calib, staged, options, held_out, ref_logits, ref, key,
                      settings, bar: float | None = None) -> tuple:
    """Build one attempt's int8 artefact at ``staged`` (``options`` None: the format's default) and
    score it on ``held_out`` (``score``, stopping above ``bar``); a quick latency, build seconds.
    Returns (Int8Result, record, outputs). Raises what the build raises."""
    from edgekit.distributed import task_threads
    from edgekit.export.verify import run_session
    from edgekit.layout import take

    start = time.perf_counter()
    result = fmt.export_int8(model, Path(fp32_path), calib, Path(staged), options)
    built = time.perf_counter() - start
    threads = task_threads()  # in a Ray task: its share of the cores
    session = fmt.open(result.path, threads) if threads else fmt.open(result.path)
    outputs, record = score(lambda part: run_session(session, take(held_out.x, part), model.axes), held_out,
                            ref_logits, ref, key, model.task, bar, settings.sample.chunk)
    one = model.axes.to_model(take(held_out.x, slice(0, 1)))
    record.update(latency_p50_ms=round(_latency(session, one, settings), 4), seconds=round(built, 2))
    return result, record, outputs


def trial(fmt_name: str, job, *args) -> dict:
    """``build_and_measure`` in a Ray task, the format made with the export's ``job``, scoring all:
    {"result", "record", "outputs"}, or {"error", "seconds"} when it failed."""
    from edgekit.formats import get_format

    start = time.perf_counter()
    try:
        result, record, outputs = build_and_measure(get_format(fmt_name, job), *args)
    except Exception as exc:  # noqa: BLE001 - recorded as the attempt's failure, as a local run does
        return {"error": one_line(exc), "seconds": round(time.perf_counter() - start, 2)}
    return {"result": result, "record": record, "outputs": outputs}


def _latency(session, x: np.ndarray, settings) -> float:
    times = []
    for _ in range(settings.latency_warmup + settings.latency_runs):
        start = time.perf_counter()
        session.run(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times[settings.latency_warmup:]))


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
