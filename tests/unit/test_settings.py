"""The settings layer: the command line's options and a recipe's keys make the same settings values."""

from __future__ import annotations

import pytest

from edgekit.bench.core import BenchSettings
from edgekit.ci.gate import GateRules
from edgekit.errors import UnknownNameError, UsageError
from edgekit.export.plan import ExportPlan
from edgekit.export.prune import PruneSettings
from edgekit.formats import default_names


def test_dashed_and_underscored_names_make_the_same_plan(tmp_path):
    recipe = ExportPlan.from_mapping({"model": "lenet5", "calib-size": 4, "to": ["onnx", "tflite"],
                                      "prune": {"ratio": 0.3, "round-to": 8}}, "r.toml", tmp_path)
    cli = ExportPlan.from_mapping({"model": "lenet5", "calib_size": 4, "to": "onnx,tflite",
                                   "prune": PruneSettings.from_mapping({"ratio": 0.3, "round_to": 8})})
    assert recipe == cli
    assert (cli.calib_size, cli.formats, cli.prune.round_to) == (4, ("onnx", "tflite"), 8)


def test_defaults_come_from_the_settings_class():
    plan = ExportPlan.from_mapping({"model": "lenet5"})
    assert plan.formats == default_names() and plan.calib_size == 32 and plan.options.width == 1.0
    assert BenchSettings.from_mapping({}) == BenchSettings()
    assert PruneSettings.from_mapping({"ratio": None}, required=False) is None


def test_recipe_paths_are_relative_to_the_recipe(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"")
    plan = ExportPlan.from_mapping({"model": "lenet5", "weights": "w.pt", "calib": "digits",
                                    "out": "run"}, "r.toml", tmp_path)
    assert plan.weights == (tmp_path / "w.pt").resolve() and plan.out == tmp_path / "run"
    assert plan.calib == "digits"  # a built-in name stays a name
    rules = GateRules.from_mapping({"baseline": "b.json", "max-drop": 1}, "r.toml [gate]", tmp_path)
    assert rules.baseline == str(tmp_path / "b.json") and rules.max_accuracy_regression == 1.0


@pytest.mark.parametrize("make, mapping, error, match", [
    (ExportPlan, {"model": "lenet5", "calib-sise": 8}, UsageError, "r.toml: unknown keys calib_sise; "),
    (ExportPlan, {"model": "lenet5", "int8": "no"}, UsageError, "int8 must be true or false"),
    (ExportPlan, {"model": "lenet5", "to": "onnx,tflight"}, UnknownNameError, "did you mean 'tflite'"),
    (ExportPlan, {"model": "lenet5", "max-drop": 1}, UsageError, "max-drop needs int8 = true and an"),
    (ExportPlan, {"to": "onnx"}, UsageError, "name the model"),
    (ExportPlan, {"model": "lenet5", "calib-size": 200000}, UsageError,
     "^r.toml: calib-size must be between 1 and 100000, got 200000$"),
    (ExportPlan, {"model": "lenet5", "width": 50}, UsageError,
     "^r.toml: width must be between 0.01 and 16, got 50$"),
    (PruneSettings, {"ratio": 0.3, "method": "random"}, UsageError,
     "^r.toml: method 'random': use one of structured, unstructured$"),
    (PruneSettings, {"method": "structured"}, UsageError, "give the ratio"),
    (PruneSettings, {"ratio": 0.3, "keep": [1]}, UsageError, "keep must be a list of strings"),
    (BenchSettings, {"iters": 3, "seconds": 1}, UsageError, "pass iters or seconds, not both"),
    (BenchSettings, {"batch": 0}, UsageError, "batch must be >= 1"),
    (GateRules, {"max-drop": "1"}, UsageError, "max-drop must be a number"),
    (GateRules, {"max-dorp": 1}, UsageError, "unknown gate rules max_dorp"),
])
def test_mistakes_are_one_line_errors_naming_the_key(make, mapping, error, match):
    with pytest.raises(error, match=match):
        make.from_mapping(mapping, "r.toml")


def test_command_line_messages_name_the_options():
    with pytest.raises(UsageError, match="^pass --iters or --seconds, not both$"):
        BenchSettings.from_mapping({"iters": 3, "seconds": 1.0})
    with pytest.raises(UsageError, match="apply with --prune RATIO"):
        PruneSettings.from_mapping({"ratio": None, "keep": ("fc",)}, required=False)
    with pytest.raises(UsageError, match="^--max-drop needs --int8 and --eval DATA"):
        ExportPlan.from_mapping({"model": "lenet5", "max_drop": 1.0})
