"""The CIFAR-10 / CIFAR-100 input pipelines: `load_cifar` (a `tf.data.Dataset`, new order and
augmentations each pass) and `cifar_epochs` (an `EpochPipeline`: epoch `e` is the same batches in every
process and every run with the same data seed).

Order of operations (train split): read + decode once (tfds), cache the decoded uint8 images, shuffle
over the whole split, batch, augment each batch (random crop offsets and flips drawn per image), normalize,
prefetch. Randomness comes from `seed` only (stateless random ops fed by a seeded
`tf.data.Dataset.random`), so two pipelines built with the same seed yield identical batches, epoch after
epoch, while successive epochs of one pipeline differ.

Example:

```python
from tfadakd.data import cifar

train = cifar.load_cifar("cifar100", "train", batch_size=64, seed=0)
pipeline = cifar.cifar_epochs("cifar100", "train[:45000]", batch_size=64, seed=1, data_seed=0)
```
"""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import tensorflow as tf

from tfadakd.data.cifar.metadata import IMAGE_SHAPE, check_name, split_info
from tfadakd.data.cifar.prepare import prepared_builder
from tfadakd.data.cifar.preprocessing import augment as _augment_fn  # `load_cifar`'s `augment` argument shadows it
from tfadakd.data.cifar.preprocessing import index_augmentation, scale_offset


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
    check_name(name)
    base_split, start, stop = split_info(split)
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

    builder = prepared_builder(name, data_dir, manual_dir, download)
    ds = builder.as_dataset(split=read_split, as_supervised=True, shuffle_files=False)
    ds = ds.map(lambda image, label: (image, tf.cast(label, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache(cache) if isinstance(cache, str) else ds.cache()
    if do_shuffle:
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)

    scale, offset = scale_offset(name)

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

    check_name(name)
    base_split, start, stop = split_info(split)
    if num_examples is not None and (
        isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or num_examples <= 0
    ):
        raise ValueError(f"num_examples must be a positive integer or None, got {num_examples!r}.")
    count = stop - start if num_examples is None else min(stop - start, int(num_examples))
    if count <= 0:
        raise ValueError(f"The training data is empty ({name} {split!r} holds no example): nothing to train on.")
    builder = prepared_builder(name, data_dir, manual_dir, download)
    examples = builder.as_dataset(split=f"{base_split}[{start}:{start + count}]", as_supervised=True,
                                  shuffle_files=False)
    examples = examples.map(lambda image, label: (image, tf.cast(label, tf.int32)),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    scale, offset = scale_offset(name)

    def to_float(images):
        return tf.ensure_shape(tf.cast(images, tf.float32) * scale + offset, (None,) + IMAGE_SHAPE)

    return EpochPipeline(
        examples, count, batch_size, preprocess=to_float, seed=seed,
        augment=(lambda key: index_augmentation(key, count)) if augment else None,
        data_seed=data_seed, drop_remainder=drop_remainder,
        description={"dataset": name, "split": f"{base_split}[{start}:{start + count}]", "version": str(builder.version)},
    )
