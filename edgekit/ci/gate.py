"""``edgekit gate``: pass/fail rules on a run's accuracy, agreement, speed and size, for CI.

Rules relative to the run's own fp32 PyTorch model (``eval`` results): the accuracy drop of each
artefact in points, its top-1 agreement, and each int8 artefact's speed-up over the same format's
fp32 artefact (``bench`` results). Rules relative to a baseline (a file from ``edgekit
baseline`` or another run directory): accuracy may not fall by more than N points, p50 latency
may not rise by more than N percent. Absolute floors and ceilings: accuracy, p50 latency, size,
peak memory. A rule whose measurement is missing fails too ("missing"), naming the command that
makes it: a CI gate must never pass for want of numbers.

An int8 artefact exported with ``--max-drop`` carries its search record; when that search did not
meet its budget the artefact fails ``max_drop_search``, whatever rules the gate was given.

Writes a JUnit XML file (one test case per artefact x rule), a Markdown summary (also appended to
$GITHUB_STEP_SUMMARY when set) and JSON, and records the outcome in the manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.ci.gate_output import junit, markdown, passed
from edgekit.ci.gate_refusals import (
    check_comparable,
    refuse_accuracy_of_regression,
    refuse_emulated_latency,
    refuse_estimated_latency,
    rule_wording,
)
from edgekit.errors import EXIT_GATE, UsageError
from edgekit.runs import manifest as mf
from edgekit.tomlfile import read_toml

BASELINE_KIND = "edgekit-baseline"


@dataclass(frozen=True)
class GateRules:
    max_drop: float | None = None  # points of accuracy lost against the run's PyTorch fp32 model
    min_agreement: float | None = None  # top-1 agreement with the PyTorch model (0..1)
    min_speedup: float | None = None  # int8 p50 speed-up over the same format's fp32
    baseline: str | None = None  # baseline file or run directory
    max_accuracy_regression: float | None = None  # points lost against the baseline
    max_latency_regression: float | None = None  # percent p50 rise against the baseline
    min_accuracy: float | None = None  # absolute floor (0..1)
    max_latency_ms: float | None = None  # absolute p50 ceiling
    max_size_mb: float | None = None
    max_peak_mb: float | None = None
    target: str = "local-cpu"  # which bench record the speed rules read
    formats: tuple[str, ...] | None = None  # gate only these formats (default: all)
    allow_estimates: bool = False  # latency rules may read estimates (Vela's)

    def active(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if v is not None and k not in ("target", "formats", "baseline", "allow_estimates")}

    def check(self, budgets: bool = False) -> None:
        """Raise for rules that cannot be applied. ``budgets``: the run carries its own rule (an
        ``export --max-drop`` budget), so no other rule has to be given."""
        if not self.active() and not budgets:
            raise UsageError("no gate rule given; pass e.g. --max-drop 1 or --rules gates.toml")
        for name in ("min_agreement", "min_accuracy"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise UsageError(f"--{name.replace('_', '-')} is a fraction between 0 and 1, got {value}")
        if (self.max_accuracy_regression is not None or self.max_latency_regression is not None) \
                and not self.baseline:
            raise UsageError("--max-accuracy-regression/--max-latency-regression compare with a baseline; "
                             "pass --baseline FILE (from `edgekit baseline`)")

    @classmethod
    def from_mapping(cls, mapping: dict, where: str = "", base=None) -> GateRules:
        """Rules from option names (``edgekit.settings``): ``gate``'s options over a rules file, or a
        recipe's [gate] table (``base``: its folder, for the baseline). With a baseline, the accuracy
        regression limit defaults to max-drop. ``check()`` is left to the caller: whether a rule must
        be given depends on the run."""
        from edgekit.settings import Reader

        rules = _read_rules(Reader(mapping, where, base, what="gate rules"))
        if rules.get("baseline") and "max_accuracy_regression" not in rules and "max_drop" in rules:
            rules["max_accuracy_regression"] = rules["max_drop"]
        return cls(**rules)


def rules_from_toml(path: Path) -> dict:
    """The [gate] table of a rules or recipe file (or the whole file when it has no [gate])."""
    data = read_toml(path, "rules file")
    table = data.get("gate", data)
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [gate] must be a table of rules, e.g. max-drop = 1")
    return check_rule_types({str(k).replace("-", "_"): v for k, v in table.items()}, str(path))


_NUMERIC = ("max_drop", "min_agreement", "min_speedup", "max_accuracy_regression", "max_latency_regression",
            "min_accuracy", "max_latency_ms", "max_size_mb", "max_peak_mb")


def check_rule_types(table: dict, where: str) -> dict:
    """Rules with their Python names, type-checked: numbers are numbers, formats known names."""
    from edgekit.settings import Reader

    return _read_rules(Reader(table, where, what="gate rules", dashes=False))


def _read_rules(r) -> dict:
    """The rules given to ``r`` (an ``edgekit.settings.Reader``), type-checked; unknown ones refused."""
    rules = {key: r.number(key) for key in _NUMERIC}
    baseline = r.path("baseline")
    rules.update(baseline=None if baseline is None else str(baseline), target=r.text("target"),
                 formats=r.formats("formats", None), allow_estimates=r.flag("allow_estimates") or None)
    r.done()
    return {k: v for k, v in rules.items() if v is not None}


@dataclass
class Check:
    rule: str
    format: str
    precision: str
    measured: float | None
    limit: float
    op: str  # "<=" or ">="
    status: str  # "pass" | "fail" | "missing"
    detail: str = ""

    @property
    def case(self) -> str:
        return f"{self.format}/{self.precision}"


# ---------------------------------------------------------------- measurements


def _artefacts(manifest: dict, formats) -> list[dict]:
    return [a for a in manifest["artefacts"]
            if a.get("status") == "ok" and (not formats or a["format"] in formats)]


def _accuracy(manifest: dict) -> tuple[dict, str | None]:
    ev = manifest.get("eval")
    if not ev:
        return {}, None
    key = ev["metric"]
    return {(r["format"], r["precision"]): r for r in ev["results"] if r.get("status") == "ok"}, key


def bench_key(manifest: dict, target: str) -> str:
    """The bench record's key: the target's name, or NAME@HOST when it was benched with --host."""
    records = manifest.get("bench") or {}
    if target in records:
        return target
    hosts = [k for k in records if k.startswith(f"{target}@")]
    return hosts[0] if len(hosts) == 1 else target


def _bench(manifest: dict, target: str) -> dict:
    record = (manifest.get("bench") or {}).get(bench_key(manifest, target))
    if not record:
        return {}
    return {(r["format"], r["precision"]): r for r in record["results"] if r.get("status") == "ok"}


def figures(manifest: dict, target: str = "local-cpu") -> dict:
    """Per artefact ("fmt/precision"): accuracy, agreement, p50, size, peak memory (what a baseline
    stores and what the gate compares)."""
    acc, key = _accuracy(manifest)
    bench = _bench(manifest, target)
    fits = {(r["format"], r["precision"]): r["fit"]["ram_bytes"] for r in
            ((manifest.get("check") or {}).get(bench_key(manifest, target)) or {}).get("results", [])
            if r.get("fit")}
    out = {}
    for art in manifest["artefacts"]:
        if art.get("status") != "ok":
            continue
        k = (art["format"], art["precision"])
        row = {"bytes": art.get("bytes")}
        if k in acc:
            row.update(accuracy=acc[k][key], agreement=acc[k].get("agreement"), drop_pp=acc[k].get("drop_pp"))
        if k in bench:  # an estimate's memory is the SRAM Vela says it uses
            row.update(p50_ms=bench[k]["p50_ms"], speedup_vs_fp32=bench[k].get("speedup_vs_fp32"),
                       peak_rss_bytes=bench[k].get("peak_rss_bytes") or bench[k].get("ram_bytes"))
        elif k in fits:  # a microcontroller: the RAM `check` measured (the tensor arena)
            row.update(peak_rss_bytes=fits[k])
        out[f"{k[0]}/{k[1]}"] = row
    return out


def make_baseline(run_dir: Path, target: str = "local-cpu") -> dict:
    manifest = mf.read_manifest(run_dir)
    ev = manifest.get("eval") or {}
    return {
        "kind": BASELINE_KIND,
        "schema_version": 1,
        "created": mf.utc_now(),
        "run": str(Path(run_dir).resolve()),
        "model": {k: manifest["model"].get(k) for k in ("name", "options", "parameters", "macs")}
        | {"weights_sha256": (manifest["model"].get("weights") or {}).get("sha256")},
        "dataset": {k: ev.get(k) for k in ("dataset", "split", "samples", "sha256", "metric")}
        if ev else None,
        "target": target,
        "bench_environment": ((manifest.get("bench") or {}).get(bench_key(manifest, target)) or {})
        .get("environment"),
        "tools": manifest.get("tools"),
        "artefacts": figures(manifest, target),
    }


def load_baseline(path: str, target: str) -> dict:
    p = Path(path)
    if p.is_dir():
        return make_baseline(p, target)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"baseline {p} does not exist; "
                         f"make one with `edgekit baseline RUN_DIR --out {p}`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"baseline {p} is not a readable JSON file: {exc}") from None
    if data.get("kind") != BASELINE_KIND:
        raise UsageError(f"{p} is not an edgekit baseline; "
                         f"make one with `edgekit baseline RUN_DIR --out {p}`")
    return data


# ---------------------------------------------------------------- rules


def evaluate(manifest: dict, rules: GateRules) -> list[Check]:
    """Every rule on every artefact it applies to."""
    rules.check(budgets=any(a.get("search") for a in manifest["artefacts"]))
    arts = _artefacts(manifest, rules.formats)
    checks: list[Check] = []
    for art in manifest["artefacts"]:  # an artefact that did not export fails the gate outright
        if art.get("status") != "ok" and (not rules.formats or art["format"] in rules.formats):
            checks.append(Check("export", art["format"], art["precision"], None, 0, "==", "fail",
                                f"the artefact {art.get('status', 'failed')}: {art.get('error', '')}"[:300]))
    if not arts and not checks:
        raise UsageError("the run has no artefact to gate (--formats left none)")
    mine = figures(manifest, rules.target)
    base = None
    if rules.baseline:
        baseline = load_baseline(rules.baseline, rules.target)
        check_comparable(manifest, baseline, rules)
        base = baseline["artefacts"]
    refuse_accuracy_of_regression(manifest, rules)
    wording = rule_wording(manifest)
    bench_record = (manifest.get("bench") or {}).get(bench_key(manifest, rules.target))
    refuse_emulated_latency(bench_record, rules, baseline if rules.baseline else None)
    refuse_estimated_latency(bench_record, rules)
    est = " (ESTIMATED by Vela)" if (bench_record or {}).get("estimated") else ""
    no_eval = "no accuracy in the run: run `edgekit eval RUN --dataset ...` (or export with --eval) first"
    no_bench = f"no latency for target {rules.target}: run `edgekit bench RUN --target {rules.target}` first"

    def add(rule, art, measured, limit, op, missing_why, detail=""):
        if measured is None:
            checks.append(Check(rule, art["format"], art["precision"], None, limit, op, "missing",
                                missing_why))
            return
        ok = measured <= limit if op == "<=" else measured >= limit
        checks.append(Check(rule, art["format"], art["precision"], measured, limit, op,
                            "pass" if ok else "fail", detail))

    for art in arts:
        key = f"{art['format']}/{art['precision']}"
        f = mine.get(key, {})
        int8 = art["precision"] == "int8"
        if art.get("search"):  # export --max-drop: its own budget holds whatever rules the gate got
            checks.append(search_check(art))
        if rules.max_drop is not None:
            add("max_drop", art, f.get("drop_pp"), rules.max_drop, "<=", no_eval, wording["max_drop"])
        if rules.min_agreement is not None:
            add("min_agreement", art, f.get("agreement"), rules.min_agreement, ">=", no_eval,
                wording["min_agreement"])
        if rules.min_speedup is not None and int8:
            fp32 = mine.get(f"{art['format']}/fp32", {})
            speed = f.get("speedup_vs_fp32")
            why = no_bench if "p50_ms" not in f or fp32 else f"no fp32 {art['format']} artefact to compare"
            add("min_speedup", art, speed, rules.min_speedup, ">=", why,
                f"int8 p50 speed-up over fp32 on {rules.target}")
        if rules.min_accuracy is not None:
            add("min_accuracy", art, f.get("accuracy"), rules.min_accuracy, ">=", no_eval)
        if rules.max_latency_ms is not None:
            add("max_latency_ms", art, f.get("p50_ms"), rules.max_latency_ms, "<=", no_bench,
                f"p50 on {rules.target}{est}")
        if rules.max_size_mb is not None:
            add("max_size_mb", art, (f.get("bytes") or 0) / 1e6, rules.max_size_mb, "<=", "")
        if rules.max_peak_mb is not None:
            peak = f.get("peak_rss_bytes")
            add("max_peak_mb", art, peak / 1e6 if peak else None, rules.max_peak_mb, "<=", no_bench,
                "SRAM, Vela's estimate" if est else "")
        if base is not None:
            b = base.get(key)
            if b is None:
                if rules.max_accuracy_regression is not None or rules.max_latency_regression is not None:
                    checks.append(Check("baseline", art["format"], art["precision"], None, 0, "==", "missing",
                                        "the baseline has no such artefact"))
                continue
            if rules.max_accuracy_regression is not None:
                fell = 100 * (b["accuracy"] - f["accuracy"]) if "accuracy" in f and "accuracy" in b else None
                add("max_accuracy_regression", art, fell, rules.max_accuracy_regression, "<=",
                    no_eval if "accuracy" not in f else "the baseline has no accuracy for it",
                    f"points below the baseline ({100 * b['accuracy']:.2f}%)" if "accuracy" in b else "")
            if rules.max_latency_regression is not None:
                rose = 100 * (f["p50_ms"] / b["p50_ms"] - 1) if f.get("p50_ms") and b.get("p50_ms") else None
                add("max_latency_regression", art, rose, rules.max_latency_regression, "<=",
                    no_bench if not f.get("p50_ms") else "the baseline has no latency for it",
                    f"% slower than the baseline ({b['p50_ms']:.3f} ms)" if b.get("p50_ms") else "")
    return checks


def search_check(art: dict) -> Check:
    """An int8 artefact made with ``export --max-drop`` fails when its search missed the budget."""
    search = art["search"]
    chosen = search["attempts"][search["chosen"]]
    drop, budget = chosen.get("drop_pp"), search["budget_pp"]
    data = (search.get("held_out") or {}).get("name", "the held-out set")
    detail = f"points below PyTorch fp32 on {data} (export --max-drop): " + search.get("reason", "met")
    return Check("max_drop_search", art["format"], art["precision"], drop, budget, "<=",
                 "pass" if search.get("met") else "fail", detail)


def run_gate(run_dir: Path, rules: GateRules, junit_path: Path | None = None,
             markdown_path: Path | None = None) -> dict:
    """Evaluate, write JUnit + Markdown + JSON (default: RUN_DIR/gate/), record in the manifest."""
    run_dir = Path(run_dir)
    for option, path in (("--junit", junit_path), ("--markdown", markdown_path)):
        if path is not None and Path(path).is_dir():
            raise UsageError(f"{option} {path} is a folder; give a file path, e.g. {Path(path) / 'gate.xml'}")
    manifest = mf.read_manifest(run_dir)
    checks = evaluate(manifest, rules)
    ok = passed(checks)
    out = run_dir / "gate"
    junit_path = Path(junit_path) if junit_path else out / "junit.xml"
    markdown_path = Path(markdown_path) if markdown_path else out / "summary.md"
    text = markdown(checks, manifest, rules)
    result = {"created": mf.utc_now(), "passed": ok, "rules": {k: v for k, v in asdict(rules).items()
                                                                if v is not None},
              "checks": [asdict(c) for c in checks], "junit": str(junit_path), "markdown": str(markdown_path)}
    for name, path, data in (("junit", junit_path, junit(checks, manifest["model"]["name"])),
                             ("markdown", markdown_path, text)):
        if not _write(path, data, run_dir, result):
            result[name] = None  # in a run directory that cannot take it: the line says so
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as f:
            f.write(text + "\n")
    if "not_stored" not in result and _write(out / "gate.json", result, run_dir, result):
        record = {k: result[k] for k in ("created", "passed", "rules")} | {
            "failed": [f"{c.case} {c.rule}" for c in checks if c.status != "pass"]}
        mf.update_or_note(run_dir, lambda fresh: mf.keep_record(fresh, "gate", record), result)
    return result


def _write(path: Path, data, run_dir: Path, result: dict) -> bool:
    """Write a gate output (text or JSON). One in the run directory that the folder refuses is noted in
    ``result["not_stored"]`` (printed after the verdict) and skipped; returns whether it was written."""
    path = Path(path)
    inside = path.resolve().is_relative_to(Path(run_dir).resolve())
    try:
        with mf.storing(run_dir):
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, dict):
                mf.write_json_atomic(path, data)
            else:
                mf.write_atomic(path, data)
    except mf.NotStoredError as exc:
        if not inside:  # a path the user gave, elsewhere: theirs to change
            raise UsageError(f"cannot write {path} ({exc.reason}); "
                             "give a path in a writable folder") from None
        result.setdefault("not_stored", exc.message)
        return False
    return True


__all__ = ["EXIT_GATE", "GateRules", "run_gate", "make_baseline", "rules_from_toml", "evaluate"]
