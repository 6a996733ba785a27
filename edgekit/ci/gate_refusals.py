"""What the gate refuses to compare at all: a baseline of another model or of other data, latency
measured under emulation (QEMU), which is not a device's latency, latency that is an estimate
(Vela's) unless told ``--allow-estimates``, and accuracy rules on a
regression model, which has an error (MAE), not an accuracy."""

from __future__ import annotations

from edgekit.errors import UsageError

LATENCY_RULES = ("min_speedup", "max_latency_ms", "max_latency_regression")


def check_comparable(manifest: dict, baseline: dict, rules) -> None:
    """Refuse a baseline of another model, or accuracy measured on other samples."""
    mine, theirs = manifest["model"].get("name"), (baseline.get("model") or {}).get("name")
    if theirs and mine != theirs:
        raise UsageError(f"the baseline is of model {theirs}, this run of {mine}; "
                         "make a baseline from a run of the same model")
    if rules.max_accuracy_regression is not None:
        ev, bd = manifest.get("eval") or {}, baseline.get("dataset") or {}
        if ev and bd and bd.get("sha256") and ev.get("sha256") != bd.get("sha256"):
            raise UsageError(
                f"the baseline's accuracy was measured on {bd.get('dataset')} ({bd.get('split')}, "
                f"{bd.get('samples')} samples) and this run's on {ev.get('dataset')} ({ev.get('split')}, "
                f"{ev.get('samples')} samples); evaluate both on the same data to compare them")


def refuse_emulated_latency(record: dict | None, rules, baseline: dict | None) -> None:
    """Latency rules on figures measured under emulation (a target with ``emulated = true``, or a
    runner that saw QEMU) are refused: they would gate on the emulator's speed, not the device's.
    ``record``: the run's bench record for the rules' target."""
    latency = [name for name in LATENCY_RULES if getattr(rules, name) is not None]
    if not latency:
        return
    why = (record or {}).get("emulated") or ((baseline or {}).get("bench_environment") or {}).get("emulated")
    if why:
        names = ", ".join("--" + name.replace("_", "-") for name in latency)
        raise UsageError(f"{names} on target {rules.target}: its latency was measured under emulation "
                         f"({why}), which says nothing about the device's speed; gate latency on a bench "
                         "of the real device, and keep accuracy and size rules for the emulated one")


def refuse_estimated_latency(record: dict | None, rules) -> None:
    """Latency rules on a bench record of estimates (Vela's, of an Ethos-U target) are refused unless
    the gate was told ``--allow-estimates``: a performance model is not a measurement."""
    latency = [name for name in LATENCY_RULES if getattr(rules, name) is not None]
    why = (record or {}).get("estimated")
    if latency and why and not rules.allow_estimates:
        names = ", ".join("--" + name.replace("_", "-") for name in latency)
        raise UsageError(f"{names} on target {rules.target}: its latency is an ESTIMATE ({why}), not a "
                         "measurement", hint="pass --allow-estimates to gate on the estimate, or keep size "
                         "and memory rules (--max-size-mb, --max-peak-mb) for this target")


def refuse_accuracy_of_regression(manifest: dict, rules) -> None:
    """--min-accuracy and --max-accuracy-regression on a run evaluated as regression (metric MAE)."""
    ev = manifest.get("eval") or {}
    if ev.get("metric") != "mae":
        return
    given = [name for name in ("min_accuracy", "max_accuracy_regression") if getattr(rules, name) is not None]
    if given:
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{names}: the run is a regression model, scored by its mean absolute error, "
                         "not an accuracy; gate it with --max-drop (percent the MAE may rise above "
                         "PyTorch's) or --min-agreement (share of outputs within tolerance)")


def rule_wording(manifest: dict) -> dict:
    """What --max-drop and --min-agreement measure for the run's task (its eval record's metric)."""
    ev = manifest.get("eval") or {}
    metric, task = ev.get("metric"), ev.get("task") or (manifest.get("model") or {}).get("task")
    if metric == "mae":
        return {"max_drop": "percent the MAE rose above PyTorch fp32's",
                "min_agreement": "share of outputs within tolerance of PyTorch fp32"}
    if task == "binary":
        return {"max_drop": "points of accuracy below PyTorch fp32",
                "min_agreement": "decision (sigmoid >= 0.5) agreement with PyTorch fp32"}
    return {"max_drop": "points below PyTorch fp32", "min_agreement": "top-1 agreement with PyTorch fp32"}
