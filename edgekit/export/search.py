"""Search for an int8 artefact within an accuracy budget (``export --int8 --max-drop PP --eval DATA``).

The default int8 artefact is measured on a labelled held-out set against the PyTorch fp32 model on
the same samples. While its drop exceeds the budget the search tries what the format's own
toolchain offers, cheapest first, and stops at the first attempt within the budget:

1. the format's default (what ``export_int8`` does without options);
2. more calibration samples (``more_calib``, 4x, capped by what the source has);
3. each of ``fmt.remedies(model)``: other calibration methods;
4. the worst 1, 2, 4, 8 layers kept in float, ranked by ``edgekit.inspect.layer_errors`` on the best
   attempt so far.

With ``--ray`` (``edgekit.distributed``) the attempts of a stage (default and more calibration; the
methods; the exclusion steps) run as Ray tasks at once and are taken in the same order with the same
stop, so the chosen attempt and the records are the local search's (the stage's later ones are dropped).

Every attempt and the fp32 reference are scored on the same stratified sample of the held-out set,
sized by the budget's resolution, and an attempt that can neither meet the budget nor beat the best
so far stops early (``edgekit.export.sample``; recorded as the search's ``sample``).

Attempts are written beside ``path`` under hidden temporary names; only the best (lowest drop, ties
to the earlier, cheaper one) ends up at ``path``, the others are removed, and the fp32 artefact is
only read. Every attempt is recorded (settings, drop, accuracy, agreement, build seconds, a quick
latency figure) in the dict the pipeline stores as the artefact's ``search``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.export.sample import SampleSettings, build_and_measure, choose, one_line, score, trial
from edgekit.formats.base import Int8Options, Int8Result

if TYPE_CHECKING:
    from edgekit.data.datasets import LabelledSet
    from edgekit.formats.base import Format
    from edgekit.models.spec import LoadedModel

LATENCY_NOTE = ("quick in-process p50 of single-sample runs after warm-ups, on this machine; "
                "not a benchmark (use `edgekit bench`)")


@dataclass(frozen=True)
class SearchSettings:
    budget_pp: float  # the largest accepted drop, in points of the primary metric
    more_calib_factor: int = 4  # "more calibration samples" asks the source for this many times more
    exclude_steps: tuple[int, ...] = (1, 2, 4, 8)  # worst layers kept in float, tried in turn
    rank_samples: int = 32  # held-out samples layer_errors ranks the layers on
    latency_runs: int = 20
    latency_warmup: int = 3
    sample: SampleSettings = SampleSettings()  # what attempts are scored on (edgekit.export.sample)


@dataclass
class _Attempt:
    index: int
    stage: str  # "default" | "more-calibration" | "method" | "exclude"
    options: Int8Options
    calib: np.ndarray
    result: Int8Result | None = None
    drop_pp: float = float("inf")
    record: dict = dataclasses.field(default_factory=dict)


def search_int8(
    fmt: Format,
    model: LoadedModel,
    fp32_path: Path,
    path: Path,
    calib: np.ndarray,
    held_out: LabelledSet,
    settings: SearchSettings,
    more_calib: Callable[[int], np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
    ray: str | None = None,
) -> tuple[Int8Result, dict]:
    """Build the int8 artefact at ``path`` with the least drop found; return it and the record.

    ``calib``: the run's calibration samples; ``more_calib(n)``: up to n calibration samples from
    the same source (never the held-out ones), or None when there are no more. ``held_out``:
    labelled samples the drop is measured on. Raises the default attempt's error when even that
    fails; later attempts that fail are recorded and skipped. ``ray`` ("auto" or an address; default:
    the cluster this process already joined, if any): run a stage's attempts as Ray tasks.
    """
    from edgekit.distributed import active, connect

    search = _Search(fmt, model, Path(fp32_path), Path(path), held_out, settings, progress)
    search.backend = connect(ray) if ray else active()
    if search.backend is not None:
        search.remote.update(search.backend.to_dict(), trials=0, discarded=0)
    try:
        for stage in search.plan(calib, more_calib):
            search.run_stage(stage)
            if search.met:
                break
        return search.finish()
    finally:
        search.cleanup()


class _Search:
    def __init__(self, fmt, model, fp32_path, path, held_out, settings, progress):
        from edgekit.measure.metrics import metrics, predict, primary_metric

        self.fmt, self.model, self.fp32_path, self.path = fmt, model, fp32_path, path
        self.settings, self.progress = settings, progress or (lambda _: None)
        self.key = primary_metric(model.task)
        self.held_out, self.sample = choose(held_out, settings.budget_pp, self.key, settings.sample)
        self.ref_logits = predict(model.axes.module(model.module), self.held_out.x)
        self.ref = metrics(self.ref_logits, self.held_out)[self.key]
        self.attempts: list[_Attempt] = []
        self.notes: list[str] = []
        self.ranking: list[dict] = []
        self.chosen: _Attempt | None = None
        self.weighted: list[str] = []  # the ranked layers with weights, worst first
        self.made: list[_Attempt] = []  # every attempt planned (its files are cleaned up)
        self.backend = None  # edgekit.distributed.RayBackend: a stage's attempts as Ray tasks
        self.remote: dict = {}  # what the Ray backend did (recorded as the search's "backend")
        self.shared: list = []  # the model, held-out set and reference logits in Ray's object store

    @property
    def best(self) -> _Attempt:
        ok = [a for a in self.attempts if a.result is not None]
        return min(ok, key=lambda a: (a.drop_pp, a.index))

    @property
    def met(self) -> bool:
        ok = any(a.result is not None for a in self.attempts)
        return ok and self.best.drop_pp <= self.settings.budget_pp

    def plan(self, calib, more_calib) -> Iterator[list[_Attempt]]:
        """The attempts in stages, in order; a stage is made only after the ones before it were
        measured, and its attempts depend only on those."""
        first = [self._new("default", Int8Options(), calib)]
        if self.backend is None:  # locally more calibration samples are drawn only when it misses
            yield first
            first = []
        yield first + self._more(calib, more_calib)
        methods = []
        for options in self.fmt.remedies(self.model):
            if options.method in self.fmt.validated_methods:  # it measures accuracy itself
                options = dataclasses.replace(options, max_drop_pp=self.settings.budget_pp,
                                              validation=(self.held_out, self.key))
            methods.append(self._new("method", options, self.best.calib))
        yield methods
        yield self._exclusions()

    def _more(self, calib, more_calib) -> list[_Attempt]:
        if more_calib is None:
            return []
        more = more_calib(self.settings.more_calib_factor * len(calib))
        if more is not None and len(more) > len(calib):
            return [self._new("more-calibration", Int8Options(), np.asarray(more, np.float32))]
        self.notes.append("the calibration source has no more samples")
        return []

    def _exclusions(self) -> list[_Attempt]:
        candidates = [a for a in self.attempts if a.result is not None and self.fmt.can_exclude(a.options)]
        if not candidates:
            self.notes.append("no attempt whose method can keep layers in float")
            return []
        base = min(candidates, key=lambda a: (a.drop_pp, a.index))
        names = self._rank(base)
        # An int8 artefact keeps most of its weighted layers int8: at most half go back to float
        # (with all of them in float the "int8" file would be the fp32 model).
        cap = len(self.weighted) // 2
        if names and max(self.settings.exclude_steps, default=0) > cap:
            self.notes.append(f"at most {cap} of the {len(self.weighted)} weighted layers kept in float")
        done, out = 0, []
        for k in self.settings.exclude_steps:
            k = min(k, len(names), cap)
            if k <= done:
                break
            done = k
            options = dataclasses.replace(base.options, exclude=tuple(names[:k]))
            out.append(self._new("exclude", options, base.calib))
        return out

    def _rank(self, base: _Attempt) -> list[str]:
        """Layer names worst first by edgekit.inspect.layer_errors on ``base``'s artefact; [] (and a
        note) when the ranking cannot be made."""
        try:
            from edgekit.inspect import CONV_OPS, LINEAR_OPS, layer_errors
        except ImportError:
            self.notes.append("per-layer exclusion skipped: edgekit.inspect is not available")
            return []
        try:
            samples = self.held_out.x[: self.settings.rank_samples]
            errors = layer_errors(self.fmt.name, self.model, self.fp32_path, base.result.path, samples)
        except Exception as exc:  # noqa: BLE001 - a ranking failure must not lose the artefacts found
            self.notes.append(f"per-layer exclusion skipped: ranking failed: {one_line(exc)}")
            return []
        # Only layers with weights: keeping a MaxPool or a Reshape in float buys nothing.
        weighted = [e for e in errors if e.op in CONV_OPS | LINEAR_OPS]
        self.weighted = list(dict.fromkeys(e.name for e in weighted if e.name))
        names = self.weighted
        self.ranking = [{"name": e.name, "op": e.op, "sqnr_db": round(float(e.sqnr_db), 2)}
                        for e in weighted[: max(self.settings.exclude_steps, default=0)]]
        if not names:
            self.notes.append("per-layer exclusion skipped: no layer to rank")
        return names

    def _new(self, stage: str, options: Int8Options, calib: np.ndarray) -> _Attempt:
        self.made.append(_Attempt(len(self.made), stage, options, calib))
        return self.made[-1]

    def _staged_path(self, index: int) -> Path:
        return self.path if index == 0 else self.path.with_name(f".search-{index}.{self.path.name}")

    def run_stage(self, stage: list[_Attempt]) -> None:
        """The stage's attempts in order until one is within the budget (with Ray: all at once)."""
        outcomes = self._remote(stage) if self.backend is not None and len(stage) > 1 else None
        for i, a in enumerate(stage):
            if outcomes is None or (a.index == 0 and "error" in outcomes[i]):
                self.run(a)  # (the default's error is raised from a local run, as without Ray)
            else:
                self._take(a, outcomes[i])
            if self.met:
                if outcomes is not None:  # built and measured, but the local search stops before them
                    self.remote["discarded"] += len(stage) - i - 1
                return

    def _remote(self, stage: list[_Attempt]) -> list[dict] | None:
        """Each attempt's ``trial`` as a Ray task; None (a note; local from now on) if Ray cannot run it."""
        try:
            shared = (self.model, self.held_out, self.ref_logits)  # a user's model may not pickle: noted
            self.shared = self.shared or [self.backend.put(v) for v in shared]
            model, held, ref_logits = self.shared
            calls = [(self.fmt.name, self.fmt.job, model, str(self.fp32_path), a.calib,
                      str(self._staged_path(a.index)), a.options if a.index else None, held, ref_logits,
                      self.ref, self.key, self.settings) for a in stage]
            outcomes = self.backend.map(trial, calls)
        except Exception as exc:  # noqa: BLE001 - any Ray or pickling failure: the local search still works
            self.notes.append(f"search trials ran locally: Ray could not run them ({one_line(exc)})")
            self.progress(f"  {self.fmt.name} int8: {self.notes[-1]}")
            self.backend = None
            return None
        self.remote["trials"] += len(stage)
        return outcomes

    def _begin(self, a: _Attempt) -> None:
        self.attempts.append(a)
        a.record = {"index": a.index, "stage": a.stage,
                    "settings": {**a.options.to_dict(), "calibration_samples": int(len(a.calib))}}

    def _take(self, a: _Attempt, outcome: dict) -> None:
        """Record a Ray task's ``trial`` of ``a`` as ``run`` records a local one (the same early stop,
        replayed on the trial's outputs)."""
        self._begin(a)
        if "error" in outcome:
            a.record.update(status="failed", error=outcome["error"], seconds=outcome["seconds"])
        else:
            outputs = outcome["outputs"]
            _, scored = score(lambda part: outputs[part], self.held_out, self.ref_logits, self.ref, self.key,
                              self.model.task, self._bar(), self.settings.sample.chunk)
            a.result = outcome["result"]
            a.record.update(outcome["record"], **scored, status="ok")
            a.drop_pp = a.record["drop_pp"]
        self.progress(attempt_line(self.fmt.name, a.record, self.settings.budget_pp))

    def _bar(self) -> float | None:
        """The drop above which the attempt being measured can neither meet the budget nor be kept;
        None while nothing was measured (the first attempt is always scored in full)."""
        if not any(a.result is not None for a in self.attempts):
            return None
        return max(self.settings.budget_pp, self.best.drop_pp)

    def run(self, a: _Attempt) -> None:
        """Build attempt ``a`` in its own file, measure it, record it."""
        self._begin(a)
        start = time.perf_counter()
        try:
            a.result, measured, _ = build_and_measure(
                self.fmt, self.model, self.fp32_path, a.calib, self._staged_path(a.index),
                None if a.index == 0 else a.options, self.held_out, self.ref_logits, self.ref, self.key,
                self.settings, self._bar())
            a.record.update(measured, status="ok")
            a.drop_pp = a.record["drop_pp"]
        except Exception as exc:
            if a.index == 0:  # the default artefact failed: the pipeline reports it as today
                raise
            a.result = None
            a.record.update(status="failed", error=one_line(exc),
                            seconds=round(time.perf_counter() - start, 2))
            if not isinstance(exc, EdgekitError):
                import logging

                logging.getLogger("edgekit").debug("int8 search attempt failed", exc_info=True)
        self.progress(attempt_line(self.fmt.name, a.record, self.settings.budget_pp))

    def finish(self) -> tuple[Int8Result, dict]:
        """Move the best attempt to ``path`` and build the record."""
        best = self.chosen = self.best
        if best.result.path != self.path:
            for src, dst in zip(self.fmt.files(best.result.path), self.fmt.files(self.path)):
                os.replace(src, dst)
        result = Int8Result(self.path, {**best.result.scheme})
        return result, self._record(best)

    def _record(self, best: _Attempt) -> dict:
        s = self.settings
        record = {
            "budget_pp": s.budget_pp,
            "met": best.drop_pp <= s.budget_pp,
            "chosen": best.index,
            "metric": self.key,
            "reference_accuracy": round(self.ref, 6),
            "held_out": self.held_out.to_dict(),  # the sample scored: its name, split, size, sha256
            "sample": dict(self.sample),
            "latency": f"{LATENCY_NOTE}: {s.latency_runs} runs after {s.latency_warmup} warm-ups",
            "attempts": [a.record for a in self.attempts],
        }
        if self.ranking:
            record["ranking"] = self.ranking
        if self.remote:
            record["backend"] = dict(self.remote)
        if self.notes:
            record["notes"] = list(self.notes)
        if not record["met"]:
            record["reason"] = (f"best drop {best.drop_pp:.2f} pp exceeds the budget {s.budget_pp:g} pp "
                                f"after {len(self.attempts)} attempts (kept #{best.index}: "
                                f"{describe(best.record)})" + "".join(f"; {n}" for n in self.notes))
        return record

    def cleanup(self) -> None:
        """Remove every attempt's files but the one at ``path`` (also after an error)."""
        for a in self.made:
            staged = self._staged_path(a.index)
            if staged != self.path:
                for f in self.fmt.files(staged):
                    f.unlink(missing_ok=True)


