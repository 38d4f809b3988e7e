"""Running a `.tflite` classifier: the interpreter, predictions as float logits, accuracy and latency.

The files are run with the LiteRT interpreter (`ai_edge_litert.interpreter.Interpreter`) when the
`ai-edge-litert` package is installed, and with the deprecated `tf.lite.Interpreter` otherwise: the two
have the same API. int8 files are fed and read through their tensors' `(scale, zero_point)`, so the
outputs compare directly with the Keras model's logits.

Example:

```python
from tfadakd import export

logits = export.predict_tflite("student_int8.tflite", images)        # float32, (N, num_classes)
export.evaluate_tflite("student_int8.tflite", test_dataset, batch_size=1)
# {'top1': 0.71, 'top5': 0.92, 'latency_ms_per_image': 0.41, 'interpreter': 'ai_edge_litert', ...}
```
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

from tfadakd.export.modes import PathLike


def interpreter_backend() -> str:
    """Returns `"ai_edge_litert"` if the LiteRT package is importable, else `"tf.lite"`."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError:
        return "tf.lite"
    return "ai_edge_litert"


def load_interpreter(path: PathLike, num_threads: Optional[int] = None):
    """Loads a `.tflite` file into the LiteRT interpreter, or `tf.lite.Interpreter` without it.

    Arguments:
        path: A `.tflite` file (or a `TFLiteExport`).
        num_threads: Interpreter threads; `None` keeps the runtime's default.

    Returns:
        An interpreter (not yet allocated).
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=os.fspath(path), num_threads=num_threads)


class _Runner:
    """Runs a single-input, single-output `.tflite` file on float batches, returning float outputs."""

    def __init__(self, path: PathLike, num_threads: Optional[int] = None):
        self.interpreter = load_interpreter(path, num_threads)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"Expected a model with one input and one output; {os.fspath(path)!r} has "
                f"{len(inputs)} input(s) and {len(outputs)} output(s)."
            )
        self.input, self.output = inputs[0], outputs[0]
        signature = self.input.get("shape_signature", self.input["shape"])
        self.fixed_batch = None if int(signature[0]) == -1 else int(signature[0])
        self.feature_shape = tuple(int(d) for d in self.input["shape"][1:])
        self.interpreter.allocate_tensors()
        self._batch = int(self.input["shape"][0])

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self.input["index"], [batch, *self.feature_shape])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def _quantize(self, images: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self.input["dtype"])
        if not np.issubdtype(dtype, np.integer):
            return images.astype(dtype, copy=False)
        scale, zero_point = self.input["quantization"]
        if scale == 0:
            return images.astype(dtype)
        info = np.iinfo(dtype)
        q = np.round(images.astype(np.float32) / scale) + zero_point
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize(self, outputs: np.ndarray) -> np.ndarray:
        if not np.issubdtype(outputs.dtype, np.integer):
            return outputs.astype(np.float32, copy=False)
        scale, zero_point = self.output["quantization"]
        if scale == 0:
            return outputs.astype(np.float32)
        return (outputs.astype(np.float32) - zero_point) * np.float32(scale)

    def run(self, images: np.ndarray, batch_size: Optional[int] = None) -> Tuple[np.ndarray, float]:
        """Returns (float outputs, seconds spent in `invoke`)."""
        images = np.asarray(images)
        if tuple(images.shape[1:]) != self.feature_shape:
            raise ValueError(
                f"images have shape {images.shape}; the model expects (N,) + {self.feature_shape}."
            )
        n = len(images)
        step = self.fixed_batch or batch_size or max(n, 1)
        results, seconds = [], 0.0
        for start in range(0, n, step):
            chunk = self._quantize(images[start : start + step])
            rows = len(chunk)
            if self.fixed_batch is not None and rows < self.fixed_batch:
                padding = np.zeros((self.fixed_batch - rows,) + chunk.shape[1:], chunk.dtype)
                chunk = np.concatenate([chunk, padding])
            else:
                self._resize(len(chunk))
            self.interpreter.set_tensor(self.input["index"], chunk)
            begin = time.perf_counter()
            self.interpreter.invoke()
            seconds += time.perf_counter() - begin
            out = self.interpreter.get_tensor(self.output["index"])[:rows]
            results.append(self._dequantize(out))
        if not results:
            shape = (0,) + tuple(int(d) for d in self.output["shape"][1:])
            return np.zeros(shape, np.float32), 0.0
        return np.concatenate(results, axis=0), seconds


def predict_tflite(
    path: PathLike,
    images,
    *,
    batch_size: Optional[int] = 64,
    num_threads: Optional[int] = None,
) -> np.ndarray:
    """Runs a `.tflite` classifier on a NumPy batch and returns float logits.

    Float images are quantized with the input tensor's `(scale, zero_point)` for int8 files, and
    int8 outputs dequantized with the output tensor's, so the result compares directly with the
    Keras model's logits.

    Example:

    ```python
    logits = predict_tflite("student_int8.tflite", images)  # float32, (N, num_classes)
    agreement = np.mean(logits.argmax(-1) == model.predict(images).argmax(-1))
    ```

    Arguments:
        path: A `.tflite` file (or a `TFLiteExport`).
        images: Preprocessed float inputs, shape `(N, H, W, C)`.
        batch_size: Images per `invoke` for files with a dynamic batch (files with a fixed batch
            run at that batch, the last one zero-padded). `None` runs all N at once.
        num_threads: Interpreter threads; `None` keeps the runtime's default.

    Returns:
        A float32 NumPy array of shape `(N, num_classes)`.

    Raises:
        ValueError: if the images' shape does not match the file's input, or the file does not
            have one input and one output.
    """
    outputs, _ = _Runner(path, num_threads).run(np.asarray(images), batch_size)
    return outputs


def evaluate_tflite(
    path: PathLike,
    dataset,
    max_examples: Optional[int] = None,
    *,
    batch_size: Optional[int] = None,
    num_threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Measures a `.tflite` classifier's accuracy and latency through the interpreter.

    Example:

    ```python
    test = tfadakd.data.load_cifar("cifar100", split="test", batch_size=100)
    evaluate_tflite("student_int8.tflite", test)
    # {'top1': 0.71, 'top5': 0.92, 'num_examples': 10000, 'file_size_bytes': 96512,
    #  'latency_ms_per_image': 0.41, 'batch_size': 100, ...}
    ```

    Arguments:
        dataset: A `tf.data.Dataset` (or any iterable) of batched `(images, labels)`, images
            preprocessed as in training, labels as class indices (or one-hot rows).
        max_examples: Stop after this many examples (the last batch is cut); `None` for all.
        batch_size: Images per `invoke`. `None` feeds the dataset's batches as they come (files
            with a fixed batch run at that batch); `1` measures single-image latency.
        num_threads: Interpreter threads; `None` keeps the runtime's default.

    Returns:
        A dict with `top1` (and `top5` when there are at least 5 classes) as fractions,
        `num_examples`, `file_size_bytes`, `latency_ms_per_image` (time in `invoke` divided by
        the number of images, so amortized over the batch when `batch_size` > 1), `batch_size`,
        `input_dtype` and `interpreter` (`"ai_edge_litert"` or `"tf.lite"`).

    Raises:
        ValueError: if `max_examples` is not positive, the dataset is empty, or its images do not
            match the file's input.
    """
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be None or a positive int, got {max_examples!r}.")
    runner = _Runner(path, num_threads)
    if isinstance(dataset, tuple) and len(dataset) == 2:
        dataset = [dataset]
    elif _is_tf_dataset(dataset):
        dataset = dataset.as_numpy_iterator()
    correct1 = correct5 = seen = 0
    seconds = 0.0
    num_classes = feed_batch = None
    for batch in dataset:
        images, labels = np.asarray(batch[0]), np.asarray(batch[1])
        if max_examples is not None:
            images, labels = images[: max_examples - seen], labels[: max_examples - seen]
        if labels.ndim == 2:
            labels = labels[:, 0] if labels.shape[1] == 1 else labels.argmax(-1)
        labels = labels.astype(np.int64, copy=False)
        if feed_batch is None:
            feed_batch = runner.fixed_batch or batch_size or len(images)
        logits, elapsed = runner.run(images, batch_size)
        seconds += elapsed
        num_classes = logits.shape[-1]
        ranked = np.argsort(-logits, axis=-1, kind="stable")
        correct1 += int(np.sum(ranked[:, 0] == labels))
        correct5 += int(np.sum(np.any(ranked[:, :5] == labels[:, None], axis=-1)))
        seen += len(labels)
        if max_examples is not None and seen >= max_examples:
            break
    if seen == 0:
        raise ValueError("evaluate_tflite got an empty dataset.")
    result = {
        "top1": correct1 / seen,
        "num_examples": seen,
        "file_size_bytes": os.path.getsize(os.fspath(path)),
        "latency_ms_per_image": 1000.0 * seconds / seen,
        "batch_size": feed_batch,
        "input_dtype": np.dtype(runner.input["dtype"]).name,
        "interpreter": interpreter_backend(),
    }
    if num_classes is not None and num_classes >= 5:
        result["top5"] = correct5 / seen
    return result


def _is_tf_dataset(obj) -> bool:
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, tf.data.Dataset)
