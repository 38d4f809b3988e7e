"""The representative data of an int8 export: whatever the caller passes, gathered into one checked array.

`to_tflite(..., "int8", representative_data=...)` accepts a NumPy array or tensor, a `tf.data.Dataset` or
any iterable of images or of `(images, labels)`, batched or not, or a callable returning one;
`calibration_array` turns each into a single array of the model's input dtype and shape, refusing raw
(integer) pixels, mis-shaped images and empty data with a message that says what to pass.

Example:

```python
from tfadakd.export import calibration

spec = tf.TensorSpec((None, 32, 32, 3), tf.float32)
images = calibration.calibration_array(train_dataset, spec, max_samples=300)   # (300, 32, 32, 3) float32
```
"""

from __future__ import annotations

from typing import Iterable, List

import numpy as np


def calibration_array(data, spec, max_samples: int) -> np.ndarray:
    """Collects up to `max_samples` representative inputs into one array of `spec`'s dtype."""
    if not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_calibration_samples must be a positive int, got {max_samples!r}.")
    feature_shape = tuple(spec.shape)[1:]
    expected = f"(N,) + {feature_shape}"
    dtype = spec.dtype.as_numpy_dtype
    chunks: List[np.ndarray] = []
    count = 0
    for item in _iterate_data(data):
        array = _first_input(item)
        if array.shape == feature_shape:
            array = array[None]
        if tuple(array.shape[1:]) != feature_shape:
            raise ValueError(
                f"representative_data items have shape {tuple(array.shape)}; the model expects "
                f"images of shape {feature_shape} (batched: {expected})."
            )
        if np.issubdtype(array.dtype, np.integer) and np.issubdtype(dtype, np.floating):
            raise ValueError(
                f"representative_data has integer dtype {array.dtype} but the model takes "
                f"{np.dtype(dtype).name}: it looks like raw pixels. Pass images preprocessed "
                f"exactly as the model sees them (e.g. tfadakd.data.calibration_images)."
            )
        array = array[: max_samples - count].astype(dtype, copy=False)
        chunks.append(array)
        count += len(array)
        if count >= max_samples:
            break
    if count == 0:
        raise ValueError(
            "representative_data is empty: pass a few hundred real, preprocessed input images."
        )
    return np.concatenate(chunks, axis=0)


def _iterate_data(data) -> Iterable:
    import tensorflow as tf

    if callable(data) and not isinstance(data, tf.data.Dataset):
        data = data()
    if isinstance(data, (np.ndarray, tf.Tensor)) or hasattr(data, "__array__"):
        yield np.asarray(data)
        return
    if isinstance(data, tf.data.Dataset):
        data = data.as_numpy_iterator()
    for item in data:
        yield item


def _first_input(item) -> np.ndarray:
    """The model input of one data element: `x`, `(x, y)`, `(x, y, w)` or `[x]`."""
    while isinstance(item, (tuple, list)):
        if not item:
            raise ValueError("representative_data yielded an empty tuple or list.")
        item = item[0]
    if isinstance(item, dict):
        raise ValueError(
            "representative_data yielded a dict; pass images or (images, labels) instead."
        )
    return np.asarray(item)
