"""The CIFAR model zoo of knowledge-distillation papers (RepDistiller / mdistiller), in Keras 3.

Every network of `mdistiller/models/cifar` is rebuilt as a Functional `keras.Model` that maps
channels_last images to logits (no softmax), with exactly the reference's trainable parameters
(BN moving statistics are non-trainable, like PyTorch buffers), its initialization (He-normal fan-out
convolutions, gamma 1 / beta 0, BN momentum 0.1 and epsilon 1e-5 in PyTorch's terms, the reference's
Dense init) and PyTorch's symmetric padding, so that reference checkpoints can be ported layer by layer.
`docs/models.md` lists every model with its parameters and FLOPs.

Weight decay: the models carry NO kernel regularizers. The reference recipe's weight decay (5e-4) is
PyTorch's coupled L2 on every parameter, BN gammas/betas and biases included; use the optimizer that
reproduces it, `tfadakd.optimizers.SGD(weight_decay=5e-4)`, which adds `wd * param` to the gradient of
every trainable variable. (Keras' own `weight_decay` is decoupled, and regularizers would miss BN.)

Families (one file each, registered by name in `MODELS`):

- `resnet.py`: resnet8, resnet14, resnet20, resnet32, resnet44, resnet56, resnet110, resnet8x4, resnet32x4
- `wrn.py`: wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2, and any "wrn_{depth}_{width}" (depth = 6n + 4)
- `vgg.py`: vgg8, vgg11, vgg13, vgg16, vgg19 (all with batch norm, as the zoo's `vgg*_bn`)
- `mobilenetv2.py`: MobileNetV2 (the zoo's `mobile_half`)
- `shufflenet.py`: ShuffleV1, ShuffleV2
- `resnetv2.py`: ResNet18, ResNet50
- `imagenet_resnet.py`: imagenet_resnet18, imagenet_resnet34, imagenet_resnet50 (torchvision's ImageNet
  ResNets; `build` defaults to 100 classes and 32x32, so pass `num_classes=1000, input_shape=(224, 224, 3)`)

Adding an architecture is one file plus one registration:

```python
from tfadakd.models import MODELS

@MODELS.register("my_net")
def my_net(num_classes=100, input_shape=(32, 32, 3)):
    ...  # return a Functional keras.Model with layers named "stem", "stage1", ..., "pool", "logits"
```

Feature names: every model names its intermediate outputs "stem", "stage1", "stage2", "stage3"
(and "stage4" for VGG, MobileNetV2, ResNet18/50), "pool" (the pre-logit vector) and "logits" (the final
Dense), after mdistiller's `feats`; most also have "stageK_preact" (mdistiller's `preact_feats`). See each
family's docstring for exactly which tensor each name is, and `feature_extractor` to read them.

Example:

```python
from tfadakd import models

student = models.build("resnet8x4", num_classes=100)
teacher = models.build("resnet32x4")
feats = models.feature_extractor(student)(images)   # {"stem": ..., "stage1": ..., "logits": ...}
print(models.flops(student) / 1e6, "MFLOPs (multiply-accumulates)")
```
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import keras

from tfadakd.models._registry import MODELS
from tfadakd.models import imagenet_resnet, mobilenetv2, resnet, resnetv2, shufflenet, vgg, wrn  # noqa: F401 (register)
from tfadakd.models._common import ChannelShuffle, ChannelSlice, GroupedConv2D
from tfadakd.models.batch_norm import FusedBatchNormalization, fuse_batch_norm

__all__ = [
    "MODELS",
    "FEATURE_NAMES",
    "build",
    "names",
    "feature_extractor",
    "flops",
    "count_params",
    "ChannelShuffle",
    "ChannelSlice",
    "GroupedConv2D",
    "FusedBatchNormalization",
    "fuse_batch_norm",
]

#: Standard feature names, in network order, returned by default by `feature_extractor`.
FEATURE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4", "pool", "logits")


def names() -> List[str]:
    """Returns the registered model names, sorted.

    `build` also accepts any "wrn_{depth}_{width}" name, e.g. "wrn_28_10", which is not listed.
    """
    return MODELS.names()


def build(name: str, num_classes: int = 100, input_shape=(32, 32, 3)) -> keras.Model:
    """Builds a zoo model by name.

    Arguments:
        name: A name from `names()`, or "wrn_{depth}_{width}" for any Wide ResNet (depth = 6n + 4).
        num_classes: Number of logits (positive integer).
        input_shape: (height, width, channels), channels_last.

    Returns:
        A Functional `keras.Model` (named `name`) mapping images to logits, without softmax.

    Raises:
        ValueError: for an unknown name (the message lists the valid names), a bad Wide ResNet depth
            or width, or an invalid num_classes / input_shape.

    Example:

    ```python
    model = build("resnet20")
    model = build("wrn_28_10", num_classes=10)
    ```
    """
    if isinstance(name, str) and name in MODELS:
        return MODELS.build(name, num_classes=num_classes, input_shape=input_shape)
    model = wrn.build_from_name(name, num_classes=num_classes, input_shape=input_shape)
    if model is not None:
        return model
    try:
        MODELS.get(name)
    except ValueError as err:
        raise ValueError(f"{err} Any 'wrn_<depth>_<width>' (depth = 6n+4) is also accepted.") from None
    raise AssertionError("unreachable")  # pragma: no cover


def count_params(model: keras.Model) -> int:
    """Returns the number of trainable parameters (the zoo's reported size; BN moving stats excluded)."""
    return sum(_prod(v.shape) for v in model.trainable_weights)


def feature_extractor(model: keras.Model, names: Optional[Sequence[str]] = None) -> keras.Model:
    """Returns a model with the same input and a dict of named intermediate outputs.

    Arguments:
        model: A zoo model (or any Functional model with layers so named).
        names: Layer names to expose. Default: those of `FEATURE_NAMES` present in `model`
            ("stem", "stage1", ..., "pool", "logits"). Pre-activation features ("stage1_preact", ...)
            or any other layer can be requested by name.

    Returns:
        A Functional `keras.Model` sharing `model`'s layers and weights, whose output is a dict
        `{name: tensor}`.

    Raises:
        ValueError: if a requested name is not a layer of `model`, or `model` has none of the
            standard names.

    Example:

    ```python
    fx = feature_extractor(build("resnet20"))
    out = fx(images)    # out["stage3"].shape == (batch, 8, 8, 64)
    ```
    """
    layer_names = [layer.name for layer in model.layers]
    if names is None:
        names = [n for n in FEATURE_NAMES if n in layer_names]
        if not names:
            raise ValueError(f"Model {model.name!r} has none of the feature layers {FEATURE_NAMES}.")
    missing = [n for n in names if n not in layer_names]
    if missing:
        available = [n for n in layer_names if n in FEATURE_NAMES or n.endswith("_preact")]
        raise ValueError(
            f"Model {model.name!r} has no layer named {missing}. Feature layers available: {available}."
        )
    outputs: Dict[str, keras.KerasTensor] = {n: model.get_layer(n).output for n in names}
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_features")


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def flops(model: keras.Model) -> int:
    """Counts the multiply-accumulates (MACs) of one forward pass on one image.

    Convention (the one of the distillation papers' "FLOPs" columns): one multiply-accumulate counts as
    one FLOP; only convolutions and Dense layers are counted, from their kernel and output shapes:

        Conv (any groups) and DepthwiseConv:  out_height * out_width * prod(kernel.shape)
        Dense:                                prod(kernel.shape) (times the leading spatial dims, if any)

    Bias additions, batch norm, activations, pooling, residual additions and channel shuffles are not
    counted. With `kernel.shape` = (kh, kw, in / groups, out) this is kh * kw * in / groups * out per
    output pixel; for depthwise kernels (kh, kw, C, 1) it is kh * kw * C. Nested models are recursed.

    Arguments:
        model: A built model with static spatial dimensions.

    Returns:
        The number of multiply-accumulates per image (int). Divide by 1e6 for the usual MFLOPs.

    Raises:
        ValueError: if an output's spatial shape is not static.

    Example:

    ```python
    flops(build("resnet20"))    # 40,818,944, "41 MFLOPs" in the literature
    ```
    """
    conv_types = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                  keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += flops(layer)
            continue
        if isinstance(layer, conv_types):
            kernel = layer.kernel
            shape = tuple(layer.output.shape)
            spatial = shape[1:-1] if getattr(layer, "data_format", "channels_last") == "channels_last" else shape[2:]
            if any(d is None for d in spatial):
                raise ValueError(
                    f"Layer {layer.name!r} has a dynamic output shape {shape}: build with a fixed input_shape."
                )
            total += _prod(spatial) * _prod(kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            shape = tuple(layer.output.shape)
            lead = shape[1:-1]
            if any(d is None for d in lead):
                raise ValueError(f"Layer {layer.name!r} has a dynamic output shape {shape}.")
            total += _prod(lead) * _prod(layer.kernel.shape)
    return int(total)
