"""One forward pass of a model that yields the named features its distillation terms read.

`model_features(model, names)` builds, once, a Functional model sharing `model`'s layers and weights whose
output is `{name: tensor}` for each layer name asked for, plus `"logits"` (the model's output, whatever its
last layer is called). Any Functional or Sequential model works: the zoo's (`stem`, `stage1`..., `pool`,
`logits`, `*_preact`), `keras.applications` and KerasHub backbones (their layers' own names). A
subclassed model has no graph of layers to read from and is refused with what to do.

Example:

```python
extract = model_features(keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3)), ["block_6_expand_relu"])
features = extract(images, training=False)   # {"block_6_expand_relu": ..., "logits": ...}
```
"""

import difflib

import keras

LOGITS = "logits"


def _layer_names(model):
    return [layer.name for layer in model.layers]


def model_features(model, names, role="model"):
    """The extractor of `names` (see the module docstring), or None when only the logits are asked for
    (then the model itself is called).

    Raises:
        ValueError: for a subclassed model asked for features (say how to expose them), or a name that
            is not a layer of the model (listing the nearest names).
    """
    names = sorted(set(names) - {LOGITS})
    if not names:
        return None
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):  # subclassed (or unbuilt Sequential)
        raise ValueError(
            f"The {role} {model.name!r} is a subclassed keras.Model (or a Sequential model not built yet): its "
            f"intermediate layers {names} cannot be read from outside its call(). Build it as a Functional model "
            "(keras.Model(inputs, logits), each feature the output of a named layer), or give a Sequential model "
            "its keras.Input first; terms that read only 'logits' work with any model.")
    available = _layer_names(model)
    for name in names:
        if name not in available:
            near = difflib.get_close_matches(name, available, n=5, cutoff=0.4)
            raise ValueError(
                f"The {role} {model.name!r} has no layer named {name!r}. Nearest layer names: "
                f"{', '.join(near) or 'none'} (all {len(available)}: model.summary() lists them).")
    outputs = {name: model.get_layer(name).output for name in names}
    outputs[LOGITS] = model.outputs[0]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_features")
