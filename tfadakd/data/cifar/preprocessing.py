"""The CIFAR preprocessing: normalization with the dataset's channel statistics, and the training
augmentation (4-pixel zero padding in pixel space, random crop, random horizontal flip).

What torchvision's `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `ToTensor()`,
`Normalize(mean, std)` does (`docs/method.md` section 5): augment the uint8 images, then normalize.
The augmentation is stateless: `augment` draws offsets and flips from a seed per batch,
`index_augmentation` from a seed per epoch and each example's index (what `cifar_epochs` uses).

Example:

```python
from tfadakd.data import cifar

batch = tf.zeros((8, 32, 32, 3), tf.uint8)
x = cifar.normalize(cifar.augment(batch, seed=[1, 2]), "cifar100")    # float32, (8, 32, 32, 3)
pixels = cifar.denormalize(x, "cifar100")                              # back in [0, 255]
```
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadakd.data.cifar.metadata import NORMALIZATION, check_name


def scale_offset(name):
    """`(scale, offset)`, float32 per channel, such that `pixels * scale + offset` is `normalize(pixels, name)`."""
    mean, std = NORMALIZATION[check_name(name)]
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
    scale, offset = scale_offset(name)
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
    mean, std = NORMALIZATION[check_name(name)]
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
