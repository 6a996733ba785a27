"""Calibration and dataset sources: real image folders, array files and the built-ins."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.data import BUILTINS, builtin, load_image_folder, load_samples, reber
from edgekit.errors import DataError, UnknownNameError
from edgekit.models.spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec, LoadedModel, Preprocessing


def make_model(shape, pre, calib=None, layout="NCHW") -> LoadedModel:
    return LoadedModel(
        name="m",
        module=torch.nn.Identity(),
        task="classification",
        input_spec=InputSpec(tuple(shape), layout=layout),
        preprocessing=pre,
        num_classes=10,
        options={},
        params=0,
        macs=None,
        weights=None,
        builtin_calibration=calib,
    )


RGB_PRE = Preprocessing(size=(16, 16), mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
RGB16 = make_model((1, 3, 16, 16), RGB_PRE)
GREY_PRE = Preprocessing(size=(32, 32), grayscale=True, mean=(0.5,), std=(0.5,))
LENET = make_model((1, 1, 32, 32), GREY_PRE, "digits")
LSTM = make_model((1, 24, 7), Preprocessing(kind="sequence"), "reber", layout="NTC")


def solid(path, color, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def expected_rgb(color):
    rgb = np.array(color, np.float32) / 255
    return (rgb - np.array(RGB_PRE.mean)) / np.array(RGB_PRE.std)


# ---------------------------------------------------------------- image folders


def test_flat_folder_loads_resized_and_normalised(tmp_path):
    solid(tmp_path / "a.png", (255, 0, 128))
    solid(tmp_path / "b.jpg", (255, 0, 128), size=(300, 200))
    solid(tmp_path / "c.bmp", (255, 0, 128), size=(16, 16))
    solid(tmp_path / "d.png", 128, mode="L")  # grey file into an RGB model
    (tmp_path / ".DS_Store").write_bytes(b"\0")

    got = load_image_folder(tmp_path, RGB_PRE, n=10)

    assert got.x.shape == (4, 3, 16, 16) and got.x.dtype == np.float32
    assert got.labels is None and got.class_names is None and got.skipped == []
    red = [i for i in range(4) if got.x[i, 0].mean() > 0.9]
    assert len(red) == 3
    for i in red:  # png and bmp are lossless; the jpg is within a few grey levels
        assert np.allclose(got.x[i].mean(axis=(1, 2)), expected_rgb((255, 0, 128)), atol=0.05)


def test_class_per_subfolder_folder_gives_labels(tmp_path):
    for i in range(2):
        solid(tmp_path / "cat" / f"{i}.png", (255, 0, 0))
    for i in range(3):
        solid(tmp_path / "dog" / "nested" / f"{i}.png", (0, 0, 255))
    (tmp_path / "notes.txt").write_text("not an image")

    got = load_image_folder(tmp_path, RGB_PRE)

    assert got.class_names == ["cat", "dog"]
    assert got.x.shape == (5, 3, 16, 16)
    assert sorted(got.labels.tolist()) == [0, 0, 1, 1, 1]
    blue = got.x[:, 2].mean(axis=(1, 2)) > 0.5  # blue channel: (1 - 0) / 1
    assert (blue == (got.labels == 1)).all()
    assert got.skipped == ["notes.txt"]


def test_folder_subset_is_deterministic_per_seed(tmp_path):
    for i in range(12):
        solid(tmp_path / f"{i:02d}.png", (i * 20, 0, 0))
    a = load_samples(str(tmp_path), RGB16, n=5, seed=1)
    b = load_samples(str(tmp_path), RGB16, n=5, seed=1)
    c = load_samples(str(tmp_path), RGB16, n=5, seed=2)
    assert a.x.shape == (5, 3, 16, 16) and a.sha256 == b.sha256 and a.sha256 != c.sha256
    assert a.source == f"folder:{tmp_path.resolve()}"


def test_junk_folder_names_the_skipped_files(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.csv").write_text("1,2")
    (tmp_path / "broken.jpg").write_bytes(b"not really a jpeg")
    with pytest.raises(DataError) as err:
        load_samples(str(tmp_path), RGB16, n=8)
    msg = str(err.value)
    assert "no usable images" in msg and "3 files skipped" in msg
    for name in ("a.txt", "b.csv", "broken.jpg"):
        assert name in msg


def test_broken_image_is_skipped_beside_good_ones(tmp_path):
    solid(tmp_path / "good.png", (10, 20, 30))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    got = load_samples(str(tmp_path), RGB16, n=8)
    assert got.x.shape == (1, 3, 16, 16) and got.skipped == ["broken.png"]
    assert "only 1 calibration sample in" in got.warning


# ---------------------------------------------------------------- array files


def test_npy_and_npz_load(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 24, 7))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "named.npz", labels=np.arange(6), x=x)
    np.savez(tmp_path / "first.npz", x.astype(np.float32))
    np.save(tmp_path / "one.npy", x[0])

    for name in ("x.npy", "named.npz", "first.npz"):
        got = load_samples(str(tmp_path / name), LSTM, n=100)
        assert got.x.dtype == np.float32 and np.allclose(got.x, x, atol=1e-6), name
    assert load_samples(str(tmp_path / "one.npy"), LSTM, n=100).x.shape == (1, 24, 7)
    assert load_samples(str(tmp_path / "x.npy"), LSTM, n=4).x.shape == (4, 24, 7)


def test_uint8_pixel_arrays_are_preprocessed(tmp_path):
    pixels = np.zeros((3, 20, 20, 3), np.uint8)
    pixels[..., 0] = 255
    np.save(tmp_path / "pix.npy", pixels)
    got = load_samples(str(tmp_path / "pix.npy"), RGB16, n=10)
    assert got.x.shape == (3, 3, 16, 16)
    assert np.allclose(got.x.mean(axis=(2, 3)), expected_rgb((255, 0, 0)), atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 24, 8), (5, 7, 24), (24,), (2, 5, 24, 7)])
def test_wrong_array_shape_is_refused(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    with pytest.raises(DataError, match=re.escape(f"shape {shape}")):
        load_samples(str(tmp_path / "bad.npy"), LSTM, n=4)


def test_unusable_array_files_are_refused(tmp_path):
    np.savez(tmp_path / "empty.npz")
    np.save(tmp_path / "nan.npy", np.full((2, 24, 7), np.nan))
    (tmp_path / "x.csv").write_text("1,2,3")
    for name, match in [("empty.npz", "no arrays"), ("nan.npy", "NaN"), ("x.csv", "not .npy")]:
        with pytest.raises(DataError, match=match):
            load_samples(str(tmp_path / name), LSTM, n=4)


# ---------------------------------------------------------------- built-ins and sources


def test_digit_splits_are_disjoint_stratified_and_fixed():
    recipe = builtin.load_recipe("digits", builtin.DigitsRecipe)
    splits = builtin.digit_split_indices(recipe, recipe.split_seed)
    all_idx = np.concatenate(list(splits.values()))
    assert len(all_idx) == len(set(all_idx.tolist())) == 1797
    assert 0.68 < len(splits["train"]) / 1797 < 0.72
    assert 0.13 < len(splits["test"]) / 1797 < 0.17

    pre = Preprocessing(size=(32, 32), grayscale=True, mean=(0.5,), std=(0.5,))
    x_test, y_test = builtin.digits_arrays(pre, "test")
    x_again, _ = builtin.digits_arrays(pre, "test")
    assert x_test.shape == (len(splits["test"]), 1, 32, 32) and np.array_equal(x_test, x_again)
    assert sorted(set(y_test.tolist())) == list(range(10))
    assert -1.0 <= x_test.min() and x_test.max() <= 1.0 and x_test.max() > 0.9

    x_calib, _ = builtin.digits_arrays(pre, "calib")
    x_train, _ = builtin.digits_arrays(pre, "train")
    assert np.array_equal(x_calib, x_train)


def test_digit_calibration_comes_from_train_only():
    calib = load_samples(None, LENET, n=50, seed=3).x
    x_train, _ = builtin.digits_arrays(GREY_PRE, "train")
    x_test, _ = builtin.digits_arrays(GREY_PRE, "test")
    train_rows = {r.tobytes() for r in x_train}
    test_rows = {r.tobytes() for r in x_test}
    assert all(r.tobytes() in train_rows and r.tobytes() not in test_rows for r in calib)


def test_shapes_calibration_is_train_images_at_the_models_size():
    from edgekit.data.datasets import load_dataset

    model = make_model((1, 3, 24, 24), RGB_PRE, calib="shapes")
    calib = load_samples(None, model, n=12, seed=1)
    assert calib.x.shape == (12, 3, 24, 24) and calib.source == "builtin:shapes"
    train = load_dataset("shapes", model, "train", n=12, seed=1).x
    np.testing.assert_array_equal(calib.x, train)
    test = {r.tobytes() for r in load_dataset("shapes", model, "test", n=300).x}
    assert not any(r.tobytes() in test for r in calib.x)


def test_photo_crops_are_deterministic_per_seed():
    model = make_model(
        (1, 3, 64, 64), Preprocessing(size=(64, 64), mean=IMAGENET_MEAN, std=IMAGENET_STD), "photos"
    )
    a = load_samples(None, model, n=6, seed=0)
    b = load_samples("photos", model, n=6, seed=0)
    c = load_samples("builtin:photos", model, n=6, seed=1)
    assert a.x.shape == (6, 3, 64, 64)
    assert np.array_equal(a.x, b.x) and a.sha256 == b.sha256
    assert not np.array_equal(a.x, c.x) and a.sha256 != c.sha256
    assert not np.array_equal(a.x[0], a.x[1])  # crops differ from each other
    assert "not representative" in a.warning and a.source == "builtin:photos"


def test_user_image_model_falls_back_to_grey_photos():
    model = make_model((1, 1, 28, 28), Preprocessing(kind="none"))
    got = load_samples(None, model, n=4)
    assert got.x.shape == (4, 1, 28, 28) and got.source == "builtin:photos"
    assert got.warning and 0.0 <= got.x.min() and got.x.max() <= 1.0


def test_user_sequence_model_without_source_asks_for_a_file():
    model = make_model((1, 10, 3), Preprocessing(kind="none"), layout="NTC")
    with pytest.raises(DataError, match=r"--calib FILE\.npy"):
        load_samples(None, model, n=4)


def test_unknown_builtin_lists_the_known_ones():
    assert set(BUILTINS) == {"digits", "photos", "reber", "shapes"}
    with pytest.raises(UnknownNameError, match="did you mean 'digits'") as err:
        load_samples("digit", LENET, n=4)
    assert all(name in str(err.value) for name in BUILTINS)
    with pytest.raises(UnknownNameError, match="reber"):
        load_samples("builtin:mnist", LENET, n=4)


def test_recipes_are_read_from_the_calibration_dir(tmp_path, monkeypatch):
    assert (builtin.calibration_dir() / "photos.toml").is_file()
    for name in ("digits", "photos", "reber"):
        shutil.copy(builtin.calibration_dir() / f"{name}.toml", tmp_path)
    text = (tmp_path / "photos.toml").read_text()
    (tmp_path / "photos.toml").write_text(re.sub(r'warning = ".*"', 'warning = "custom"', text))
    monkeypatch.setenv("EDGEKIT_CALIBRATION_DIR", str(tmp_path))
    assert load_samples("photos", RGB16, n=1).warning == "custom"

    (tmp_path / "reber.toml").unlink()
    with pytest.raises(DataError, match="reber.toml is missing"):
        load_samples(None, LSTM, n=1)


# ---------------------------------------------------------------- Reber grammar

# Independent of reber.py: the Reber graph written as a regular expression.
_FROM_X = r"(?:XT*VP)*(?:S|XT*VV)"  # from the node after the first X to the end
_INNER = rf"B(?:TS*X{_FROM_X}|PT*V(?:V|P{_FROM_X}))E"
EMBEDDED_REBER = re.compile(rf"B([TP]){_INNER}\1E")


def test_reber_strings_are_grammatical_and_fit():
    strings = reber.generate_strings(500, seed=0, max_len=24)
    assert all(EMBEDDED_REBER.fullmatch(s) for s in strings), strings[:5]
    assert max(map(len, strings)) <= 24 and min(map(len, strings)) >= 9
    assert {s[1] for s in strings} == {"T", "P"} and len(set(strings)) > 50
    assert reber.generate_strings(20, 1, 24) == reber.generate_strings(20, 1, 24)
    assert reber.generate_strings(20, 1, 24) != reber.generate_strings(20, 2, 24)
    assert not EMBEDDED_REBER.fullmatch("BTBTXSEPE")  # the checker itself rejects a bad wrap
    with pytest.raises(ValueError):
        reber.next_symbol_sets("BTBTXSEPE")


def test_reber_encoding_targets_are_the_next_symbols():
    strings = reber.generate_strings(200, seed=5, max_len=24)
    batch = reber.encode(strings, 24)
    assert batch.x.shape == (200, 24, 7) and batch.y.shape == (200, 24)
    assert reber.decode(batch.x) == strings
    for row, s in enumerate(strings):
        n = len(s)
        targets = [reber.SYMBOLS[i] for i in batch.y[row, : n - 1]]
        assert "".join(targets) == s[1:]
        assert (batch.y[row, n - 1 :] == reber.IGNORE_INDEX).all()
        assert not batch.x[row, n:].any() and not batch.deterministic[row, n - 1 :].any()
        for t in range(n - 1):  # every real next symbol is allowed
            assert batch.valid[row, t, batch.y[row, t]]
        # After the first symbol comes B; after the inner E the wrap symbol; after it E.
        assert {1, n - 3, n - 2} <= set(np.flatnonzero(batch.deterministic[row]).tolist())
    with pytest.raises(ValueError):
        reber.encode(["BT" + "BTSSSSSSSSSSSSSSSSSSSSSSXSE" + "TE"], 24)


def test_reber_builtin_is_stable_per_seed():
    a, b, c = (load_samples(None, LSTM, n=32, seed=s) for s in (0, 0, 1))
    assert a.x.shape == (32, 24, 7) and a.source == "builtin:reber" and a.warning is None
    assert a.sha256 == b.sha256 and a.sha256 != c.sha256
    assert all(EMBEDDED_REBER.fullmatch(s) for s in reber.decode(a.x))
