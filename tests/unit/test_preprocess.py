"""Declared preprocessing: each resize mode against a reference written here on Pillow and numpy
with torchvision's semantics (Resize, CenterCrop, ToTensor, Normalize), the oddities of real image
folders, every calibration source, and --preprocess files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from edgekit.data.calibration import load_samples
from edgekit.data.datasets import load_dataset
from edgekit.data.images import decode_image, preprocess_image
from edgekit.data.preprocess import merge_overrides, override_preprocessing, read_preprocess_file
from edgekit.errors import DataError, UsageError
from edgekit.models.spec import InputSpec, LoadedModel, Preprocessing

RNG = np.random.default_rng(0)


def photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "L": 1}[mode]
    arr = RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


# ------------------------------------------------- the reference: torchvision's transforms by hand


def ref_resize_shorter(img, size, resample):
    w, h = img.size
    if w <= h:
        return img.resize((size, int(size * h / w)), resample)
    return img.resize((int(size * w / h), size), resample)


def ref_center_crop(img, height, width):
    w, h = img.size
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return img.crop((left, top, left + width, top + height))


def ref_to_tensor_normalize(img, mean, std):
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return (arr - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]


def ref_letterbox(img, height, width, resample, fill):
    scale = min(height / img.height, width / img.width)
    new = img.resize((round(img.width * scale), round(img.height * scale)), resample)
    canvas = Image.new(img.mode, (width, height), (fill,) * 3 if img.mode == "RGB" else fill)
    canvas.paste(new, ((width - new.width) // 2, (height - new.height) // 2))
    return canvas


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("size", [(300, 200), (97, 131), (224, 224), (40, 40)])
@pytest.mark.parametrize("fraction", [0.875, 1.0, 0.9])
def test_crop_mode_is_resize_then_center_crop(size, fraction):
    img = photo(*size)
    pre = Preprocessing(size=(64, 64), mean=MEAN, std=STD, resize="crop", crop_fraction=fraction)
    resized = ref_resize_shorter(img, math.floor(64 / fraction), Image.BILINEAR)
    want = ref_to_tensor_normalize(ref_center_crop(resized, 64, 64), MEAN, STD)
    assert np.allclose(preprocess_image(img, pre), want, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_squash_mode_resizes_to_exactly_hw(interpolation):
    img = photo(50, 20)
    pre = Preprocessing(size=(32, 24), mean=(0.5,), std=(0.25,), resize="squash", interpolation=interpolation)
    resample = getattr(Image.Resampling, interpolation.upper())
    want = ref_to_tensor_normalize(img.resize((24, 32), resample), (0.5,) * 3, (0.25,) * 3)
    got = preprocess_image(img, pre)
    assert got.shape == (3, 32, 24) and np.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("size", [(50, 20), (20, 50), (32, 32)])
def test_pad_mode_letterboxes_with_the_pad_value(size):
    img = photo(*size)
    pre = Preprocessing(size=(32, 32), resize="pad", pad_value=114)
    want = ref_to_tensor_normalize(ref_letterbox(img, 32, 32, Image.BILINEAR, 114), (0.0,), (1.0,))
    got = preprocess_image(img, pre)
    assert np.allclose(got, want, atol=1e-6)
    if size == (50, 20):  # wide: grey bands above and below, the photo in the middle rows
        assert np.allclose(got[:, 0], 114 / 255) and np.allclose(got[:, -1], 114 / 255)


def test_none_mode_takes_images_as_they_are_and_refuses_other_sizes():
    img = photo(28, 28, "L")
    pre = Preprocessing(size=(28, 28), grayscale=True, mean=(0.1307,), std=(0.3081,), resize="none")
    want = ref_to_tensor_normalize(img, (0.1307,), (0.3081,))
    assert np.allclose(preprocess_image(img, pre), want, atol=1e-6)
    with pytest.raises(DataError, match="30x28 .* --resize none"):
        preprocess_image(photo(30, 28, "L"), pre)


def test_grey_scale_and_nhwc_layout():
    img = photo(40, 30)
    pre = Preprocessing(size=(16, 16), grayscale=True, scale=1 / 127.5, mean=(1.0,), std=(1.0,),
                        layout="NHWC")
    got = preprocess_image(img, pre)
    grey = np.asarray(img.convert("L").resize((16, 16), Image.BILINEAR), np.float32)
    assert got.shape == (16, 16, 1) and np.allclose(got[..., 0], grey / 127.5 - 1.0, atol=1e-5)


def test_bad_declarations_are_one_line_usage_errors():
    for kwargs, match in [({"resize": "stretch"}, "resize 'stretch'"),
                          ({"crop_fraction": 1.5}, "crop fraction"),
                          ({"std": (0.0,)}, "--std"), ({"layout": "CHW"}, "layout"),
                          ({"interpolation": "cubic"}, "interpolation")]:
        with pytest.raises(UsageError, match=match):
            override_preprocessing(Preprocessing(size=(8, 8)), **kwargs)


# ------------------------------------------------- --preprocess files


def test_preprocess_file_and_options_on_top(tmp_path):
    f = tmp_path / "pre.toml"
    f.write_text('[preprocess]\nresize = "pad"\nmean = [0.5, 0.5, 0.5]\nstd = 0.5\ncrop-fraction = 0.9\n'
                 'interpolation = "bicubic"\npad-value = 114\n')
    assert read_preprocess_file(f) == {"resize": "pad", "mean": [0.5, 0.5, 0.5], "std": 0.5,
                                       "crop_fraction": 0.9, "interpolation": "bicubic", "pad_value": 114}
    merged = merge_overrides(f, resize="squash", grayscale=None)
    assert merged["resize"] == "squash" and "grayscale" not in merged
    pre = override_preprocessing(Preprocessing(size=(8, 8)), **merged)
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5,) and pre.interpolation == "bicubic"
    (tmp_path / "bad.toml").write_text('resize = "pad"\ncolour = "red"\n')
    with pytest.raises(UsageError, match="unknown preprocessing key 'colour'"):
        read_preprocess_file(tmp_path / "bad.toml")
    (tmp_path / "type.toml").write_text("grayscale = 1\n")
    with pytest.raises(UsageError, match="grayscale = 1 is not true"):
        read_preprocess_file(tmp_path / "type.toml")
    with pytest.raises(UsageError, match="does not exist"):
        read_preprocess_file(tmp_path / "missing.toml")


# ------------------------------------------------- what real folders hold


def model(shape=(1, 3, 16, 16), pre=None, classes=10) -> LoadedModel:
    return LoadedModel(name="m.py:M", module=None, task="classification", input_spec=InputSpec(shape),
                       preprocessing=pre or Preprocessing(size=shape[2:], resize="squash"),
                       num_classes=classes, options={}, params=0, macs=None, weights=None,
                       builtin_calibration=None)


def write_odd_images(root):
    """One of each oddity, all meant to read as a red square (16x16)."""
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    files = {}
    pal = red.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    files["a/palette transparent.png"] = lambda p: pal.save(p, transparency=0)
    files["a/alpha.PNG"] = lambda p: red.convert("RGBA").save(p)
    files["a/anim.gif"] = lambda p: red.save(p, save_all=True, append_images=[Image.new("RGB", (16, 16))])
    files["a/cmyk.jpg"] = lambda p: red.convert("CMYK").save(p, quality=100)
    files["a/upper.JPG"] = lambda p: red.save(p, quality=100)
    files["a/long.jpeg"] = lambda p: red.save(p, quality=100)
    files["a/web.webp"] = lambda p: red.save(p, lossless=True)
    files["a/bitmap.bmp"] = lambda p: red.save(p)
    for name, save in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path)
    (root / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "a" / "._upper.JPG").write_bytes(b"\0\5\x16\7")  # macOS resource fork: hidden
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return sorted(files)


def test_image_oddities_read_as_what_they_show(tmp_path):
    names = write_odd_images(tmp_path)
    m = model()
    x = load_dataset(str(tmp_path), m, "all")
    assert len(x) == len(names) and x.extra["skipped"] == ["a/broken.jpg"]
    red = np.stack([np.ones((16, 16)), np.zeros((16, 16)), np.zeros((16, 16))])
    for sample in x.x:
        assert np.abs(sample - red).max() < 0.03  # JPEG/CMYK round trips are close, not exact
    samples = load_samples(str(tmp_path / "a"), m, 50)  # a flat folder: calibration takes it all
    assert len(samples.x) == len(names) and samples.skipped == ["broken.jpg"]
    assert samples.warning.count("broken.jpg") == 1 and "skipped 1 unreadable" in samples.warning


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    arr = np.full((8, 8), 32768, np.uint16)
    arr[:4] = 65535
    Image.fromarray(arr).save(tmp_path / "deep.png")
    pre = Preprocessing(size=(8, 8), grayscale=True, resize="none")
    got = preprocess_image(decode_image(tmp_path / "deep.png"), pre)
    assert np.allclose(got[0, :4], 1.0) and np.allclose(got[0, 4:], 128 / 255, atol=1 / 255)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (20, 10), (0, 0, 0))
    img.paste((255, 255, 255), (10, 0, 20, 10))  # right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    img.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    upright = decode_image(tmp_path / "phone.jpg")
    assert upright.size == (10, 20)
    arr = np.asarray(upright.convert("L"), np.float32)
    assert arr[:8].mean() < 30 and arr[12:].mean() > 220  # the white half is now at the bottom


# ------------------------------------------------- one resolver: every source calibrates


def _idx_files(root, n=60):
    from edgekit.data import idx

    x = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    idx.write_idx(root / "t10k-images-idx3-ubyte.gz", x)
    idx.write_idx(root / "t10k-labels-idx1-ubyte.gz", y)
    return x, y


def rows(x):
    return {r.tobytes() for r in x}


def test_every_source_calibrates_and_labelled_ones_only_from_train(tmp_path):
    grey = model((1, 1, 32, 32), Preprocessing(size=(32, 32), grayscale=True, mean=(0.1307,), std=(0.3081,)))
    _idx_files(tmp_path)
    calib = load_samples(str(tmp_path), grey, 100)
    train, test = (load_dataset(str(tmp_path), grey, s) for s in ("train", "test"))
    assert calib.source.startswith("dataset:") and len(calib.x) == len(train) == 40
    assert rows(calib.x) == rows(train.x) and not rows(calib.x) & rows(test.x)

    folder = tmp_path / "folder"
    for c in range(3):
        for i in range(10):
            path = folder / f"class {c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            photo(20, 20).save(path)
    rgb = model()
    calib = load_samples(str(folder), rgb, 100)
    assert not rows(calib.x) & rows(load_dataset(str(folder), rgb, "test").x)
    assert len(calib.x) == len(load_dataset(str(folder), rgb, "train"))

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(5):
        photo(30, 20).save(flat / f"IMG {i}.JPG")
    assert load_samples(str(flat), rgb, 100).x.shape == (5, 3, 16, 16)

    pixels = RNG.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", pixels)
    np.savez(tmp_path / "xy.npz", x=pixels, y=np.arange(30) % 3)
    np.savez(tmp_path / "x.npz", x=pixels)
    assert len(load_samples(str(tmp_path / "x.npy"), rgb, 100).x) == 30
    assert len(load_samples(str(tmp_path / "x.npz"), rgb, 100).x) == 30
    labelled = load_samples(str(tmp_path / "xy.npz"), rgb, 100)
    assert labelled.source.startswith("dataset:") and len(labelled.x) == 24  # the train split
    assert len(load_samples("digits", model((1, 1, 32, 32), Preprocessing(size=(32, 32), grayscale=True)),
                            8).x) == 8


def test_declared_scale_applies_to_built_in_digits_too():
    grey = model((1, 1, 32, 32), Preprocessing(size=(32, 32), grayscale=True, mean=(0.1307,), std=(0.3081,)))
    same = model((1, 1, 32, 32), Preprocessing(size=(32, 32), grayscale=True, scale=1.0,
                                               mean=(0.1307 * 255,), std=(0.3081 * 255,)))
    a, b = load_dataset("digits", grey, "test", n=20), load_dataset("digits", same, "test", n=20)
    assert np.allclose(a.x, b.x, atol=1e-4)


def test_records_from_before_resize_modes_keep_the_crop_transform():
    old = {"kind": "image", "size": [32, 32], "grayscale": True, "mean": [0.5], "std": [0.5]}
    assert Preprocessing.from_dict(old).resize == "crop"
    assert Preprocessing.from_dict({**old, "resize": "pad"}).resize == "pad"


def test_resize_none_names_the_file_of_the_wrong_size(tmp_path):
    for i in range(3):
        photo(16, 16).save(tmp_path / f"ok {i}.png")
    photo(15, 16).save(tmp_path / "odd one.png")
    m = model(pre=Preprocessing(size=(16, 16), resize="none"))
    with pytest.raises(DataError, match=r"odd one\.png: an image is 15x16"):
        load_samples(str(tmp_path), m, 10)
