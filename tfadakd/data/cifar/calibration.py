"""Calibration images for int8 post-training quantization: CIFAR training images, preprocessed exactly like
the training inputs but not augmented (what `tfadakd.export.to_tflite(..., "int8")` calibrates on).

Example:

```python
from tfadakd import export
from tfadakd.data import cifar

images = cifar.calibration_images("cifar100", n=300)       # float32, (300, 32, 32, 3)
export.to_tflite(model, "student_int8.tflite", "int8", representative_data=images)
```
"""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np

from tfadakd.data.cifar.pipelines import load_cifar


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
