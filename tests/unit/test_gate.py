"""Gate rules on a manifest: what fails, what is missing, what cannot be compared."""

from __future__ import annotations

import copy

import pytest

from edgekit.ci.gate import GateRules, check_rule_types, evaluate, passed
from edgekit.errors import UnknownNameError, UsageError


def art(fmt, precision, status="ok", **extra):
    return {"format": fmt, "precision": precision, "status": status, "bytes": 1000, **extra}


MANIFEST = {
    "model": {"name": "lenet5"},
    "artefacts": [art("onnx", "fp32"), art("onnx", "int8"),
                  art("tflite", "fp32"), art("tflite", "int8", status="failed", error="Lowering not found")],
    "eval": {"metric": "top1", "dataset": "digits", "split": "test", "samples": 269, "sha256": "a",
             "results": [
                 {"format": "pytorch", "precision": "fp32", "status": "ok", "top1": 0.98, "agreement": 1.0,
                  "drop_pp": 0.0},
                 {"format": "onnx", "precision": "fp32", "status": "ok", "top1": 0.98, "agreement": 1.0,
                  "drop_pp": 0.0},
                 {"format": "onnx", "precision": "int8", "status": "ok", "top1": 0.96, "agreement": 0.97,
                  "drop_pp": 2.0},
                 {"format": "tflite", "precision": "fp32", "status": "ok", "top1": 0.98, "agreement": 1.0,
                  "drop_pp": 0.0}]},
    "bench": {"raspberrypi@pi@10.0.0.5": {"results": [
        {"format": "onnx", "precision": "fp32", "status": "ok", "p50_ms": 2.0},
        {"format": "onnx", "precision": "int8", "status": "ok", "p50_ms": 1.0, "speedup_vs_fp32": 2.0}]}},
}


def by_rule(checks):
    return {(c.case, c.rule): c for c in checks}


def test_an_artefact_that_failed_to_export_fails_the_gate():
    checks = by_rule(evaluate(MANIFEST, GateRules(max_size_mb=1)))
    assert checks[("tflite/int8", "export")].status == "fail"
    assert "Lowering not found" in checks[("tflite/int8", "export")].detail
    assert checks[("onnx/int8", "max_size_mb")].status == "pass"
    assert not passed(list(checks.values()))
    only_onnx = evaluate(MANIFEST, GateRules(max_size_mb=1, formats=("onnx",)))
    assert passed(only_onnx)  # the failed TFLite file is outside what was asked


def test_drops_agreement_and_speed_from_a_host_bench():
    checks = by_rule(evaluate(MANIFEST, GateRules(max_drop=1, min_agreement=0.98, min_speedup=1.5,
                                                  target="raspberrypi", formats=("onnx",))))
    drop = checks[("onnx/int8", "max_drop")]
    assert drop.status == "fail" and drop.measured == 2.0
    assert checks[("onnx/int8", "min_agreement")].status == "fail"
    assert checks[("onnx/fp32", "max_drop")].status == "pass"
    assert checks[("onnx/int8", "min_speedup")].status == "pass"  # bench stored as NAME@HOST is found


def test_missing_numbers_are_not_a_pass():
    m = copy.deepcopy(MANIFEST)
    del m["eval"], m["bench"]
    checks = by_rule(evaluate(m, GateRules(max_drop=1, min_speedup=1.0, formats=("onnx",))))
    assert checks[("onnx/int8", "max_drop")].status == "missing"
    assert "edgekit eval" in checks[("onnx/int8", "max_drop")].detail
    assert checks[("onnx/int8", "min_speedup")].status == "missing"


@pytest.mark.parametrize("table, error, match", [
    ({"max_drop": "1"}, UsageError, "must be a number"),
    ({"max_drop": True}, UsageError, "must be a number"),
    ({"formats": ("onnx", "tflte")}, UnknownNameError, "did you mean 'tflite'"),
    ({"max-drop": 1}, UsageError, "unknown gate rules max-drop"),
])
def test_rule_types_are_checked(table, error, match):
    with pytest.raises(error, match=match):
        check_rule_types(table, "rules")


def test_a_baseline_of_another_model_or_other_data_is_refused(tmp_path):
    import json

    base = {"kind": "edgekit-baseline", "model": {"name": "resnet50"}, "dataset": None, "artefacts": {}}
    (tmp_path / "b.json").write_text(json.dumps(base))
    with pytest.raises(UsageError, match="the baseline is of model resnet50, this run of lenet5"):
        evaluate(MANIFEST, GateRules(max_drop=1, baseline=str(tmp_path / "b.json"),
                                     max_accuracy_regression=1))
    base.update(model={"name": "lenet5"}, dataset={"dataset": "digits", "split": "train", "samples": 1259,
                                                   "sha256": "b"})
    (tmp_path / "b.json").write_text(json.dumps(base))
    with pytest.raises(UsageError, match="evaluate both on the same data"):
        evaluate(MANIFEST, GateRules(max_drop=1, baseline=str(tmp_path / "b.json"),
                                     max_accuracy_regression=1))


def _searched(met: bool) -> dict:
    attempts = [{"index": 0, "stage": "default", "status": "ok", "drop_pp": 3.5},
                {"index": 1, "stage": "method", "status": "ok", "drop_pp": 0.8}]
    search = {"budget_pp": 0.5 if not met else 1.0, "met": met, "chosen": 1, "attempts": attempts,
              "held_out": {"name": "digits"}}
    if not met:
        search["reason"] = "best drop 0.80 pp exceeds the budget 0.5 pp after 2 attempts"
    manifest = copy.deepcopy(MANIFEST)
    manifest["artefacts"][1]["search"] = search
    return manifest


def test_an_int8_search_that_missed_its_budget_fails_whatever_rules_the_gate_got():
    checks = by_rule(evaluate(_searched(met=False), GateRules(max_size_mb=1, formats=("onnx",))))
    check = checks[("onnx/int8", "max_drop_search")]
    assert check.status == "fail" and check.measured == 0.8 and check.limit == 0.5
    assert "best drop 0.80 pp exceeds the budget 0.5 pp" in check.detail
    assert not passed(list(checks.values()))
    met = by_rule(evaluate(_searched(met=True), GateRules(max_size_mb=1, formats=("onnx",))))
    assert met[("onnx/int8", "max_drop_search")].status == "pass" and passed(list(met.values()))
    assert ("onnx/fp32", "max_drop_search") not in met  # only the searched artefact carries the rule
