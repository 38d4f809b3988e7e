"""tfadakd.data on the real CIFAR-10 / CIFAR-100 (small slices), plus argument and missing-data errors."""

import time
import urllib.error

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfadakd import data
from tfadakd.data.cifar import prepare as cifar_mod

PAD = 4


def raw(name, split, data_dir):
    """The tfds uint8 images and int labels of `split`, straight from tfds (no tfadakd code)."""
    images, labels = tfds.load(name, split=split, data_dir=data_dir, download=False, batch_size=-1,
                               as_supervised=True)
    return images.numpy(), labels.numpy()


def collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def to_pixels(x, name):
    """Normalized float images -> the uint8 pixels they came from."""
    pixels = np.round(data.denormalize(x, name))
    assert np.abs(data.denormalize(x, name) - pixels).max() < 1e-2  # exact up to float32 rounding
    return np.clip(pixels, 0, 255).astype(np.uint8)


def candidates(image):
    """All 81 crops x 2 flips of a zero-padded image: (18, 9, 32, 32, 3) indexed [flip*9 + dy, dx]."""
    padded = np.pad(image, [(PAD, PAD), (PAD, PAD), (0, 0)])
    crops = np.stack([np.stack([padded[dy:dy + 32, dx:dx + 32] for dx in range(2 * PAD + 1)])
                      for dy in range(2 * PAD + 1)])
    return np.concatenate([crops, crops[..., ::-1, :]])  # flip the 32-wide column axis


