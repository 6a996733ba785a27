"""Numbers that are not pictures (edgekit.data.values): what reaches a model whose input is not an
image from the real MNIST IDX files, arrays and image files, against numpy on the same files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.data.calibration import load_samples
from edgekit.data.datasets import load_dataset
from edgekit.data.idx import read_idx, write_idx
from edgekit.data.preprocess import fit_to_input, override_preprocessing
from edgekit.errors import DataError
from edgekit.models.spec import InputSpec, LoadedModel, Preprocessing
from tests.conftest import REPO

MNIST = REPO.parent / "shared" / "data" / "mnist"
IMAGES = MNIST / "t10k-images-idx3-ubyte.gz"
ONE_255 = "0.00392156862745098"


def model(shape=(28, 1, 28), batch_axis=1, layout="TNC", **declared) -> LoadedModel:
    """A seq-first model's record (input (28, N, 28)) with ``declared`` as the CLI declares it."""
    spec = InputSpec(shape, layout=layout, batch_axis=batch_axis)
    pre = Preprocessing(kind="none")
    if declared:
        pre = fit_to_input(override_preprocessing(pre, **declared), spec, "m", declared)
    return LoadedModel(name="m.py:Net", module=torch.nn.Identity(), task="classification", input_spec=spec,
                       preprocessing=pre, num_classes=10, options={}, params=0, macs=None, weights=None,
                       builtin_calibration=None)


@pytest.fixture(scope="module")
def digits():
    if not IMAGES.is_file():
        pytest.skip("the real MNIST files are in ../shared/data/mnist on project machines")
    return read_idx(IMAGES), read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def small_idx(tmp_path, digits):
    """The first 300 real MNIST digits as their own IDX pair (one set: split all keeps file order)."""
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", digits[0][:300])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", digits[1][:300])
    return tmp_path


def test_declared_scale_mean_std_reach_a_seq_first_model_from_idx(small_idx, digits):
    m = model(scale=1 / 255, mean=0.1307, std=0.3081)
    assert m.preprocessing.kind == "values"
    data = load_dataset(small_idx, m, split="all")
    want = (digits[0][:300].astype(np.float32) / np.float32(255) - np.float32(0.1307)) / np.float32(0.3081)
    np.testing.assert_allclose(data.x, want, rtol=0, atol=1e-6)
    values = data.extra["values"]
    assert values["applied"] == {"scale": 1 / 255, "mean": [pytest.approx(0.1307)],
                                 "std": [pytest.approx(0.3081)]}
    assert values["source_dtype"] == "uint8" and values["source_range"] == [0.0, 255.0]
    assert "warning" not in values
    calib = load_samples(str(small_idx), m, 16)  # calibration: the same rule, recorded
    assert calib.to_dict()["values"]["applied"]["scale"] == 1 / 255 and calib.x.max() <= want.max() + 1e-6
    assert calib.warning is None


def test_nothing_declared_passes_raw_values_with_one_warning_naming_scale(small_idx, digits):
    data = load_dataset(small_idx, model(), split="all")
    np.testing.assert_array_equal(data.x, digits[0][:300].astype(np.float32))
    warning = data.extra["values"]["warning"]
    assert f"--scale {ONE_255}" in warning and "0..255" in warning and "\n" not in warning
    calib = load_samples(str(small_idx), model(), 16)
    assert calib.warning.count("--scale") == 2 and calib.to_dict()["values"]["applied"] is None
    kept = load_dataset(small_idx, model(scale=1), split="all")  # --scale 1: raw on purpose, no warning
    np.testing.assert_array_equal(kept.x, data.x)
    assert "warning" not in kept.extra["values"]


def test_float_arrays_pass_unchanged_and_whole_number_floats_warn(tmp_path, digits):
    m = model(scale=1 / 255)
    x = digits[0][:20].astype(np.float32) / 255
    np.save(tmp_path / "pre.npy", x)
    got = load_samples(str(tmp_path / "pre.npy"), m, 20)
    np.testing.assert_array_equal(got.x, x)
    assert got.warning is None and "preprocessed" in got.values["rule"]
    np.save(tmp_path / "raw.npy", digits[0][:20].astype(np.float32))
    got = load_samples(str(tmp_path / "raw.npy"), m, 20)
    assert got.x.max() == 255 and "save the raw values as uint8" in got.warning
    np.save(tmp_path / "u8.npy", digits[0][:20])  # the same values as uint8: scaled
    np.testing.assert_allclose(load_samples(str(tmp_path / "u8.npy"), m, 20).x, x, atol=1e-7)


def test_integers_zero_to_one_scaled_by_one_255_warn(tmp_path):
    np.save(tmp_path / "mask.npy", (np.arange(20 * 28 * 28).reshape(20, 28, 28) % 2).astype(np.uint8))
    got = load_samples(str(tmp_path / "mask.npy"), model(scale=1 / 255), 20)
    assert "pass --scale 1 if they are already 0..1" in got.warning


@pytest.mark.parametrize(("shape", "axis", "layout"), [
    ((28, 1, 28), 1, "TNC"),  # seq-first LSTM
    ((1, 28, 28), 0, "NTC"),  # batch-first
    ((1, 28, 28, 1), 0, "NCHW"),  # the same numbers with a size-1 axis (not an image: 28 channels)
])
def test_idx_rows_fit_sequence_inputs_without_an_npz(small_idx, digits, shape, axis, layout):
    m = model(shape, axis, layout, scale=1 / 255)
    data = load_dataset(small_idx, m, split="all")
    assert data.x.shape == (300, *m.input_spec.sample_shape)
    np.testing.assert_allclose(data.x.reshape(300, 28, 28), digits[0][:300] / np.float32(255), atol=1e-7)


def test_other_sample_shapes_are_one_line(small_idx):
    with pytest.raises(DataError) as err:
        load_dataset(small_idx, model((32, 1, 28)), split="all")
    text = str(err.value)
    assert "(300, 28, 28)" in text and "(32, 28)" in text and "save an array (N, 32, 28)" in text
    assert "\n" not in text


def test_image_files_into_a_non_image_model_get_the_declared_values(tmp_path, digits):
    for i in range(6):  # labelled folder (class sub-folders) and a flat one for calibration
        (tmp_path / "set" / str(digits[1][i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits[0][i]).save(tmp_path / "set" / str(digits[1][i]) / f"{i}.png")
    m = model(scale=1 / 255, mean=0.5, std=0.5)
    data = load_dataset(tmp_path / "set", m, split="all")
    want = [(digits[0][i] / np.float32(255) - np.float32(0.5)) / np.float32(0.5) for i in range(6)]
    assert data.x.shape == (6, 28, 28) and data.extra["values"]["applied"]["std"] == [0.5]
    assert sorted(a.astype(np.float32).tobytes() for a in want) == sorted(a.tobytes() for a in data.x)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(digits[0][0]).save(flat / "a.png")
    Image.fromarray(digits[0][1][:20]).save(flat / "b.png")  # 28x20: refused by name
    with pytest.raises(DataError, match=r"b\.png holds an array of shape \(1, 20, 28\)"):
        load_samples(str(flat), m, 4)


def test_per_feature_mean_needs_one_value_or_one_per_feature(small_idx):
    data = load_dataset(small_idx, model(scale=1, mean=[float(i) for i in range(28)]), split="all", n=2)
    assert data.x.shape == (2, 28, 28)
    with pytest.raises(DataError, match="pass one --mean value, or 28"):
        load_dataset(small_idx, model(scale=1, mean=[0.1, 0.2, 0.3]), split="all", n=2)
