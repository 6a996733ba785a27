"""Labelled datasets: built-in splits, the generated shapes, IDX, npz and class folders, errors."""

from __future__ import annotations

import gzip
import re
import shutil
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.data import builtin, idx, reber, shapes
from edgekit.data.datasets import DATASETS, load_dataset
from edgekit.data.preprocess import override_preprocessing
from edgekit.errors import DataError, UnknownNameError, UsageError
from edgekit.models.spec import InputSpec, LoadedModel, Preprocessing


def make_model(shape, pre, num_classes=10, task="classification", layout="NCHW") -> LoadedModel:
    return LoadedModel(
        name="m",
        module=torch.nn.Identity(),
        task=task,
        input_spec=InputSpec(tuple(shape), layout=layout),
        preprocessing=pre,
        num_classes=num_classes,
        options={},
        params=0,
        macs=None,
        weights=None,
        builtin_calibration=None,
    )


RGB_PRE = Preprocessing(size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
RGB32 = make_model((1, 3, 32, 32), RGB_PRE)
GREY28 = make_model((1, 1, 28, 28), Preprocessing(kind="none"))
LSTM = make_model((1, 24, 7), Preprocessing(kind="sequence"), 7, "sequence", "NTC")


def rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in x}


# ---------------------------------------------------------------- built-ins


def test_builtin_names():
    assert DATASETS == ("digits", "shapes", "reber")