def find_crop(output, image):
    """(dy, dx, flipped) with output == crop of the zero-padded image, or None."""
    match = np.all(candidates(image) == output, axis=(2, 3, 4))
    hits = np.argwhere(match)
    if len(hits) == 0:
        return None
    row, dx = hits[0]
    return row % 9, dx, bool(row // 9)


# ---------------------------------------------------------------------------------------------------
# Shapes, dtypes, statistics, exact pixels
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_shapes_dtypes_and_labels(tfds_data_dir, name):
    ds = data.load_cifar(name, "train", batch_size=64, data_dir=tfds_data_dir, num_examples=200, seed=0)
    assert ds.element_spec[0] == tf.TensorSpec((None, 32, 32, 3), tf.float32)
    assert ds.element_spec[1] == tf.TensorSpec((None,), tf.int32)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [len(y) for _, y in batches] == [64, 64, 64, 8]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (32, 32, 3) and y.dtype == np.int32
        assert y.min() >= 0 and y.max() < data.num_classes(name)
        assert np.isfinite(x).all()
    ds = data.load_cifar(name, "train", batch_size=64, data_dir=tfds_data_dir, num_examples=200,
                         drop_remainder=True)
    assert ds.element_spec[0].shape.as_list() == [64, 32, 32, 3]
    assert [y.shape[0] for _, y in ds] == [64, 64, 64]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_normalized_channel_statistics(tfds_data_dir, name):
    x, y = collect(data.load_cifar(name, "test", batch_size=1000, data_dir=tfds_data_dir, num_examples=4000))
    assert x.shape == (4000, 32, 32, 3)
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    # The constants are train-set statistics: on test images they are close, not exact.
    np.testing.assert_allclose(mean, 0.0, atol=0.04)
    np.testing.assert_allclose(std, 1.0, atol=0.04)
    assert len(np.unique(y)) == data.num_classes(name)  # all classes present, fine labels for CIFAR-100


def test_test_split_exact_pixels_deterministic_unaugmented(tfds_data_dir):
    ds = data.load_cifar("cifar100", "test", batch_size=50, data_dir=tfds_data_dir, num_examples=200)
    x1, y1 = collect(ds)
    x2, y2 = collect(ds)  # a second pass: same order, same values (no shuffle, no augmentation)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    images, labels = raw("cifar100", "test[:200]", tfds_data_dir)
    np.testing.assert_array_equal(to_pixels(x1, "cifar100"), images)
    np.testing.assert_array_equal(y1, labels)
    assert y1.max() >= 20  # fine labels (100 classes), not the 20 coarse ones


def test_normalize_denormalize_helpers():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    for name in ("cifar10", "cifar100"):
        mean, std = map(np.asarray, data.NORMALIZATION[name])
        x = data.normalize(pixels, name)
        assert isinstance(x, np.ndarray) and x.dtype == np.float32
        np.testing.assert_allclose(x, (pixels / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
        t = data.normalize(tf.constant(pixels), name)
        assert isinstance(t, tf.Tensor) and t.dtype == tf.float32
        np.testing.assert_allclose(t.numpy(), x, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(data.normalize(pixels.astype(np.float32), name), x, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(np.round(data.denormalize(x, name)), pixels)
        np.testing.assert_array_equal(np.round(data.denormalize(t, name).numpy()), pixels)
    assert data.num_classes("cifar10") == 10 and data.num_classes("cifar100") == 100


# ---------------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------------


def test_train_crops_are_zero_padded_shifts_and_flips(tfds_data_dir):
    n = 512
    ds = data.load_cifar("cifar100", "train", batch_size=128, data_dir=tfds_data_dir, num_examples=n,
                         shuffle=False, seed=7)
    x, y = collect(ds)
    images, labels = raw("cifar100", f"train[:{n}]", tfds_data_dir)
    np.testing.assert_array_equal(y, labels)  # shuffle=False keeps the order
    out = to_pixels(x, "cifar100")
    found = [find_crop(out[i], images[i]) for i in range(n)]
    missing = [i for i, f in enumerate(found) if f is None]
    assert not missing, f"images {missing[:10]} are not zero-padded 32x32 crops (+ flip) of their originals"
    dys, dxs, flips = map(np.array, zip(*found))
    assert set(dys) == set(range(9)) and set(dxs) == set(range(9))  # every shift in [-4, 4] occurs
    assert 0.42 < flips.mean() < 0.58, flips.mean()  # about half flipped (sd ~0.022 for 512 draws)
    # A specific image shifted by the full padding: its border is the normalized zero pixel.
    corner = next(i for i, (dy, dx, _) in enumerate(found) if dy == 0 and dx == 0)
    dy, dx, flipped = found[corner]
    mean, std = map(np.asarray, data.NORMALIZATION["cifar100"])
    np.testing.assert_allclose(x[corner, :PAD, :, :], np.broadcast_to(-mean / std, (PAD, 32, 3)), atol=1e-5)
    expected = np.pad(images[corner], [(PAD, PAD), (PAD, PAD), (0, 0)])[:32, :32]
    np.testing.assert_array_equal(out[corner], expected[:, ::-1] if flipped else expected)


def test_augment_offsets_and_flips_are_uniform():
    # Channel 0 encodes the column + 1, channel 1 the row + 1 (zero = padding): one pixel tells the shift.
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([c + 1, r + 1, np.full_like(r, 7)], -1).astype(np.uint8)
    n = 4000
    out = data.augment(tf.constant(np.repeat(image[None], n, 0)), seed=[3, 4]).numpy()
    assert out.shape == (n, 32, 32, 3) and out.dtype == np.uint8
    flipped = out[:, 16, 17, 0].astype(int) - out[:, 16, 16, 0].astype(int) == -1
    dx = out[:, 16, 16, 0].astype(int) - np.where(flipped, 12, 13)
    dy = out[:, 16, 16, 1].astype(int) - 13
    assert 0.46 < flipped.mean() < 0.54, flipped.mean()  # sd 0.008
    for shifts in (dx, dy):
        counts = np.bincount(shifts, minlength=9)
        assert len(counts) == 9 and np.all(np.abs(counts / n - 1 / 9) < 0.03), counts
    for i in range(20):  # the whole image is the zero-padded crop
        padded = np.pad(image, [(PAD, PAD), (PAD, PAD), (0, 0)])
        crop = padded[dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        np.testing.assert_array_equal(out[i], crop[:, ::-1] if flipped[i] else crop)
    single = data.augment(image, seed=[3, 4]).numpy()  # one image (H, W, C) works too
    assert single.shape == (32, 32, 3) and find_crop(single, image) is not None
    np.testing.assert_array_equal(data.augment(image, seed=[3, 4]).numpy(), single)  # stateless


def test_same_seed_same_batches_different_seed_different(tfds_data_dir):
    def epochs(seed, count=2):
        ds = data.load_cifar("cifar10", "train", batch_size=64, data_dir=tfds_data_dir, num_examples=256,
                             seed=seed)
        return [collect(ds) for _ in range(count)]

    a, b, c = epochs(3), epochs(3), epochs(4, count=1)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][1], c[0][1])  # another shuffle
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[0][1], a[1][1])  # each epoch reshuffles ...
    assert not np.array_equal(np.sort(a[0][0], axis=0), np.sort(a[1][0], axis=0))  # ... and re-augments
    np.testing.assert_array_equal(np.sort(a[0][1]), np.sort(a[1][1]))  # over the same examples


def test_num_examples_and_split_slices(tfds_data_dir):
    x, y = collect(data.load_cifar("cifar10", "train", batch_size=64, data_dir=tfds_data_dir,
                                   num_examples=100, augment=False, shuffle=False))
    assert x.shape == (100, 32, 32, 3)
    images, labels = raw("cifar10", "train[:100]", tfds_data_dir)
    np.testing.assert_array_equal(to_pixels(x, "cifar10"), images)
    np.testing.assert_array_equal(y, labels)
    # A tfds slice, narrowed further by num_examples.
    _, y2 = collect(data.load_cifar("cifar10", "train[50:]", batch_size=32, data_dir=tfds_data_dir,
                                    num_examples=50, augment=False, shuffle=False))
    np.testing.assert_array_equal(y2, raw("cifar10", "train[50:100]", tfds_data_dir)[1])
    # Shuffling keeps the same examples.
    _, y3 = collect(data.load_cifar("cifar10", "train", batch_size=64, data_dir=tfds_data_dir,
                                    num_examples=100, seed=1))
    np.testing.assert_array_equal(np.sort(y3), np.sort(labels))
    assert data.num_examples("cifar100", "train") == 50000
    assert data.num_examples("cifar10", "test") == 10000
    assert data.num_examples("cifar10", "train[:10%]") == 5000
    assert data.num_examples("cifar100", "test[-1000:]") == 1000


def test_calibration_images(tfds_data_dir):
    images = data.calibration_images("cifar100", n=16, data_dir=tfds_data_dir)
    assert isinstance(images, np.ndarray) and images.shape == (16, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(to_pixels(images, "cifar100"), raw("cifar100", "train[:16]", tfds_data_dir)[0])


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


def assert_both_remedies(message, name="cifar100"):
    archive = {"cifar10": "cifar-10-binary.tar.gz", "cifar100": "cifar-100-binary.tar.gz"}[name]
    for needle in ("data_dir", "--data_dir", f"{name}/3.", "manual_dir", "--manual_dir", archive, "internet"):
        assert needle in message, f"{needle!r} missing from:\n{message}"


def test_missing_data_without_download(tmp_path):
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_cifar("cifar100", "train", data_dir=tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError)
    assert_both_remedies(str(info.value))
    assert str(tmp_path) in str(info.value)


def test_offline_download_fails_fast_without_calling_tfds(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar_mod, "_internet_reachable", lambda url: "offline (mocked)")

    def must_not_run(*args, **kwargs):
        raise AssertionError("download_and_prepare must not be reached when offline")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", must_not_run)
    start = time.monotonic()
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_cifar("cifar10", "test", data_dir=tmp_path, download=True)
    assert time.monotonic() - start < 10
    assert_both_remedies(str(info.value), "cifar10")
    assert "offline (mocked)" in str(info.value)


def test_connectivity_probe_is_bounded(monkeypatch):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    assert "Name or service not known" in cifar_mod._internet_reachable("https://example.invalid/x")

    def hangs(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(urllib.request, "urlopen", hangs)
    start = time.monotonic()
    assert "no answer" in cifar_mod._internet_reachable("https://example.invalid/x", timeout=0.2)
    assert time.monotonic() - start < 5


def test_manual_dir_missing_or_wrong_archive(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_cifar("cifar100", data_dir=tmp_path / "tfds", manual_dir=manual)
    assert_both_remedies(str(info.value))
    assert str(manual / "cifar-100-binary.tar.gz") in str(info.value)
    # A file with the official name but not the official content: tfds' SHA-256 check rejects it.
    (manual / "cifar-10-binary.tar.gz").write_bytes(b"not the CIFAR archive")
    with pytest.raises(data.DataNotFoundError, match="does not match the official release"):
        data.load_cifar("cifar10", data_dir=tmp_path / "tfds", manual_dir=manual)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"name": "cifar1000"}, "'cifar1000'"),
        ({"name": "mnist"}, "'mnist'"),
        ({"split": "valid"}, "'valid'"),
        ({"split": "train[:abc]"}, "'train[:abc]'"),
        ({"split": "train+test"}, "'train+test'"),
        ({"batch_size": 0}, "0"),
        ({"batch_size": -8}, "-8"),
        ({"batch_size": 2.5}, "2.5"),
        ({"num_examples": 0}, "0"),
        ({"num_examples": -1}, "-1"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, needle, tmp_path):
    # Validation happens before any data access (tmp_path is empty and download is off).
    with pytest.raises(ValueError) as info:
        data.load_cifar(**{"data_dir": tmp_path, "download": False, **kwargs})
    assert needle in str(info.value)
    if "name" in kwargs:
        assert "cifar10" in str(info.value) and "cifar100" in str(info.value)


def test_bad_names_in_helpers():
    for fn in (data.num_classes, lambda n: data.num_examples(n, "train"), lambda n: data.normalize(np.zeros(3), n)):
        with pytest.raises(ValueError, match="'imagenet'"):
            fn("imagenet")
    with pytest.raises(ValueError, match="'val'"):
        data.num_examples("cifar10", "val")
    with pytest.raises(ValueError, match="-3"):
        data.calibration_images(n=-3)
