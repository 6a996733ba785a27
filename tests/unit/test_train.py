"""Training on the CPU: tiny models learn in seconds, checkpoints rebuild their model, metrics are
right on hand-checked cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edgekit.data import reber
from edgekit.data.datasets import LabelledSet, load_dataset
from edgekit.errors import DataError, UsageError, WeightsError
from edgekit.measure.metrics import accuracy, metrics
from edgekit.models import load_model
from edgekit.models.checkpoint import load_checkpoint, save_checkpoint
from edgekit.models.googlenet import GoogLeNet
from edgekit.models.spec import ModelOptions
from edgekit.models.weights import load_weights_file
from edgekit.train import TrainConfig, default_config, train

TINY = ModelOptions(num_classes=10, width=0.0625, input_size=32)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models train fastest on one thread; two spin-wait badly when the CPUs are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded(name: str, options: ModelOptions | None = None, seed: int = 0):
    torch.manual_seed(seed)  # the initial weights
    return load_model(name, options or ModelOptions())


@pytest.fixture(scope="module")
def lenet_trained():
    model = seeded("lenet5")
    train_set = load_dataset("digits", model, "train")
    val_set = load_dataset("digits", model, "val")
    result = train(model, train_set, val_set, TrainConfig(epochs=2, batch_size=32, lr=3e-3))
    return model, train_set, val_set, result


def test_lenet_learns_digits_in_two_epochs(lenet_trained):
    model, _, _, result = lenet_trained
    test = accuracy(model.module, load_dataset("digits", model, "test"))
    assert test["top1"] > 0.8  # chance is 0.1
    assert result.epochs_run == 2 and len(result.history) == 2
    assert set(result.history[0]) >= {"epoch", "loss", "train_acc", "val_acc", "seconds"}
    assert result.history[1]["loss"] < result.history[0]["loss"]
    assert not model.module.training


def test_kept_weights_are_the_best_epochs(lenet_trained):
    model, _, val_set, result = lenet_trained
    assert result.best_val_acc == max(row["val_acc"] for row in result.history)
    assert accuracy(model.module, val_set)["top1"] == pytest.approx(result.best_val_acc)


def test_lstm_learns_reber_to_the_papers_criterion():
    model = seeded("lstm")
    train_set = load_dataset("reber", model, "train")
    val_set = load_dataset("reber", model, "val")
    train(model, train_set, val_set, TrainConfig(epochs=8, batch_size=32, lr=1e-2))
    got = accuracy(model.module, load_dataset("reber", model, "test"))
    assert got["strings"] >= 0.99  # every predicted next symbol allowed by the grammar
    assert got["deterministic_top1"] >= 0.99
    assert 0.6 < got["step_top1"] < 0.8  # many steps have two equally likely successors


def test_batchnorm_model_trains_and_progress_reports_every_batch():
    model = seeded("resnet50", TINY)
    data = load_dataset("digits", model, "train", n=96)
    events: list[dict] = []
    config = TrainConfig(epochs=2, batch_size=32, zero_init_residual=True)
    result = train(model, data, data, config, progress=events.append)
    batches = [e for e in events if e["event"] == "batch"]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(batches) == 6 and batches[-1]["batches"] == 3
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert result.best_val_acc is not None and not model.module.training


def test_googlenet_aux_heads_are_trained_too():
    model = seeded("googlenet", TINY)
    model.module = GoogLeNet(10, TINY.width, aux_logits=True)  # training mode returns a tuple
    data = load_dataset("digits", model, "train", n=64)
    before = model.module.aux1.fc2.weight.detach().clone()
    result = train(model, data, None, TrainConfig(epochs=1, batch_size=32))
    assert np.isfinite(result.history[0]["loss"]) and result.best_val_acc is None
    assert not torch.equal(before, model.module.aux1.fc2.weight)


def test_time_limit_stops_early_annealed_with_the_best_epoch():
    model = seeded("lenet5")
    data = load_dataset("digits", model, "train", n=256)
    config = TrainConfig(epochs=10_000, batch_size=32, max_minutes=0.02)
    result = train(model, data, data, config)
    assert result.stopped_early and 1 <= result.epochs_run < 10_000
    assert result.seconds < 10
    assert result.history[-1]["lr"] < 1e-3 * config.lr  # the cosine decay followed the clock
    assert accuracy(model.module, data)["top1"] == pytest.approx(result.best_val_acc)


def test_checkpoint_rebuilds_its_model(tmp_path, lenet_trained):
    model, train_set, _, result = lenet_trained
    path = tmp_path / "out" / "lenet5.pt"
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
    record = save_checkpoint(path, model, train_set, result, config, metrics={"test": {"top1": 0.9}})
    assert [p.name for p in path.parent.iterdir()] == ["lenet5.pt"]  # no temporary file left

    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert raw["edgekit"] == record
    assert record["model"] == "lenet5" and record["dataset"] == "digits"
    assert record["options"] == {"num_classes": 10, "width": 1.0, "input_size": 32}
    assert record["classes"] == [str(d) for d in range(10)]
    assert record["metrics"]["test"] == {"top1": 0.9}
    assert record["train_config"]["epochs"] == 2 and "torch" in record["versions"]

    _, info = load_weights_file(path)
    rebuilt = load_model(info["edgekit"]["model"], ModelOptions(**info["edgekit"]["options"]), path)
    again = load_checkpoint(path)
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        want = model.module(x)
        assert torch.equal(rebuilt.module(x), want)
        assert torch.equal(again.module(x), want)
    assert again.preprocessing == model.preprocessing


def test_checkpoint_keeps_options_batchnorm_state_and_preprocessing(tmp_path):
    options = ModelOptions(num_classes=10, width=0.0625, input_size=40)
    model = seeded("resnet50", options)
    data = load_dataset("digits", model, "train", n=64)
    result = train(model, data, None, TrainConfig(epochs=1, batch_size=32))
    pre = dataclasses.replace(model.preprocessing, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    save_checkpoint(tmp_path / "r.pt", model, data, result, TrainConfig(epochs=1), preprocessing=pre)

    again = load_checkpoint(tmp_path / "r.pt")
    assert again.options == {"num_classes": 10, "width": 0.0625, "input_size": 40}
    assert again.preprocessing == pre
    # calibrated by default on the data it was trained on, not resnet50's generic photos
    assert again.builtin_calibration == "digits" and model.builtin_calibration == "photos"
    x = torch.rand(3, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(again.module(x), model.module(x))


def test_a_plain_state_dict_is_not_a_checkpoint(tmp_path):
    torch.save(seeded("lenet5").module.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(WeightsError, match="not written by edgekit train"):
        load_checkpoint(tmp_path / "sd.pt")


def test_accuracy_matches_numpy(lenet_trained):
    model, _, val_set, _ = lenet_trained
    with torch.no_grad():
        logits = model.module(torch.from_numpy(val_set.x)).numpy()
    order = np.argsort(-logits, axis=1)
    want_top1 = np.mean(order[:, 0] == val_set.y)
    want_top5 = np.mean([y in row[:5] for y, row in zip(val_set.y, order)])
    got = accuracy(model.module, val_set, batch_size=7)  # batches of uneven size
    assert got == {"n": len(val_set.y), "top1": pytest.approx(want_top1), "top5": pytest.approx(want_top5)}


def test_no_top5_with_five_classes_or_fewer():
    data = LabelledSet(np.zeros((3, 2), np.float32), np.array([0, 1, 4]), "t", "test", list("abcde"), "")
    logits = np.eye(5, dtype=np.float32)[[0, 2, 4]]
    assert metrics(logits, data) == {"n": 3, "top1": pytest.approx(2 / 3)}


def reber_set(strings: list[str], seq_len: int = 16) -> LabelledSet:
    b = reber.encode(strings, seq_len)
    extra = {"valid": b.valid, "deterministic": b.deterministic, "lengths": b.lengths}
    return LabelledSet(b.x, b.y, "reber", "test", list(reber.SYMBOLS), "", extra)


def test_reber_string_metric_on_a_hand_made_case():
    strings = ["BTBTXSETE", "BPBPVVEPE"]  # both valid embedded Reber strings
    data = reber_set(strings)
    index = {s: i for i, s in enumerate(reber.SYMBOLS)}
    # Predict the actual next symbol everywhere: all steps right, both strings correct.
    logits = np.zeros((2, 16, 7), np.float32)
    for row, s in enumerate(strings):
        for t in range(len(s) - 1):
            logits[row, t, index[s[t + 1]]] = 1.0
    assert metrics(logits, data) == {"n": 2, "step_top1": 1.0, "deterministic_top1": 1.0, "strings": 1.0}

    # String 0, step 0 (after B): predict P instead of T. Both are allowed, so the string still
    # counts as correct, but per-step top-1 drops by one step of 16 scored.
    logits[0, 0] = 0.0
    logits[0, 0, index["P"]] = 1.0
    got = metrics(logits, data)
    assert got["strings"] == 1.0 and got["step_top1"] == pytest.approx(15 / 16)
    # String 1, step 6 (after the inner E, the embedded P must follow): predict T. Not allowed:
    # that string fails, and that step is deterministic (one of 6 deterministic steps).
    logits[1, 6] = 0.0
    logits[1, 6, index["T"]] = 1.0
    got = metrics(logits, data)
    assert got["strings"] == 0.5
    assert got["step_top1"] == pytest.approx(14 / 16)
    assert got["deterministic_top1"] == pytest.approx(1 - 1 / data.extra["deterministic"].sum())
    # Padding steps and the step after the final E never count, whatever is predicted there.
    logits[:, 8:] = np.eye(7, dtype=np.float32)[index["X"]]
    assert metrics(logits, data) == got


def test_mistakes_are_one_line_errors():
    model = seeded("lenet5")
    data = load_dataset("digits", model, "train", n=32)
    with pytest.raises(UsageError, match="unknown optimizer"):
        train(model, data, None, TrainConfig(optimizer="adam"))
    with pytest.raises(UsageError, match="bottleneck"):
        train(model, data, None, TrainConfig(zero_init_residual=True))
    wrong = dataclasses.replace(data, y=data.y + 5)
    with pytest.raises(DataError, match="--num-classes 15"):
        train(model, wrong, None, TrainConfig(epochs=1))
    small = dataclasses.replace(data, x=data.x[:, :, :16, :16])
    with pytest.raises(DataError, match="shape"):
        train(model, small, None, TrainConfig(epochs=1))


def test_defaults_table_and_overrides():
    config = default_config("lenet5", "digits", epochs=3, lr=None)
    assert config.epochs == 3
    assert config.lr == default_config("lenet5", "digits").lr
    assert default_config("vgg16", "my-folder") == TrainConfig()


def test_rich_progress_prints_a_line_per_epoch():
    import io

    from rich.console import Console

    from edgekit.train import rich_progress

    model = seeded("lenet5")
    data = load_dataset("digits", model, "train", n=64)
    out = io.StringIO()
    with rich_progress(2, console=Console(file=out, width=100)) as progress:
        train(model, data, data, TrainConfig(epochs=2, batch_size=32), progress=progress)
    text = out.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "val " in text


def test_augmentation_is_label_safe_per_dataset(monkeypatch):
    from edgekit.train.augment import AUGMENT, _augmenter

    gen = torch.Generator().manual_seed(0)
    lenet = seeded("lenet5")
    digits = load_dataset("digits", lenet, "train", n=64)
    x = torch.from_numpy(digits.x)
    out = _augmenter(digits, lenet)(x, gen)
    assert out.shape == x.shape and not torch.equal(out, x)
    mirrored = (out - x.flip(3)).abs().mean(dim=(1, 2, 3))
    moved = (out - x).abs().mean(dim=(1, 2, 3))
    assert (moved < mirrored).float().mean() > 0.9  # digits: small warps, never mirrored

    # Without a warp, the dihedral setting gives exactly one of the 8 flips and quarter turns.
    monkeypatch.setitem(AUGMENT, "shapes", {"shift": 0.0, "dihedral": True})
    model = seeded("googlenet", ModelOptions(num_classes=8, width=0.0625, input_size=32))
    shapes = load_dataset("shapes", model, "train", n=16)
    x = torch.from_numpy(shapes.x)
    out = _augmenter(shapes, model)(x, gen)
    variants = [v for t in (x, x.transpose(2, 3)) for v in (t, t.flip(2), t.flip(3), t.flip(2).flip(3))]
    assert all(any(torch.equal(out[i], v[i]) for v in variants) for i in range(len(x)))
    assert not torch.equal(out, x)