def test_digit_splits_are_disjoint_fixed_and_seed_only_picks_subsets():
    sets = {s: load_dataset("digits", RGB32, s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in sets.values()) == 1797 == len(load_dataset("digits", RGB32, "all"))
    assert not rows(sets["train"].x) & rows(sets["test"].x)
    assert not rows(sets["val"].x) & rows(sets["test"].x)
    test = sets["test"]
    assert test.x.shape[1:] == (3, 32, 32) and test.y.dtype == np.int64 and test.classes[3] == "3"
    assert test.sha256 == load_dataset("digits", RGB32, "test", seed=5).sha256  # seed: subsets only
    a, b, c = (load_dataset("digits", RGB32, "test", n=40, seed=s) for s in (1, 1, 2))
    assert len(a) == 40 and a.sha256 == b.sha256 != c.sha256
    assert rows(a.x) <= rows(test.x)
    assert test.to_dict() == {
        "name": "digits",
        "split": "test",
        "samples": len(test),
        "classes": 10,
        "sha256": test.sha256,
    }


def test_shape_splits_are_balanced_disjoint_and_deterministic():
    recipe = shapes.load_shapes_recipe()
    assert 6 <= len(recipe.classes) <= 10
    for split in ("train", "val", "test"):
        counts = np.bincount(shapes.split_labels(recipe, split), minlength=len(recipe.classes))
        assert counts.sum() == getattr(recipe, split) and counts.max() - counts.min() <= 1
    hard = shapes.split_hard(recipe, "train")
    assert abs(hard.mean() - recipe.hard) < 0.02  # the tiny faint ones, about the recipe's share
    train = load_dataset("shapes", RGB32, "train", n=300, seed=0)
    assert train.extra["hard"].dtype == bool and len(train.extra["hard"]) == 300
    test = load_dataset("shapes", RGB32, "test", n=300, seed=0)
    assert train.x.shape == (300, 3, 32, 32) and test.classes == list(recipe.classes)
    assert not rows(train.x) & rows(test.x)
    assert len(rows(test.x)) == 300  # every image differs
    again = load_dataset("shapes", RGB32, "test", n=300, seed=0)
    assert again.sha256 == test.sha256 and np.array_equal(again.x, test.x)
    # an n-subset is a subset of the full split, chosen by the seed
    small = load_dataset("shapes", RGB32, "test", n=20, seed=3)
    assert rows(small.x) <= rows(load_dataset("shapes", RGB32, "test").x)


def _plain_recipe(tmp_path, monkeypatch, **changes):
    """A shapes recipe without texture, noise or clutter, so that the shape can be found."""
    text = (builtin.calibration_dir() / "shapes.toml").read_text()
    for key, value in {
        "texture": "[0.0, 0.0]",
        "noise": "[0.0, 0.0]",
        "clutter": "[0, 0]",
        "occluders": "[0, 0]",
        "contrast": "[0.8, 0.8]",
        "hard": "0.0",
        **changes,
    }.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    (tmp_path / "shapes.toml").write_text(text)
    monkeypatch.setenv("EDGEKIT_CALIBRATION_DIR", str(tmp_path))


def _shape_masks(images: np.ndarray) -> np.ndarray:
    """Pixels far from the background, a linear gradient fitted to the pixels that fit it."""
    n, h, w, _ = images.shape
    yy, xx = np.mgrid[0:h, 0:w]
    basis = np.stack([np.ones(h * w), xx.ravel(), yy.ravel()], 1)
    masks = []
    for img in images.astype(np.float64):
        flat = img.reshape(-1, 3)
        keep = np.ones(h * w, bool)
        for _ in range(4):  # refit on the pixels the gradient explains
            coef = np.linalg.lstsq(basis[keep], flat[keep], rcond=None)[0]
            resid = np.abs(flat - basis @ coef).max(1)
            keep = resid < max(np.quantile(resid, 0.5), 8)
        masks.append(resid.reshape(h, w) > 40)
    return np.stack(masks)


def test_shapes_vary_in_colour_position_and_size(tmp_path, monkeypatch):
    _plain_recipe(tmp_path, monkeypatch)
    recipe = shapes.load_shapes_recipe()
    images = shapes.render(recipe, "test", np.arange(64), 48)
    assert images.shape == (64, 48, 48, 3) and images.dtype == np.uint8
    masks = _shape_masks(images)
    area = masks.mean(axis=(1, 2))
    assert (area > 0.005).all()  # a shape is visible in every image
    yy, xx = np.mgrid[0:48, 0:48]
    cx = (masks * xx).sum((1, 2)) / masks.sum((1, 2))
    cy = (masks * yy).sum((1, 2)) / masks.sum((1, 2))
    assert cx.std() > 3 and cy.std() > 3 and np.ptp(cx) > 12 and np.ptp(cy) > 12  # positions spread
    assert area.max() > 4 * area.min()  # sizes spread
    colours = np.array([img[m].mean(0) for img, m in zip(images, masks)])
    assert colours.std(0).min() > 30  # shape colours vary on every channel
    backgrounds = np.array([img[~m].mean(0) for img, m in zip(images, masks)])
    assert backgrounds.std(0).min() > 30


def test_shapes_render_the_same_scene_at_any_size():
    recipe = shapes.load_shapes_recipe()
    small = shapes.render(recipe, "val", np.arange(8), 32).astype(np.float32)
    big = shapes.render(recipe, "val", np.arange(8), 64).astype(np.float32)
    pooled = big.reshape(8, 32, 2, 32, 2, 3).mean((2, 4))
    # noise and clutter positions are drawn per image, so compare coarse structure only
    blur = lambda a: a.reshape(len(a), 8, 4, 8, 4, 3).mean((2, 4))  # noqa: E731
    assert np.abs(blur(small) - blur(pooled)).mean() < 12
    assert np.abs(blur(small[1:]) - blur(pooled[:-1])).mean() > 30  # different images differ more


def test_shapes_grey_matches_pillow_and_files_load_identically(tmp_path):
    recipe = shapes.load_shapes_recipe()
    images = shapes.render(recipe, "test", np.arange(6), 28)
    for img in images:
        assert np.array_equal(shapes.to_grey(img), np.asarray(Image.fromarray(img).convert("L")))
    labels = shapes.split_labels(recipe, "test")[:6]
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "test" / recipe.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    from_files = load_dataset(str(tmp_path), GREY28, "all")  # test/ alone is a single set
    pre = Preprocessing(size=(28, 28), grayscale=True)
    x, y, classes, _ = shapes.shapes_arrays(pre, "test", np.arange(6))
    order = np.argsort([r.tobytes() for r in from_files.x])
    ref = np.argsort([r.tobytes() for r in x])
    assert np.array_equal(from_files.x[order], x[ref])
    assert [from_files.classes[k] for k in from_files.y[order]] == [classes[k] for k in y[ref]]


def test_shapes_generate_fast():
    import time

    recipe = shapes.load_shapes_recipe()
    start = time.perf_counter()
    shapes.render(recipe, "train", np.arange(250), 64)
    assert time.perf_counter() - start < 5  # about 1 s per 1000 images at 64x64 on one core


def test_reber_splits_are_seeded_apart_with_masks():
    sets = {s: load_dataset("reber", LSTM, s) for s in ("train", "val", "test")}
    recipe = builtin.load_recipe("reber", builtin.ReberRecipe)
    assert [len(sets[s]) for s in ("train", "val", "test")] == [recipe.train, recipe.val, recipe.test]
    test = sets["test"]
    assert test.x.shape == (recipe.test, 24, 7) and test.y.shape == (recipe.test, 24)
    assert test.classes == list(reber.SYMBOLS)
    assert test.sha256 == load_dataset("reber", LSTM, "test").sha256
    assert len({d.sha256 for d in sets.values()}) == 3
    strings = {s: reber.decode(d.x) for s, d in sets.items()}
    assert strings["train"][:50] != strings["test"][:50]
    batch = reber.encode(strings["test"], 24)
    assert np.array_equal(batch.y, test.y)
    assert np.array_equal(test.extra["deterministic"], batch.deterministic)
    assert np.array_equal(test.extra["valid"], batch.valid)
    assert (test.extra["lengths"] == [len(s) for s in strings["test"]]).all()
    assert ((test.y == reber.IGNORE_INDEX) == (np.arange(24) >= test.extra["lengths"][:, None] - 1)).all()


# ---------------------------------------------------------------- IDX


def _mnist_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def test_idx_header_is_parsed_from_hand_written_bytes(tmp_path):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = struct.pack(">BBBB3I", 0, 0, 0x08, 3, 2, 3, 4) + pixels.tobytes()
    (tmp_path / "a-images-idx3-ubyte").write_bytes(raw)
    (tmp_path / "a-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    for name in ("a-images-idx3-ubyte", "a-images-idx3-ubyte.gz"):
        assert np.array_equal(idx.read_idx(tmp_path / name), pixels)
    ints = np.array([1, -2, 70000], np.int32)
    (tmp_path / "i.idx").write_bytes(struct.pack(">BBBBI", 0, 0, 0x0C, 1, 3) + ints.astype(">i4").tobytes())
    assert idx.read_idx(tmp_path / "i.idx").tolist() == [1, -2, 70000]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_and_splits(tmp_path, suffix):
    for prefix, seed, n in (("train", 0, 60), ("t10k", 1, 20)):
        x, y = _mnist_like(n, seed)
        idx.write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", x)
        idx.write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", y)
        assert np.array_equal(idx.read_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}"), x)
    x_test, y_test = _mnist_like(20, 1)

    test = load_dataset(str(tmp_path), GREY28, "test")
    assert test.name == f"idx:{tmp_path.resolve()}" and test.x.shape == (20, 1, 28, 28)
    assert np.allclose(test.x[:, 0], x_test / 255.0) and np.array_equal(test.y, y_test)
    train, val = (load_dataset(str(tmp_path), GREY28, s) for s in ("train", "val"))
    assert (len(train), len(val)) == (50, 10)  # val: 10% of train, one per class
    assert not rows(train.x) & rows(val.x) and sorted(val.y.tolist()) == list(range(10))
    with pytest.raises(UsageError, match=r"has its own parts \(test 20, train 60 samples\), so split 'all' "
                       r"would score its training samples too; pass --split test"):
        load_dataset(str(tmp_path), GREY28, "all")  # train- and t10k- files: not a held-out set
    prefix = load_dataset(str(tmp_path / "t10k"), GREY28, "all")  # a path prefix
    assert prefix.sha256 == test.sha256
    one_file = load_dataset(str(tmp_path / f"t10k-labels-idx1-ubyte{suffix}"), GREY28, "all")
    assert one_file.sha256 == test.sha256
    # One part alone (MNIST's t10k files) is a single set, split 80/10/10 like any other, so that
    # calibration (train) and the --max-drop search (val) never see what eval scores (test).
    # (2 digits per class here: classes with fewer than 3 stay in train)
    assert len(load_dataset(str(tmp_path / "t10k"), GREY28, "train")) == 20
    with pytest.raises(DataError, match="test split of .* is empty"):
        load_dataset(str(tmp_path / "t10k"), GREY28, "test")


def test_idx_single_unnamed_pair_is_split_80_10_10(tmp_path):
    x, y = _mnist_like(100, 3)
    idx.write_idx(tmp_path / "letters-images.idx3-ubyte", x)  # the dotted spelling
    idx.write_idx(tmp_path / "letters-labels.idx1-ubyte", y)
    parts = {s: load_dataset(str(tmp_path), GREY28, s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [80, 10, 10]
    assert not rows(parts["train"].x) & rows(parts["test"].x)
    assert sorted(parts["test"].y.tolist()) == list(range(10))  # stratified


def test_idx_errors(tmp_path):
    x, y = _mnist_like(10, 0)
    idx.write_idx(tmp_path / "train-images-idx3-ubyte", x)
    with pytest.raises(DataError, match="lack a partner"):
        load_dataset(str(tmp_path), GREY28)
    idx.write_idx(tmp_path / "train-labels-idx1-ubyte", y[:7])
    with pytest.raises(DataError, match="10 images but .* 7 labels"):
        load_dataset(str(tmp_path), GREY28, "train")
    idx.write_idx(tmp_path / "train-labels-idx1-ubyte", y + 5)
    with pytest.raises(DataError, match=r"run 5\.\.14 .* 10 outputs; build it with --num-classes 15"):
        load_dataset(str(tmp_path), GREY28, "train")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x0a\x01")
    with pytest.raises(DataError, match="truncated"):
        load_dataset(str(tmp_path), GREY28, "train")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset(str(tmp_path), GREY28, "train")


# ---------------------------------------------------------------- npz


def test_npz_x_y_split_and_preprocessed(tmp_path):
    pixels = np.zeros((50, 20, 20, 3), np.uint8)
    labels = np.arange(50) % 5
    pixels[..., 0] = (labels * 50)[:, None, None]
    np.savez(tmp_path / "d.npz", x=pixels, y=labels)
    parts = {s: load_dataset(str(tmp_path / "d.npz"), RGB32, s) for s in ("train", "val", "test", "all")}
    assert [len(parts[s]) for s in ("train", "val", "test", "all")] == [40, 5, 5, 50]
    assert sorted(parts["test"].y.tolist()) == [0, 1, 2, 3, 4]
    for d in parts.values():  # the red channel encodes the label
        assert np.allclose(d.x[:, 0].mean((1, 2)), (d.y * 50 / 255 - 0.5) / 0.25, atol=1e-5)
    assert parts["all"].name == f"npz:{(tmp_path / 'd.npz').resolve()}"
    assert parts["test"].sha256 == load_dataset(str(tmp_path / "d.npz"), RGB32, "test").sha256


def test_npz_keras_style_splits_and_sequences(tmp_path):
    x, y = _mnist_like(40, 0)
    np.savez(tmp_path / "mnist.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    test = load_dataset(str(tmp_path / "mnist.npz"), GREY28, "test")
    assert np.allclose(test.x[:, 0], x[30:] / 255.0) and np.array_equal(test.y, y[30:])
    assert len(load_dataset(str(tmp_path / "mnist.npz"), GREY28, "val")) == 10  # one per class of train
    assert len(load_dataset(str(tmp_path / "mnist.npz"), GREY28, "train")) == 20
    np.savez(tmp_path / "tiny.npz", x_train=x[:10], y_train=y[:10], x_test=x[30:], y_test=y[30:])
    with pytest.raises(DataError, match="val split of tiny.npz is empty"):
        load_dataset(str(tmp_path / "tiny.npz"), GREY28, "val")

    seq = reber.encode(reber.generate_strings(40, 0, 24), 24)
    np.savez(tmp_path / "seq.npz", x=seq.x, y=seq.y, classes=np.array(list(reber.SYMBOLS)))
    got = load_dataset(str(tmp_path / "seq.npz"), LSTM, "all")
    assert np.array_equal(got.x, seq.x) and np.array_equal(got.y, seq.y)
    assert got.classes == list(reber.SYMBOLS)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "short.npz", x=np.zeros((5, 28, 28), np.uint8), y=np.zeros(4, np.int64))
    np.savez(tmp_path / "nolabels.npz", inputs=np.zeros((5, 28, 28), np.uint8))
    np.save(tmp_path / "x.npy", np.zeros((5, 28, 28), np.uint8))
    np.savez(tmp_path / "float.npz", x=np.zeros((5, 28, 28), np.uint8), y=np.full(5, 0.5))
    np.savez(tmp_path / "range.npz", x=np.zeros((5, 28, 28), np.uint8), y=np.array([0, 1, 2, 3, 10]))
    for name, match in [
        ("short.npz", "5 samples but 4 labels"),
        ("nolabels.npz", "needs x and y"),
        ("x.npy", "holds no labels"),
        ("float.npz", "integer class indices"),
        ("range.npz", "run 0..10 .* --num-classes 11"),
    ]:
        with pytest.raises(DataError, match=match):
            load_dataset(str(tmp_path / name), GREY28, "all")


# ---------------------------------------------------------------- image folders


def solid(path, colour, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_class_folder_is_split_by_file_and_labelled(tmp_path):
    colours = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}
    for name, colour in colours.items():
        for i in range(10):
            solid(tmp_path / name / f"{i}.png", colour)
    parts = {s: load_dataset(str(tmp_path), RGB32, s) for s in ("train", "val", "test", "all")}
    assert [len(parts[s]) for s in ("train", "val", "test", "all")] == [24, 3, 3, 30]
    for d in parts.values():
        assert d.classes == ["blue", "green", "red"] and d.name == f"folder:{tmp_path.resolve()}"
        strongest = d.x.mean((2, 3)).argmax(1)  # channel: 2 blue, 1 green, 0 red
        assert np.array_equal(strongest, 2 - d.y)
    again = load_dataset(str(tmp_path), RGB32, "test", seed=9)
    assert again.sha256 == parts["test"].sha256  # the seed does not move files between splits


def test_presplit_folder_uses_its_parts(tmp_path):
    for i in range(4):
        solid(tmp_path / "train" / "cat" / f"{i}.png", (200, 0, 0))
        solid(tmp_path / "train" / "dog" / f"{i}.png", (0, 0, 200))
    solid(tmp_path / "test" / "dog" / "a.png", (0, 0, 200))
    solid(tmp_path / "test" / "emu" / "a.png", (0, 200, 0))  # a class only the test part has
    test = load_dataset(str(tmp_path), RGB32, "test")
    assert test.classes == ["cat", "dog", "emu"] and sorted(test.y.tolist()) == [1, 2]
    train, val = load_dataset(str(tmp_path), RGB32, "train"), load_dataset(str(tmp_path), RGB32, "val")
    assert (len(train), len(val)) == (6, 2) and sorted(val.y.tolist()) == [0, 1]
    with pytest.raises(UsageError, match=r"has its own parts \(test 2, train 8 samples\), so split 'all' "
                       r"would score its training samples too; pass --split test to score its test part"):
        load_dataset(str(tmp_path), RGB32, "all")  # the training images would be scored too


def test_folder_errors(tmp_path):
    solid(tmp_path / "flat" / "a.png", (1, 2, 3))
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_dataset(str(tmp_path / "flat"), RGB32)
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="no usable images"):
        load_dataset(str(tmp_path / "junk"), RGB32, "all")
    solid(tmp_path / "onlytrain" / "train" / "a" / "0.png", (1, 2, 3))
    with pytest.raises(DataError, match="test split of .* is empty"):  # one part: a single set
        load_dataset(str(tmp_path / "onlytrain"), RGB32, "test")
    solid(tmp_path / "twoparts" / "train" / "a" / "0.png", (1, 2, 3))
    solid(tmp_path / "twoparts" / "val" / "a" / "0.png", (1, 2, 3))
    with pytest.raises(DataError, match="no test split"):
        load_dataset(str(tmp_path / "twoparts"), RGB32, "test")


# ---------------------------------------------------------------- names, paths, preprocessing


def test_unknown_names_and_missing_paths():
    with pytest.raises(UnknownNameError, match="did you mean 'shapes'") as err:
        load_dataset("shape", RGB32)
    assert all(name in str(err.value) for name in DATASETS)
    with pytest.raises(UnknownNameError, match="digits"):
        load_dataset("builtin:mnist", RGB32)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("./no/such/folder", RGB32)
    with pytest.raises(UsageError, match="unknown split"):
        load_dataset("digits", RGB32, "training")
    with pytest.raises(DataError, match="reber feeds"):
        load_dataset("reber", RGB32)
    with pytest.raises(DataError, match="not images"):
        load_dataset("shapes", LSTM)
    small = make_model((1, 3, 32, 32), RGB_PRE, num_classes=5)
    with pytest.raises(DataError, match="--num-classes"):
        load_dataset("digits", small, n=50)


def test_preprocessing_override(tmp_path):
    base = load_dataset("digits", GREY28, "test", n=30)
    pre = override_preprocessing(GREY28.preprocessing, mean=(0.5,), std=(0.5,), grayscale=True, input_size=28)
    assert pre.kind == "image" and pre.size == (28, 28) and pre.mean == (0.5,)
    got = load_dataset("digits", GREY28, "test", n=30, preprocessing=pre)
    assert np.allclose(got.x, (base.x - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(DataError, match="resizes to 64x64 .* takes 28x28"):
        load_dataset("digits", GREY28, preprocessing=override_preprocessing(pre, input_size=64))
    with pytest.raises(DataError, match="--grayscale"):
        load_dataset("digits", RGB32, preprocessing=override_preprocessing(RGB_PRE, grayscale=True))
    with pytest.raises(UsageError, match="--std"):
        override_preprocessing(pre, std=(0.0,))


def test_recipe_dir_is_honoured(tmp_path, monkeypatch):
    for name in ("digits", "reber", "shapes"):
        shutil.copy(builtin.calibration_dir() / f"{name}.toml", tmp_path)
    text = (tmp_path / "reber.toml").read_text()
    (tmp_path / "reber.toml").write_text(re.sub(r"^test = .*$", "test = 17", text, flags=re.M))
    monkeypatch.setenv("EDGEKIT_CALIBRATION_DIR", str(tmp_path))
    assert len(load_dataset("reber", LSTM, "test")) == 17
