"""Conversion of a trained Keras model to a TFLite (LiteRT) file or an inference-only SavedModel.

Conversion goes through a temporary SavedModel written by Keras' own `model.export(...,
format="tf_saved_model")` and `tf.lite.TFLiteConverter.from_saved_model`, restricted to builtin
TFLite ops (no Flex). BatchNormalization folds into the convolutions. (Converting a `tf.function`
with `from_concrete_functions(..., trackable_obj=model)` keeps Keras 3 variables as resource
variables whose calibration fails, hence the SavedModel route.) A model trained under a mixed
precision policy is converted through a float32 copy (`float32_model`).

Example:

```python
from tfadakd import export

export.to_tflite(model, "student_fp32.tflite")
export.to_tflite(model, "student_int8.tflite", "int8",
                 representative_data=tfadakd.data.calibration_images("cifar100", n=300))
export.to_saved_model(model, "export/student")
```
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from typing import Optional

import numpy as np

from tfadakd import _compat, files
from tfadakd.export.calibration import calibration_array
from tfadakd.export.modes import DEFAULT_MAX_CALIBRATION_SAMPLES, PathLike, TFLiteExport, check_quantization
from tfadakd.export.operators import check_builtin_only


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
    quantization = check_quantization(quantization)
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
        calibration = calibration_array(
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

