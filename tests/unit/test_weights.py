"""Weights files: the formats users save, and one clear error when a file cannot be used."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from edgekit.errors import WeightsError
from edgekit.models import load_model
from edgekit.models.lenet5 import LeNet5
from edgekit.models.weights import apply_weights, load_weights_file


@pytest.fixture
def trained():
    torch.manual_seed(1)
    return LeNet5().eval()


def same_outputs(a: nn.Module, b: nn.Module) -> bool:
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def load_into_fresh(path) -> tuple[LeNet5, dict]:
    state, info = load_weights_file(path)
    model = LeNet5()
    apply_weights(model, state, str(path))
    return model, info


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3, "optimizer": {"lr": 0.1}},
        lambda sd: {"model_state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd},
        lambda sd: {"net": sd},
        lambda sd: {"weights": sd},
        lambda sd: {"ema": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=[
        "plain",
        "state_dict",
        "model_state_dict",
        "model",
        "net",
        "weights",
        "ema",
        "module.",
        "ckpt+module.",
    ],
)
def test_pickled_state_dicts_round_trip(trained, tmp_path, wrap):
    path = tmp_path / "w.pt"
    torch.save(wrap(trained.state_dict()), path)
    model, info = load_into_fresh(path)
    assert same_outputs(model, trained)
    assert info == {
        "path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "format": "pickle",
    }


@pytest.mark.parametrize("name", ["w.safetensors", "w.bin"])
def test_safetensors_round_trip_by_suffix_or_content(trained, tmp_path, name):
    path = tmp_path / name
    save_file(trained.state_dict(), str(path), metadata={"edgekit": json.dumps({"model": "lenet5"})})
    model, info = load_into_fresh(path)
    assert same_outputs(model, trained)
    assert info["format"] == "safetensors"
    assert info["edgekit"] == {"model": "lenet5"}


def test_edgekit_checkpoint_record_is_passed_through(trained, tmp_path):
    record = {"model": "lenet5", "options": {"num_classes": 10, "width": 1.0, "input_size": 32}}
    path = tmp_path / "ckpt.pt"
    torch.save({"edgekit": record, "state_dict": trained.state_dict()}, path)
    state, info = load_weights_file(path)
    assert info["edgekit"] == record
    assert set(state) == set(trained.state_dict())


def test_load_model_with_weights(trained, tmp_path):
    path = tmp_path / "lenet5.pt"
    torch.save(trained.state_dict(), path)
    model = load_model("lenet5", weights=path)
    assert same_outputs(model.module, trained)
    assert model.weights["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pickled_module_is_refused_not_executed(trained, tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(trained, path)
    with pytest.raises(WeightsError) as err:
        load_weights_file(path)
    message = str(err.value)
    assert message.startswith(f"{path} needs arbitrary code to load (a pickled object")
    assert "LeNet5" in message and "save model.state_dict() instead, or use .safetensors" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        (b"\x00\x01garbage" * 10, "cannot read weights file"),
        (b"hello, I am a text file\n", "cannot read weights file"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{broken json", "cannot read .* as safetensors"),
    ],
    ids=["missing", "binary", "text", "corrupt-safetensors"],
)
def test_unreadable_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "w.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=message) as err:
        load_weights_file(path)
    assert "\n" not in str(err.value)


def test_a_checkpoint_without_a_state_dict_names_its_keys(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(WeightsError, match="no state dict found .*: its top-level keys are epoch, optimizer"):
        load_weights_file(path)


def test_mismatches_are_listed_in_one_error(trained):
    state = LeNet5(num_classes=5).state_dict()
    del state["features.0.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as err:
        apply_weights(LeNet5(), state, "w.pt")
    message = str(err.value)
    assert "weights in w.pt do not fit the model" in message
    assert "1 missing keys: features.0.bias" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "2 shape mismatches: classifier.3.weight (5, 84) in the file vs (10, 84) in the model" in message
    assert "--num-classes" in message and "\n" not in message


def test_long_lists_are_truncated():
    state = {f"layer{i}.weight": torch.zeros(1) for i in range(12)}
    with pytest.raises(WeightsError, match=r"12 unexpected keys: layer0.weight, .*, and 7 more") as err:
        apply_weights(LeNet5(), state, "w.pt")
    assert "10 missing keys" in str(err.value)


def test_checkpoints_without_batchnorm_counters_load():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    state = {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    apply_weights(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), state, "old.pt")
