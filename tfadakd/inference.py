"""A lean inference copy of a frozen teacher: its weights cast to bfloat16 once, float32 logits out.

Under the `mixed_bfloat16` policy every layer keeps float32 weights and casts them to bfloat16 at
each call: a frozen teacher pays that cast at every distillation step for weights that never change.
`inference_copy` returns a copy whose convolution and dense kernels and biases are stored in the
compute dtype (cast once, with the same rounding the per-call cast applies), whose normalization
layers keep float32 variables (TensorFlow's fused batch norm, `tfadakd.models.FusedBatchNormalization`,
needs float32 scale, offset and statistics next to bfloat16 activations), and whose outputs are cast
to float32. The copy is not trainable and shares nothing with the original, which stays as it was
(and is what a `.keras` file stores).

Under `mixed_bfloat16` the copy computes the same values as the original (the same bfloat16 weights
and activations); from a float32 original it gives the original's logits within bfloat16 rounding.
What it saves is measured in `docs/performance.md` (`benchmarks/lean_teacher.py`): 1-4% of the teacher's
forward on a 2-core AMX CPU and nothing measurable of a distillation step, so the `Distiller` does not use
it by itself; pass the copy as its teacher where it pays.

Example:

```python
teacher = keras.models.load_model("teacher.keras")        # built under mixed_bfloat16
lean = tfadakd.inference.inference_copy(teacher)
logits = lean(images, training=False)                       # float32, as teacher(images) cast to float32
```
"""

from __future__ import annotations

import keras

from tfadakd import _compat

#: Layers whose weights (kernels, biases) are stored in the compute dtype in the copy: the matrix
#: products, whose inputs are cast to the compute dtype at every call under a mixed policy anyway.
KERNEL_LAYERS = (
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
    keras.layers.Dense, keras.layers.EinsumDense,
)

#: Compute dtypes an inference copy can use (16-bit floats; float32 would be the original).
COMPUTE_DTYPES = ("bfloat16", "float16")


def _check_model(model, compute_dtype):
    """Refuses what `inference_copy` cannot copy, naming the value and what is supported."""
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype={compute_dtype!r} is not supported: pass one of {', '.join(COMPUTE_DTYPES)} "
            "(for float32 inference use the original model)."
        )
    if not isinstance(model, keras.Model):
        raise ValueError(f"inference_copy needs a keras.Model, got {type(model).__name__}.")
    if not (isinstance(model, keras.Sequential) or _compat.is_functional(model)):
        raise ValueError(
            f"inference_copy copies Functional and Sequential models (the tfadakd zoo, keras.applications, "
            f"keras.Model(inputs, outputs)); {model.name!r} is a subclassed {type(model).__name__}, whose "
            "layers and call cannot be cloned. Rebuild it as keras.Model(inputs, outputs), or use the "
            "model as it is (tfadakd.Distiller(..., lean_teacher=False))."
        )
    if not model.built or not model.weights:
        raise ValueError(
            f"Model {model.name!r} is not built (it has no weights yet): build it, e.g. with "
            "keras.Input(shape) as its first layer, before taking an inference copy."
        )


def _model_compute_dtype(model, compute_dtype):
    """The 16-bit dtype `model` already computes in (None for a float32 model); refuses a mismatch."""
    found = sorted({layer.compute_dtype for layer in _compat.flatten_layers(model, include_self=False)
                    if layer.compute_dtype in COMPUTE_DTYPES})
    if found and found != [compute_dtype]:
        raise ValueError(
            f"Model {model.name!r} computes in {', '.join(found)}, not compute_dtype={compute_dtype!r}: pass "
            f"compute_dtype={found[0]!r} (the copy keeps the precision the model runs in)."
        )
    return found[0] if found else None


def _clone_layer(compute_dtype, mixed):
    """`clone_model`'s clone function: each layer rebuilt from its config under the copy's policy.

    Kernel layers (`KERNEL_LAYERS`) store their weights in `compute_dtype`; other layers run under
    `mixed_<compute_dtype>` (float32 variables: normalization statistics, and the weights of any layer
    not known to be safe in 16 bits). In a `mixed` model, a layer kept in float32 on purpose (the zoo's
    logits Dense, a float32 softmax) stays as it is.
    """

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):  # a keras.ops operation (`x + y`): no state, no policy
            return layer
        config = layer.get_config()
        # The weights are overwritten with the model's: skip the random initialization of the new ones.
        config.update({key: "zeros" for key in config if key.endswith("_initializer")})
        if not (mixed and layer.compute_dtype == "float32"):
            config["dtype"] = compute_dtype if isinstance(layer, KERNEL_LAYERS) else f"mixed_{compute_dtype}"
        return layer.__class__.from_config(config)

    return clone


def _copy_weights(source, target):
    """Assigns every weight of `source` to the same weight of `target`, cast to the target's dtype."""
    if len(source.weights) != len(target.weights):
        raise RuntimeError(
            f"The inference copy of {source.name!r} has {len(target.weights)} weights, the model "
            f"{len(source.weights)}: a layer's get_config does not rebuild it. Use the model as it is."
        )
    for original, copy in zip(source.weights, target.weights):
        if tuple(original.shape) != tuple(copy.shape):
            raise RuntimeError(
                f"Weight {original.path} has shape {tuple(original.shape)} in the model but "
                f"{tuple(copy.shape)} ({copy.path}) in its inference copy. Use the model as it is."
            )
        copy.assign(keras.ops.cast(original, copy.dtype))


def inference_copy(model, compute_dtype="bfloat16"):
    """A frozen copy of `model` that stores its kernels in `compute_dtype` and returns float32 outputs.

    Convolution and dense layers (`KERNEL_LAYERS`) keep their weights in `compute_dtype`, cast once
    here; every other layer runs under the `mixed_<compute_dtype>` policy, so normalization layers keep
    float32 variables. Every output is cast to float32. A model under a mixed policy keeps its
    precision layer by layer (a layer it runs in float32, like the zoo's logits Dense, stays float32),
    so the copy computes the same values as the model; a float32 model is run in `compute_dtype`, which
    changes its logits by bfloat16 (float16) rounding. The copy is not trainable (`trainable=False`),
    has the original's model and layer names and shares no variable with it: the original is not changed, and
    a later change of the original's weights does not reach the copy (take a new one).

    Arguments:
        model: a built Functional or Sequential `keras.Model` (nested ones included), under any
            precision policy. Subclassed models are refused.
        compute_dtype: `"bfloat16"` (default) or `"float16"`.

    Returns:
        A Functional `keras.Model` with the model's name.

    Raises:
        ValueError: for a subclassed or unbuilt model, an unsupported `compute_dtype`, or a model
            computing in another 16-bit dtype than `compute_dtype`.

    Example:

    ```python
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    teacher = tfadakd.models.build("resnet32x4")
    lean = tfadakd.inference.inference_copy(teacher)
    lean(images).dtype            # float32
    ```
    """
    _check_model(model, compute_dtype)
    mixed = _model_compute_dtype(model, compute_dtype) is not None
    clone = keras.models.clone_model(model, clone_function=_clone_layer(compute_dtype, mixed), recursive=True)
    _copy_weights(model, clone)
    lean = clone
    if any(keras.backend.standardize_dtype(output.dtype) != "float32" for output in clone.outputs):
        outputs = [keras.layers.Activation("linear", dtype="float32", name=f"{model.name}_float32_{i}")(output)
                   for i, output in enumerate(clone.outputs)]
        lean = keras.Model(clone.inputs, outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    lean.trainable = False
    return lean
