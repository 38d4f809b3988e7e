"""Export to TFLite (LiteRT) and SavedModel, operator checks, and evaluation through the interpreter.

The path from a trained Keras model to an edge file:

```python
import tfadakd
from tfadakd import export

model = tfadakd.models.build("resnet8", num_classes=10)
...  # train or distill
calibration = tfadakd.data.calibration_images("cifar10", n=300)
result = export.to_tflite(model, "resnet8_int8.tflite", "int8", representative_data=calibration)
export.check_builtin_only(result)  # raises if a Flex (SELECT_TF_OPS) op slipped in
test = tfadakd.data.load_cifar("cifar10", split="test", batch_size=100)
print(export.evaluate_tflite(result, test))  # {"top1": ..., "top5": ..., "latency_ms_per_image": ...}
```

Conversion goes through a temporary SavedModel written by Keras' own `model.export(...,
format="tf_saved_model")` and `tf.lite.TFLiteConverter.from_saved_model`, restricted to builtin
TFLite ops (no Flex). BatchNormalization folds into the convolutions. (Converting a `tf.function`
with `from_concrete_functions(..., trackable_obj=model)` keeps Keras 3 variables as resource
variables whose calibration fails, hence the SavedModel route.)

The files are run with the LiteRT interpreter (`ai_edge_litert.interpreter.Interpreter`) when the
`ai-edge-litert` package is installed, and with the deprecated `tf.lite.Interpreter` otherwise: the
two have the same API.

The library never reads flags: `apps/` and `benchmarks/` parse them and call these functions.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import tempfile
import time
import warnings
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from tfadakd import files

PathLike = Union[str, "os.PathLike[str]"]

QUANTIZATION_MODES = ("none", "float16", "dynamic", "int8")
"""Valid values of `to_tflite(..., quantization=...)`:

- `"none"`: float32 weights and activations.
- `"float16"`: weights stored as float16 (about half the size), dequantized to float32 at load or
  run time; float32 input and output.
- `"dynamic"`: dynamic-range quantization: int8 weights, activations quantized on the fly by the
  kernels that support it; float32 input and output; no calibration data.
