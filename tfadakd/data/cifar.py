"""CIFAR-10 / CIFAR-100 input pipelines on tensorflow-datasets.

The pipeline follows the standard CIFAR knowledge-distillation recipe (`docs/method.md` section 5), i.e. what
`torchvision`'s `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(mean, std)`
does: the 4-pixel padding is zeros in pixel space, applied before normalization.

Order of operations (train split): read + decode once (tfds), cache the decoded uint8 images, shuffle
over the whole split, batch, augment each batch (random crop offsets and flips drawn per image), normalize,
prefetch. Randomness comes from `seed` only (stateless random ops fed by a seeded
`tf.data.Dataset.random`), so two pipelines built with the same seed yield identical batches, epoch after
epoch, while successive epochs of one pipeline differ.

This module never reads command-line flags: apps pass `data_dir` / `manual_dir` / `download` explicitly.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request
from typing import Dict, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from tfadakd.data import splits

__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "DataNotFoundError",
    "IMAGE_SHAPE",
    "augment",
    "calibration_images",
    "cifar_epochs",
    "denormalize",
    "load_cifar",
    "normalize",
    "num_classes",
    "num_examples",
]

IMAGE_SHAPE = (32, 32, 3)

#: Per-dataset channel mean and std of the training images in [0, 1] (`docs/method.md` section 5).
NORMALIZATION: Dict[str, Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}

_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
_SPLIT_SIZES = {"train": 50000, "test": 10000}
_ARCHIVES = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
}
#: The dataset names accepted everywhere in this module.
DATASETS = tuple(sorted(_NUM_CLASSES))

# How long the pre-download connectivity probe may take before we call the machine offline.
_PROBE_TIMEOUT_S = 10.0


class DataNotFoundError(FileNotFoundError):
    """The CIFAR data is neither prepared locally nor obtainable (no manual archive, no internet)."""


# --------------------------------------------------------------------------------------------------
# Validation and metadata
# --------------------------------------------------------------------------------------------------


def _check_name(name) -> str:
    if name not in _NUM_CLASSES:
        raise ValueError(f"Unknown dataset name {name!r}: expected one of {list(DATASETS)}.")
    return name


def _split_info(split) -> Tuple[str, int, int]:
    """Parses a tfds split string limited to one of train/test: returns (base split, start, stop)."""
    return splits.resolve(split, _SPLIT_SIZES)


def num_classes(name: str = "cifar100") -> int:
    """Returns the number of classes of a CIFAR dataset (fine labels for CIFAR-100).

    Arguments:
        name: `"cifar10"` or `"cifar100"`.

    Returns:
        10 or 100.

    Raises:
        ValueError: for any other name.

    Example:

    >>> num_classes("cifar100")
    100
    """
    return _NUM_CLASSES[_check_name(name)]


def num_examples(name: str = "cifar100", split: str = "train") -> int:
    """Returns the number of examples of a split; needs no data on disk.

    Arguments:
        name: `"cifar10"` or `"cifar100"`.
        split: `"train"` (50,000), `"test"` (10,000), or a tfds slice of one of them (`"train[:1000]"`,
            `"test[-10%:]"`).

    Returns:
        The example count, as an int.

    Raises:
        ValueError: for an unknown name or an invalid split.

    Example:

    >>> num_examples("cifar10", "train[:10%]")
    5000
    """
    _check_name(name)
    _, start, stop = _split_info(split)
    return stop - start


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


def _scale_offset(name):
    mean, std = NORMALIZATION[_check_name(name)]
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def normalize(images, name: str = "cifar100"):
    """Normalizes images in pixel units with the dataset's channel mean and std.

    Computes `(images / 255 - mean) / std` per channel, in float32, like torchvision's
    `ToTensor()` followed by `Normalize(mean, std)`.

    Arguments:
        images: Images in pixel units [0, 255], channels last (`(..., 3)`), of any numeric dtype (uint8
            as stored, or float). A NumPy array or a tensor.
        name: `"cifar10"` or `"cifar100"`: selects `NORMALIZATION[name]`.

    Returns:
        float32 images of the same shape: a NumPy array for a NumPy input, a tensor otherwise.

    Raises:
        ValueError: for an unknown name.

    Example:

    >>> x = normalize(np.zeros((2, 32, 32, 3), np.uint8), "cifar100")
    >>> x.dtype, x.shape
    (dtype('float32'), (2, 32, 32, 3))
    """
    scale, offset = _scale_offset(name)
    if isinstance(images, np.ndarray):
        return images.astype(np.float32) * scale + offset
    return tf.cast(images, tf.float32) * scale + offset


def denormalize(images, name: str = "cifar100"):
    """Inverts `normalize`: returns float32 images in pixel units [0, 255].

    Round (`np.round`) to recover the exact uint8 pixels of an unaugmented image.

    Arguments:
        images: Normalized float images, channels last. A NumPy array or a tensor.
        name: `"cifar10"` or `"cifar100"`.

    Returns:
        float32 images in pixel units, NumPy for a NumPy input, a tensor otherwise.

    Raises:
        ValueError: for an unknown name.
    """
    mean, std = NORMALIZATION[_check_name(name)]
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    if isinstance(images, np.ndarray):
        return (images.astype(np.float32) * std + mean) * np.float32(255.0)
    return (tf.cast(images, tf.float32) * std + mean) * 255.0


def augment(images, seed, padding: int = 4):
    """Random crop with zero padding plus random horizontal flip (the CIFAR recipe).

    Each image is padded with `padding` zero pixels on every side (in pixel space: call this on the raw
    images, before `normalize`), a window of the original size is cropped at a uniformly random offset
    in `[0, 2 * padding]` on each axis, and the crop is flipped left-right with probability 1/2; offsets
    and flips are drawn independently for every image of a batch. Stateless: the same `seed` and input
    give the same output.

    Arguments:
        images: One image `(H, W, C)` or a batch `(B, H, W, C)`, any dtype (uint8 as stored).
        seed: Shape `(2,)` int32 / int64 tensor or sequence, as for `tf.random.stateless_uniform`.
        padding: Pixels of zero padding on each side (4 for CIFAR).

    Returns:
        A tensor with the shape and dtype of `images`.

    Example:

    >>> batch = tf.zeros((8, 32, 32, 3), tf.uint8)
    >>> augment(batch, seed=[1, 2]).shape
    TensorShape([8, 32, 32, 3])
    """
    images = tf.convert_to_tensor(images)
    single = images.shape.rank == 3
    if single:
        images = images[tf.newaxis]
    if images.shape.rank != 4:
        raise ValueError(f"augment expects (H, W, C) or (B, H, W, C) images, got shape {images.shape}.")
    batch = tf.shape(images)[0]
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed=crop_seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    flips = tf.random.stateless_uniform([batch], seed=flip_seed) < 0.5
    out = _crop_and_flip(images, offsets, flips, padding)
    return out[0] if single else out


# --------------------------------------------------------------------------------------------------
# Locating / preparing the data
# --------------------------------------------------------------------------------------------------


def _archive_name(name):
    return _ARCHIVES[name].rsplit("/", 1)[-1]


def _missing_message(name, data_dir, manual_dir, reason):
    archive = _archive_name(name)
    if data_dir is None:
        default = os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
        where = f"{os.path.expanduser(default)} (tfds' default: $TFDS_DATA_DIR or ~/tensorflow_datasets)"
    else:
        where = data_dir
    return (
        f"{name} data not found: {reason}\n"
        f"Searched the tfds data dir: {where}"
        + (f"; manual dir: {manual_dir}" if manual_dir is not None else "")
        + ".\nProvide one of:\n"
        f"  1. a tfds data dir that holds a prepared {name}/3.x dataset: argument `data_dir` "
        f"(flag --data_dir, or the TFDS_DATA_DIR environment variable);\n"
        f"  2. a manual dir holding the official archive named {archive} ({_ARCHIVES[name]}): "
        f"argument `manual_dir` (flag --manual_dir); it is checked against tfds' registered SHA-256 and "
        f"prepared into the data dir once;\n"
        f"  3. internet access (with download=True), so that tfds downloads {archive}."
    )


def _internet_reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> Optional[str]:
    """Returns None if `url`'s host answers within `timeout` seconds, else a short reason string.

    tfds' downloader (requests, with retries and no timeout) can stall for minutes on a machine whose
    network drops packets; this bounded probe (honouring the usual *_PROXY variables) fails fast instead.
    """
    result = {}

    def probe():
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass  # The host answered: the network works (tfds handles the HTTP status itself).
        except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
            result["error"] = f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=probe, daemon=True)  # DNS lookups ignore urlopen's timeout
    thread.start()
    thread.join(timeout + 1.0)
    if thread.is_alive():
        return f"no answer from {url} within {timeout:.0f} s"
    return result.get("error")


def _prepared_builder(name, data_dir, manual_dir, download):
    """Returns a tfds builder whose data is prepared, preparing it if allowed; else DataNotFoundError."""
    import tensorflow_datasets as tfds

    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        missing = [str(f) for split in builder.info.splits.values() for f in split.filepaths if not os.path.exists(f)]
        if missing:
            raise DataNotFoundError(
                f"The prepared {name} data set in {builder.data_dir} is incomplete: dataset_info.json is there "
                f"but {len(missing)} data file(s) are missing ({', '.join(os.path.basename(m) for m in missing)}), "
                f"e.g. after an interrupted copy or download. Remove {builder.data_dir} and prepare it again "
                "(with internet access, or `manual_dir` / --manual_dir pointing at the official archive), or "
                "pass `data_dir` / --data_dir pointing at a complete copy."
            )
        return builder

    config_kwargs = {}
    if manual_dir is not None:
        manual_dir = os.path.expanduser(os.fspath(manual_dir))
        archive = os.path.join(manual_dir, _archive_name(name))
        if not os.path.isfile(archive):
            raise DataNotFoundError(
                _missing_message(name, data_dir, manual_dir, f"no prepared dataset, and no {archive}.")
            )
        # The archive is there: no network needed (tfds finds it by its registered file name).
        config_kwargs["manual_dir"] = manual_dir
    elif not download:
        raise DataNotFoundError(
            _missing_message(name, data_dir, manual_dir, "no prepared dataset and download=False.")
        )
    else:
        problem = _internet_reachable(_ARCHIVES[name])
        if problem is not None:
            raise DataNotFoundError(
                _missing_message(name, data_dir, manual_dir, f"no prepared dataset, and download failed ({problem}).")
            )
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(**config_kwargs))
    except DataNotFoundError:
        raise
    except Exception as e:
        if "checksum" in str(e).lower():
            raise DataNotFoundError(
                _missing_message(
                    name, data_dir, manual_dir,
                    f"the archive does not match the official release ({type(e).__name__}: {e}).",
                )
            ) from e
        network = (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError)
        if isinstance(e, network) or type(e).__module__.startswith(("requests", "urllib3")):
            raise DataNotFoundError(
                _missing_message(name, data_dir, manual_dir, f"download failed ({type(e).__name__}: {e}).")
            ) from e
        raise
    return builder


# --------------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------------


def load_cifar(
    name: str = "cifar100",
    split: str = "train",
    *,
    batch_size: int = 64,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    manual_dir: Optional[Union[str, os.PathLike]] = None,
    download: bool = True,
    augment: Optional[bool] = None,
    shuffle: Optional[bool] = None,
    seed: Optional[int] = None,
    num_examples: Optional[int] = None,
    drop_remainder: bool = False,
    cache: Union[bool, str] = True,
) -> tf.data.Dataset:
    """Builds a batched, prefetched CIFAR-10 / CIFAR-100 input pipeline.

    Images are decoded once and cached as uint8; the train split is then shuffled over the whole split,
    batched, augmented (4-pixel zero pad in pixel space, random 32x32 crop, random horizontal flip) and
    normalized with `NORMALIZATION[name]`; the test split is only normalized. Given `seed`, the pipeline
    is deterministic: two pipelines built alike yield identical batches, and each new pass (epoch) over
    one pipeline draws a new (deterministic) order and new augmentations.

    Arguments:
        name: `"cifar10"` or `"cifar100"`.
        split: `"train"`, `"test"`, or a tfds slice of one of them (`"train[:1000]"`, `"train[-5000:]"`).
        batch_size: The GLOBAL batch size (a `tf.distribute` strategy splits each batch across replicas).
        data_dir: tfds data dir; `None` for tfds' default (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        manual_dir: A folder holding the official `cifar-10-binary.tar.gz` / `cifar-100-binary.tar.gz`,
            used (after tfds' SHA-256 check) to prepare the dataset into `data_dir` without a network.
        download: Whether tfds may download the archive when the dataset is not prepared.
        augment: Random crop + flip; default True for the train split, False for test.
        shuffle: Shuffle over the whole (sliced) split; default True for train, False for test.
        seed: Seed for shuffling and augmentation; `None` draws fresh randomness (or follows
            `tf.random.set_seed`).
        num_examples: Keep only the first `num_examples` examples of the split (after slicing).
        drop_remainder: Drop the last incomplete batch (pass True under multi-replica strategies).
        cache: True caches the decoded uint8 images in memory; a string caches to that file path;
            False re-reads and re-decodes every epoch.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: images float32 `(B, 32, 32, 3)` normalized, labels
        int32 `(B,)` (the fine labels for CIFAR-100).

    Raises:
        ValueError: for an unknown name, an invalid split, a non-positive `batch_size` or `num_examples`.
        DataNotFoundError: when the data is not prepared in `data_dir` and can be neither prepared from
            `manual_dir` nor downloaded.

    Example:

    ```python
    train = tfadakd.data.load_cifar("cifar100", "train", batch_size=64, seed=0)
    test = tfadakd.data.load_cifar("cifar100", "test", batch_size=256)
    model.fit(train, validation_data=test, epochs=240)
    ```
    """
    _check_name(name)
    base_split, start, stop = _split_info(split)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if num_examples is not None and (
        isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or num_examples <= 0
    ):
        raise ValueError(f"num_examples must be a positive integer or None, got {num_examples!r}.")
    is_train = base_split == "train"
    do_augment = is_train if augment is None else bool(augment)
    do_shuffle = is_train if shuffle is None else bool(shuffle)

    count = stop - start
    if num_examples is not None:
        count = min(count, int(num_examples))
    # Read only what is needed: an absolute slice of the base split.
    read_split = f"{base_split}[{start}:{start + count}]"

    builder = _prepared_builder(name, data_dir, manual_dir, download)
    ds = builder.as_dataset(split=read_split, as_supervised=True, shuffle_files=False)
    ds = ds.map(lambda image, label: (image, tf.cast(label, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache(cache) if isinstance(cache, str) else ds.cache()
    if do_shuffle:
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)

    scale, offset = _scale_offset(name)

    def to_float(images):
        images = tf.cast(images, tf.float32) * scale + offset
        return tf.ensure_shape(images, (None,) + IMAGE_SHAPE)

    if do_augment:
        # One stateless seed per batch, from a seeded stream that re-randomizes on every pass.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (to_float(_augment_fn(batch[0], s)), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        ds = ds.map(
            lambda images, labels: (to_float(images), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


_augment_fn = augment  # `load_cifar`'s `augment` argument shadows the function inside it.


def _crop_and_flip(images, offsets, flips, padding):
    """Zero-pads a (B, H, W, C) batch by `padding`, crops (H, W) windows at `offsets` (B, 2) and flips
    the images where `flips` (B,) is True."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    rows = offsets[:, 0:1] + tf.range(height)[tf.newaxis]  # (B, H) source rows in the padded image
    cols = offsets[:, 1:2] + tf.range(width)[tf.newaxis]  # (B, W) source columns
    cols = tf.where(flips[:, tf.newaxis], tf.reverse(cols, axis=[1]), cols)  # a flip reads columns backwards
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def index_augmentation(seed, num_examples, padding: int = 4):
    """The CIFAR augmentation of `augment` for named epochs: returns `fn(images, indices)` that crops and
    flips example `indices[k]` as a function of `(seed, indices[k])` only, with row `indices[k]` of
    tables of `num_examples` offsets and flips drawn once from `seed`. What `cifar_epochs` applies,
    with a seed per epoch.

    Arguments:
        seed: shape `(2,)` int32 / int64 stateless seed.
        num_examples: the size of the tables (the number of examples of the split).
        padding: pixels of zero padding on each side (4 for CIFAR).

    Example:

    >>> augment_batch = index_augmentation(seed=[0, 1], num_examples=10)
    >>> augment_batch(tf.zeros((2, 32, 32, 3), tf.uint8), tf.constant([7, 3])).shape
    TensorShape([2, 32, 32, 3])
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offsets = tf.random.stateless_uniform(
        [num_examples, 2], seed=crop_seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32)
    flips = tf.random.stateless_uniform([num_examples], seed=flip_seed) < 0.5

    def augment_batch(images, indices):
        indices = tf.cast(indices, tf.int32)
        return _crop_and_flip(images, tf.gather(offsets, indices), tf.gather(flips, indices), padding)

    return augment_batch


def cifar_epochs(
    name: str = "cifar100",
    split: str = "train",
    *,
    batch_size: int = 64,
    seed: int = 0,
    data_seed: Optional[int] = None,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    manual_dir: Optional[Union[str, os.PathLike]] = None,
    download: bool = True,
    num_examples: Optional[int] = None,
    drop_remainder: bool = False,
    augment: bool = True,
):
    """The CIFAR training pipeline as an `EpochPipeline`: epoch `e` is the same batches in every process.

    Same preprocessing as `load_cifar`'s train split (4-pixel zero pad, random crop, flip, then
    normalization), but each example is augmented with a stateless seed `(data_seed, e, index)` and
    each epoch is shuffled with a seed from `(seed, e)`. Runs with the same `data_seed` see the same
    augmented view of every example at every epoch, whatever their `seed` (the order's): what a
    teacher-logit cache (`tfadakd.teacher_cache`) shares between the runs of a sweep.

    Arguments:
        name, split, data_dir, manual_dir, download, num_examples, drop_remainder: as in `load_cifar`.
        batch_size: the global batch size.
        seed: seed of the order of each epoch.
        data_seed: seed of the augmentation (default: `seed`).
        augment: random crop + flip (True, the training recipe) or none.

    Returns:
        A `tfadakd.data.EpochPipeline` (`.dataset(start, end)`, `.steps_per_epoch`).

    Example:

    ```python
    pipeline = cifar_epochs("cifar100", "train[:45000]", batch_size=64, seed=1, data_seed=0)
    model.fit(pipeline.dataset(0, 30), epochs=30, steps_per_epoch=pipeline.steps_per_epoch)
    ```
    """
    from tfadakd.data.epochs import EpochPipeline

    _check_name(name)
    base_split, start, stop = _split_info(split)
    if num_examples is not None and (
        isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or num_examples <= 0
    ):
        raise ValueError(f"num_examples must be a positive integer or None, got {num_examples!r}.")
    count = stop - start if num_examples is None else min(stop - start, int(num_examples))
    if count <= 0:
        raise ValueError(f"The training data is empty ({name} {split!r} holds no example): nothing to train on.")
    builder = _prepared_builder(name, data_dir, manual_dir, download)
    examples = builder.as_dataset(split=f"{base_split}[{start}:{start + count}]", as_supervised=True,
                                  shuffle_files=False)
    examples = examples.map(lambda image, label: (image, tf.cast(label, tf.int32)),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    scale, offset = _scale_offset(name)

    def to_float(images):
        return tf.ensure_shape(tf.cast(images, tf.float32) * scale + offset, (None,) + IMAGE_SHAPE)

    return EpochPipeline(
        examples, count, batch_size, preprocess=to_float, seed=seed,
        augment=(lambda key: index_augmentation(key, count)) if augment else None,
        data_seed=data_seed, drop_remainder=drop_remainder,
        description={"dataset": name, "split": f"{base_split}[{start}:{start + count}]", "version": str(builder.version)},
    )


def calibration_images(
    name: str = "cifar100",
    n: int = 300,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    *,
    manual_dir: Optional[Union[str, os.PathLike]] = None,
    download: bool = True,
) -> np.ndarray:
    """Returns `n` preprocessed training images for int8 post-training quantization (TFLite).

    The first `n` images of the train split (CIFAR's train order is already class-mixed), normalized
    exactly like the training inputs but not augmented.

    Arguments:
        name: `"cifar10"` or `"cifar100"`.
        n: Number of images (at most 50,000).
        data_dir: tfds data dir, as in `load_cifar`.
        manual_dir: Folder with the official archive, as in `load_cifar`.
        download: Whether tfds may download the data, as in `load_cifar`.

    Returns:
        A float32 NumPy array of shape `(n, 32, 32, 3)`.

    Raises:
        ValueError: for an unknown name or a non-positive `n`.
        DataNotFoundError: when the data cannot be found, as in `load_cifar`.

    Example:

    ```python
    images = calibration_images("cifar100", n=300)
    converter.representative_dataset = lambda: ([x[None]] for x in images)
    ```
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    ds = load_cifar(
        name, "train", batch_size=int(n), data_dir=data_dir, manual_dir=manual_dir, download=download,
        augment=False, shuffle=False, num_examples=int(n), cache=False,
    )
    images, _ = next(iter(ds))
    return images.numpy()
