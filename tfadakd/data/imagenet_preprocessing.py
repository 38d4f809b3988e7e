"""ImageNet-style preprocessing of one image: the training view and the evaluation view.

What torchvision's ImageNet recipe does, with stateless random ops so that a view is a pure function
of its seed:

- training: `RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))` then `RandomHorizontalFlip()`;
- evaluation: `Resize(int(size / 0.875))` (the shorter side) then `CenterCrop(size)` (256 / 224);
- normalization: `(pixels / 255 - mean) / std` with the ImageNet channel statistics.

Images are `(H, W, 3)` tensors in pixel units (uint8 as decoded, or float); views are float32 in pixel
units; `normalize` maps them to the model's input. Resizing is bilinear with antialiasing (like PIL).

Example:

```python
image = tf.io.decode_jpeg(tf.io.read_file("cat.jpg"), channels=3)
x = normalize(train_view(image, seed=[0, 7], size=224))      # (224, 224, 3) float32
y = normalize(eval_view(image, size=224))                      # resize to 256, center crop 224
```
"""

import math

import numpy as np
import tensorflow as tf

#: ImageNet channel mean and std of images in [0, 1] (torchvision's values).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Evaluation crops the central `CROP_FRACTION` of the resized image (224 of 256).
CROP_FRACTION = 0.875
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def resize_size(size: int, crop_fraction: float = CROP_FRACTION) -> int:
    """The shorter side an evaluation image is resized to before its center crop.

    Example:

    >>> resize_size(224), resize_size(64)
    (256, 73)
    """
    return int(size / crop_fraction)


def _resize(image, height, width):
    return tf.image.resize(tf.cast(image, tf.float32), tf.stack([height, width]), method="bilinear", antialias=True)


def random_resized_crop_window(seed, height, width, scale=SCALE, ratio=RATIO, attempts: int = 10):
    """The window `(top, left, crop_height, crop_width)` of a random resized crop, as int32 scalars.

    torchvision's rule: up to `attempts` draws of an area fraction uniform in `scale` and a log-uniform
    aspect ratio in `ratio`; the first window that fits is placed uniformly at random; if none fits,
    the central crop with the ratio clamped to `ratio`. All draws come from the stateless `seed`.

    Arguments:
        seed: shape `(2,)` int32 / int64 stateless seed.
        height, width: the image's size (int or scalar tensor).
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the crop's width / height.
        attempts: draws before the fallback.

    Example:

    >>> top, left, h, w = random_resized_crop_window([0, 1], 100, 80)
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    area_seed, ratio_seed, place_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    target = h * w * tf.random.stateless_uniform([attempts], area_seed, scale[0], scale[1])
    log_ratio = tf.random.stateless_uniform([attempts], ratio_seed, math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    crop_w = tf.round(tf.sqrt(target * aspect))
    crop_h = tf.round(tf.sqrt(target / aspect))
    fits = (crop_w > 0) & (crop_h > 0) & (crop_w <= w) & (crop_h <= h)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)  # the first that fits (0 if none)

    image_ratio = w / h
    fallback_w = tf.where(image_ratio < ratio[0], w, tf.where(image_ratio > ratio[1], tf.round(h * ratio[1]), w))
    fallback_h = tf.where(image_ratio < ratio[0], tf.round(w / ratio[0]), h)
    found = tf.reduce_any(fits)
    crop_h = tf.cast(tf.where(found, crop_h[first], fallback_h), tf.int32)
    crop_w = tf.cast(tf.where(found, crop_w[first], fallback_w), tf.int32)
    spare = tf.stack([tf.cast(height, tf.int32) - crop_h, tf.cast(width, tf.int32) - crop_w])
    place = tf.random.stateless_uniform([2], place_seed)  # uniform integer in [0, spare]
    offsets = tf.minimum(tf.cast(place * tf.cast(spare + 1, tf.float32), tf.int32), spare)
    offsets = tf.where(found, offsets, spare // 2)
    return offsets[0], offsets[1], crop_h, crop_w


def train_view(image, seed, size: int, scale=SCALE, ratio=RATIO):
    """Random resized crop to `size` x `size` plus a random horizontal flip, from the stateless `seed`.

    Arguments:
        image: `(H, W, C)`, pixel units, any numeric dtype.
        seed: shape `(2,)` stateless seed: the same seed and image give the same view.
        size: output height and width.
        scale, ratio: as in `random_resized_crop_window`.

    Returns:
        float32 `(size, size, C)` in pixel units.

    Example:

    >>> train_view(tf.zeros((50, 70, 3), tf.uint8), seed=[1, 2], size=32).shape
    TensorShape([32, 32, 3])
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(image)
    top, left, crop_h, crop_w = random_resized_crop_window(crop_seed, shape[0], shape[1], scale, ratio)
    crop = image[top:top + crop_h, left:left + crop_w]
    view = _resize(crop, size, size)
    flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    view = tf.cond(flip, lambda: tf.reverse(view, axis=[1]), lambda: view)
    return tf.ensure_shape(view, (size, size, image.shape[-1]))


def eval_view(image, size: int, crop_fraction: float = CROP_FRACTION):
    """Resize the shorter side to `int(size / crop_fraction)` (the longer side in proportion, truncated),
    then crop the central `size` x `size` window (top-left offset `(H' - size) // 2`).

    Arguments:
        image: `(H, W, C)`, pixel units, any numeric dtype.
        size: output height and width.
        crop_fraction: the evaluation crop's share of the resized shorter side.

    Returns:
        float32 `(size, size, C)` in pixel units.

    Example:

    >>> eval_view(tf.zeros((300, 400, 3), tf.uint8), size=224).shape    # resized to 256 x 341
    TensorShape([224, 224, 3])
    """
    target = resize_size(size, crop_fraction)
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    short = tf.minimum(height, width)
    new_h = tf.cast(tf.floor(target * height / short), tf.int32)
    new_w = tf.cast(tf.floor(target * width / short), tf.int32)
    new_h = tf.where(height <= width, target, new_h)
    new_w = tf.where(width <= height, target, new_w)
    resized = _resize(image, new_h, new_w)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return tf.ensure_shape(resized[top:top + size, left:left + size], (size, size, image.shape[-1]))


def normalize(images, mean=MEAN, std=STD):
    """`(images / 255 - mean) / std` per channel, in float32 (images in pixel units, channels last).

    Example:

    >>> float(normalize(tf.fill((1, 1, 3), 255.0))[0, 0, 0])   # (1 - 0.485) / 0.229
    2.2489...
    """
    scale = (1.0 / (255.0 * np.asarray(std, np.float64))).astype(np.float32)
    offset = (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)
    return tf.cast(images, tf.float32) * scale + offset