- `"int8"`: full integer quantization calibrated on representative data: int8 weights and
  activations, builtin int8 kernels only, int8 input and output tensors (quantize the input and
  dequantize the output with each tensor's `(scale, zero_point)`; `predict_tflite` does it).
"""

DEFAULT_MAX_CALIBRATION_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """What `to_tflite` wrote. Path-like: pass it wherever a path is expected.

    Attributes:
        path: The `.tflite` file.
        quantization: One of `QUANTIZATION_MODES`.
        size_bytes: The file's size.
        batch_size: The exported batch dimension (`None` for dynamic).
        calibration_samples: Number of representative samples used (`int8` only, else 0).
    """

    path: str
    quantization: str
    size_bytes: int
    batch_size: Optional[int] = None
    calibration_samples: int = 0

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path


# --------------------------------------------------------------------------------------------------
# Export.


def to_tflite(
    model,
    path: PathLike,
    quantization: str = "none",
    representative_data=None,
    *,
    batch_size: Optional[int] = None,
    max_calibration_samples: int = DEFAULT_MAX_CALIBRATION_SAMPLES,
) -> TFLiteExport:
    """Converts a single-input Keras model to a `.tflite` file of builtin TFLite ops only.

    The batch dimension is dynamic by default (the file's input has shape signature
    `[-1, H, W, C]` and shape `[1, H, W, C]`): the interpreter runs batch 1 as loaded, and any batch
    after `resize_tensor_input`, which `predict_tflite` and `evaluate_tflite` do. Pass
    `batch_size=1` for a file with a fixed batch of 1, as some delegates and microcontroller
    runtimes want.

    With `"int8"`, every activation range, the output logits' included, is the min / max seen on
    `representative_data`: logits beyond it saturate at the int8 limits (127), so a test image whose
    top logits both exceed the calibrated range gets tied top classes. A few hundred real images
    cover the bulk; more (up to `max_calibration_samples`) widen the ranges a little.

    Example:

    ```python
    to_tflite(model, "student_fp32.tflite")
    to_tflite(model, "student_int8.tflite", "int8",
              representative_data=tfadakd.data.calibration_images("cifar100", n=300))
    ```

    Arguments:
        model: A Keras model with one fixed-shape input (e.g. from `tfadakd.models.build`).
            Subclassed models must define `inputs` (build them on a `keras.Input`).
        path: Where to write the `.tflite` file; parent folders are created.
        quantization: One of `"none"`, `"float16"`, `"dynamic"`, `"int8"` (see
            `QUANTIZATION_MODES`).
        representative_data: Calibration inputs for `"int8"` (ignored with a warning otherwise): a
            few hundred real images, preprocessed exactly as the model sees them in training and
            evaluation. One of: a NumPy array or tensor of shape `(N, H, W, C)`; a `tf.data.Dataset`
            (or any iterable) of images or of `(images, labels)`, batched or not; or a callable
            returning such an iterable, e.g. the converter's usual generator of `[batch]` lists.
        batch_size: `None` (dynamic batch, the default) or a positive int to fix the batch.
        max_calibration_samples: At most this many representative images are used (guards
            against an endless `repeat()`ed dataset).

    Returns:
        A `TFLiteExport` (path-like) with the path, quantization, file size in bytes, batch size
        and number of calibration samples.

    Raises:
        ValueError: if `quantization` is unknown, if `"int8"` is asked without
            `representative_data` or with empty or mis-shaped data, if the model does not have
            exactly one input with fixed non-batch dimensions, or if the converted file contains a
            non-builtin operator (then no file is written).
        OSError: if the file cannot be written (e.g. disk full), naming it; `path` keeps its
            previous content and no partial file is left.
    """
    quantization = _check_quantization(quantization)
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' needs representative_data to calibrate the activation ranges: "
            "pass a few hundred real input images, preprocessed exactly as the model sees them, "
            "as a NumPy array of shape (N, H, W, C), a tf.data.Dataset of images or "
            "(images, labels), or a callable returning an iterator of them; e.g. "
            "representative_data=tfadakd.data.calibration_images('cifar100', n=300). "
            "Use quantization='dynamic' for int8 weights without calibration data."
        )
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (dynamic) or a positive int, got {batch_size!r}.")

    import tensorflow as tf

    spec = _input_spec(model, batch_size)
    calibration = None
    if quantization == "int8":
        calibration = _calibration_array(
            representative_data, spec, max_samples=max_calibration_samples
        )
    elif representative_data is not None:
        warnings.warn(
            f"representative_data is only used by quantization='int8'; it is ignored for "
            f"quantization={quantization!r}.",
            stacklevel=2,
        )

    model = float32_model(model)
    with tempfile.TemporaryDirectory(prefix="tfadakd_export_") as saved_model_dir:
        model.export(
            saved_model_dir, format="tf_saved_model", input_signature=[spec], verbose=False
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        _configure_converter(converter, quantization, calibration)
        flatbuffer = converter.convert()

    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)

    def write_checked(tmp):  # under a temporary name: a full disk or a flex op never leaves a partial .tflite
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
            f.flush()
            os.fsync(f.fileno())
        check_builtin_only(tmp)

    files.atomic_save(write_checked, path)
    return TFLiteExport(
        path=path,
        quantization=quantization,
        size_bytes=os.path.getsize(path),
        batch_size=batch_size,
        calibration_samples=0 if calibration is None else len(calibration),
    )


def to_saved_model(model, path: PathLike, *, batch_size: Optional[int] = None) -> str:
    """Exports an inference-only TensorFlow SavedModel for serving (TF Serving, `tf.saved_model.load`).

    Uses Keras' `model.export(path, format="tf_saved_model")`: the SavedModel has an endpoint
    `serve` and the signature `serving_default`, both computing the model in inference mode
    (BatchNormalization with moving statistics, no dropout). It holds no optimizer and cannot be
    trained further; save a `.keras` file for that.

    Example:

    ```python
    to_saved_model(model, "export/resnet8")
    reloaded = tf.saved_model.load("export/resnet8")
    logits = reloaded.serve(images)
    ```

    Arguments:
        model: A Keras model with one fixed-shape input.
        path: The SavedModel folder to write.
        batch_size: `None` (dynamic batch, the default) or a positive int.

    Returns:
        The SavedModel's path, as a string.

    Raises:
        ValueError: if the model does not have exactly one input with fixed non-batch dimensions.
        OSError: if the SavedModel cannot be written (e.g. disk full); a previous one at `path` is kept.
    """
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (dynamic) or a positive int, got {batch_size!r}.")
    path = os.fspath(path)
    spec = _input_spec(model, batch_size)
    # Written beside its final place, then swapped in: a failed export leaves the previous SavedModel.
    tmp, old = f"{path}.tmp-{os.getpid()}", f"{path}.old-{os.getpid()}"
    try:
        float32_model(model).export(tmp, format="tf_saved_model", input_signature=[spec], verbose=False)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as error:
        raise OSError(error.errno, f"Could not write the SavedModel {path} ({error.strerror or error}); its "
                                   "previous version, if any, is unchanged.") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def float32_model(model):
    """`model` itself if it computes in float32, else a float32 copy with the same weights.

    A model trained under a mixed precision policy (`mixed_bfloat16`, `mixed_float16`) keeps float32
    weights but computes in 16 bits; the TFLite converter cannot translate its 16-bit convolutions.
    Export works on the float32 copy (TFLite's own float16 / int8 modes then quantize it).

    Raises:
        ValueError: for a mixed-precision model that is not Functional or Sequential (it cannot be
            cloned): rebuild it under the float32 policy and copy the weights.
    """
    import keras

    from tfadakd import _compat

    if all(layer.compute_dtype == "float32" for layer in _compat.flatten_layers(model)):
        return model

    def as_float32(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=as_float32)
    except Exception as error:  # subclassed models cannot be cloned
        raise ValueError(
            f"The model {model.name!r} computes in {model.compute_dtype} and cannot be cloned to float32 "
            f"for export ({type(error).__name__}: {error}). Build it again under "
            "keras.mixed_precision.set_global_policy('float32'), copy the weights with "
            "set_weights(model.get_weights()), and export that copy."
        ) from error
    copy.set_weights(model.get_weights())
    return copy


def _check_quantization(quantization) -> str:
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"Unknown quantization {quantization!r}. Valid values: "
            f"{', '.join(repr(m) for m in QUANTIZATION_MODES)}."
        )
    return quantization


def _input_spec(model, batch_size: Optional[int]):
    import tensorflow as tf

    try:
        inputs = list(model.inputs)
    except (AttributeError, TypeError, ValueError):
        inputs = []
    if len(inputs) != 1:
        raise ValueError(
            f"Export supports models with exactly one input; model {getattr(model, 'name', model)!r} "
            f"has {len(inputs) or 'no defined'} input(s). Build it on one keras.Input (Functional "
            f"API), as tfadakd.models.build does."
        )
    tensor = inputs[0]
    shape = tuple(tensor.shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(
            f"Export needs fixed non-batch input dimensions; the model's input has shape {shape}."
        )
    name = _tensor_name(getattr(tensor, "name", None))
    return tf.TensorSpec((batch_size,) + shape[1:], tf.as_dtype(tensor.dtype), name=name)


def _tensor_name(name: Optional[str]) -> str:
    if not name:
        return "inputs"
    name = name.split(":")[0].split("/")[-1]
    cleaned = "".join(c if (c.isalnum() or c in "_.-") else "_" for c in name)
    return cleaned if cleaned and cleaned[0].isalpha() else "inputs"


def _configure_converter(converter, quantization: str, calibration: Optional[np.ndarray]) -> None:
    import tensorflow as tf

    # Builtin ops only: never SELECT_TF_OPS (Flex), which edge runtimes do not ship.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        samples = calibration

        def representative_dataset():
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # "dynamic": Optimize.DEFAULT without a representative dataset is dynamic-range quantization.


def _calibration_array(data, spec, max_samples: int) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# Operators.


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _read_operators(path: PathLike) -> List[Tuple[str, bool]]:
    """(name, is_builtin) of every operator of every subgraph, in file order."""
    schema = _schema()
    with open(os.fspath(path), "rb") as f:
        buffer = f.read()
    if len(buffer) < 8 or buffer[4:8] != b"TFL3":
        raise ValueError(f"{os.fspath(path)!r} is not a TFLite flatbuffer (no 'TFL3' identifier).")
    model = schema.Model.GetRootAs(buffer, 0)
    builtin_names = {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }
    codes = []
    for i in range(model.OperatorCodesLength()):
        opcode = model.OperatorCodes(i)
        code = max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM:
            custom = opcode.CustomCode()
            custom = custom.decode("utf-8") if isinstance(custom, bytes) else str(custom)
            codes.append((custom, False))
        else:
            codes.append((builtin_names.get(code, f"BUILTIN_{code}"), True))
    operators = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            operators.append(codes[subgraph.Operators(o).OpcodeIndex()])
    return operators


def tflite_operators(path: PathLike) -> List[str]:
    """Lists the operator of every node of a `.tflite` file, in execution order.

    Reads the flatbuffer directly, so it works on files that the interpreter cannot load (e.g.
    with Flex ops and no Flex delegate). Builtin operators have their schema names (`"CONV_2D"`,
    `"FULLY_CONNECTED"`, ...); custom operators their custom code (Flex ops start with `"Flex"`,
    e.g. `"FlexMatrixInverse"`).

    Example:

    ```python
    ops = tflite_operators("resnet8_int8.tflite")
    sorted(set(ops))  # ['ADD', 'CONV_2D', 'FULLY_CONNECTED', 'MEAN', ...]
    ```

    Arguments:
        path: A `.tflite` file (or a `TFLiteExport`).

    Returns:
        A list of operator names, one per node (all subgraphs).

    Raises:
        ValueError: if the file is not a TFLite flatbuffer.
    """
    return [name for name, _ in _read_operators(path)]


def check_builtin_only(path: PathLike) -> List[str]:
    """Checks that a `.tflite` file uses builtin TFLite operators only.

    Flex ops (from `SELECT_TF_OPS`, which Keras' `model.export(format="litert")` allows by
    default) need the TensorFlow Flex delegate, which edge runtimes do not ship; other custom ops
    need their own kernels registered.

    Example:

    ```python
    check_builtin_only("student_int8.tflite")  # ['ADD', 'CONV_2D', ...] or raises
    ```

    Arguments:
        path: A `.tflite` file (or a `TFLiteExport`).

    Returns:
        The sorted distinct operator names, when all are builtin.

    Raises:
        ValueError: naming each non-builtin operator and how many times it appears, and marking
            the Flex / SELECT_TF_OPS ones.
    """
    operators = _read_operators(path)
    custom = collections.Counter(name for name, builtin in operators if not builtin)
    if custom:
        described = ", ".join(
            f"{name} x{count}" + (" (Flex / SELECT_TF_OPS)" if name.startswith("Flex") else " (custom)")
            for name, count in sorted(custom.items())
        )
        raise ValueError(
            f"{os.fspath(path)!r} uses {sum(custom.values())} non-builtin TFLite operator(s): "
            f"{described}. Runtimes without the Flex delegate or these custom kernels cannot run "
            f"it. Convert with target_spec.supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS] (as "
            f"tfadakd.export.to_tflite does) and replace the layers that need TensorFlow ops."
        )
    return sorted({name for name, _ in operators})


# --------------------------------------------------------------------------------------------------
# Running the file.


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