def describe(attempt: dict) -> str:
    """"percentile, 128 calibration samples, 2 layers in float"."""
    s = attempt["settings"]
    parts = [s["method"], f"{s['calibration_samples']} calibration samples"]
    if s.get("exclude"):
        parts.append(f"{len(s['exclude'])} layer{'s' if len(s['exclude']) > 1 else ''} in float")
    return ", ".join(parts)


def attempt_line(fmt_name: str, attempt: dict, budget_pp: float) -> str:
    head = f"  {fmt_name} int8 attempt {attempt['index']} ({describe(attempt)})"
    if attempt.get("status") != "ok":
        return f"{head}: failed: {attempt.get('error', '')}"
    stop = attempt.get("stopped_early")  # its drop is then a bound: at least this
    verdict = f"{'within' if attempt['drop_pp'] <= budget_pp else 'over'} {budget_pp:g}"
    verdict += f", stopped after {stop['after']} of {stop['of']} samples" if stop else ""
    return (f"{head}: drop {'at least ' if stop else ''}{attempt['drop_pp']:+.2f} pp ({verdict}), agreement "
            f"{attempt['agreement']:.1%}, ~{attempt['latency_p50_ms']:.3f} ms, "
            f"built in {attempt['seconds']}s")


def summary_lines(fmt_name: str, record: dict) -> list[str]:
    """What to print after a searched artefact: one line per attempt, then the outcome."""
    lines = [attempt_line(fmt_name, a, record["budget_pp"]) for a in record["attempts"]]
    chosen = record["attempts"][record["chosen"]]
    if record["met"]:
        lines.append(f"  {fmt_name} int8 kept attempt {chosen['index']}: drop {chosen['drop_pp']:+.2f} pp "
                     f"within the budget {record['budget_pp']:g} pp")
    else:
        lines.append(f"warning: {fmt_name} int8 misses the budget: {record['reason']}")
    return lines
