"""What a model's output means: guessed from its shape (edgekit.models.describe), overridden by
--task (apply_task), and refused where the output cannot mean it."""

from __future__ import annotations

import pytest
import torch.nn as nn

from edgekit.errors import UsageError
from edgekit.models.describe import apply_task, describe_user_model
from tests.models import BinaryGRU, TinyRegressor


class Squeezed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        return self.fc(x).squeeze()  # a scalar at batch 1


def _loaded(module, shape):
    from edgekit.models.spec import LoadedModel

    about = describe_user_model(module, shape, "net.py:Net")
    return LoadedModel(name="net.py:Net", module=module, task=about.task, input_spec=about.inputs[0],
                       preprocessing=about.preprocessing, num_classes=about.num_classes, options={},
                       params=0, macs=None, weights=None, builtin_calibration=None)


def test_one_value_per_sample_is_a_binary_logit_and_task_overrides_the_guess():
    gru = _loaded(BinaryGRU(), (1, 5, 6))  # (batch,)
    assert gru.task == "binary" and gru.num_classes == 1
    reg = _loaded(TinyRegressor(), (1, 6))  # (batch, 1)
    assert reg.task == "binary"
    assert apply_task(reg, "regress").task == "regression"
    assert _loaded(nn.Linear(6, 3), (1, 6)).task == "classification"
    assert apply_task(_loaded(nn.Linear(6, 3), (1, 6)), None).task == "classification"


def test_a_task_the_output_cannot_mean_is_one_line():
    with pytest.raises(UsageError, match="--task classify: .* gives 1 value per sample.*--task binary"):
        apply_task(_loaded(TinyRegressor(), (1, 6)), "classify")
    with pytest.raises(UsageError, match="--task binary: .* gives 3 values per sample.*classify or regress"):
        apply_task(_loaded(nn.Linear(6, 3), (1, 6)), "binary")


def test_a_bare_squeeze_that_drops_the_batch_says_how_to_fix_it():
    with pytest.raises(UsageError, match=r"scalar at batch 1.*\.squeeze\(-1\)"):
        describe_user_model(Squeezed(), (1, 4), "net.py:Net")


def test_task_is_read_from_options_and_recipes_and_checked():
    from edgekit.export.plan import ExportPlan

    plan = ExportPlan.from_mapping({"model": "lenet5", "task": "binary"})
    assert plan.task == "binary" and plan.settings()["task"] == "binary"  # recorded in the manifest
    assert ExportPlan.from_mapping({"model": "lenet5"}).task is None  # guessed
    with pytest.raises(UsageError, match=r"recipe.toml: task 'binar': use one of classify, binary, regress"):
        ExportPlan.from_mapping({"model": "lenet5", "task": "binar"}, "recipe.toml")
