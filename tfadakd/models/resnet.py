"""CIFAR ResNets (He et al. 2016, section 4.2) as in the RepDistiller / mdistiller zoo.

resnet8 ... resnet110 have stage widths (16, 32, 64) after a 16-channel stem; the "x4" variants
(resnet8x4, resnet32x4) have (64, 128, 256) after a 32-channel stem. Depth = 6n + 2 with n basic
blocks per stage. Each block: conv3x3-BN-ReLU-conv3x3-BN, plus the identity or, when the stride or the
width changes, a 1x1 conv + BN projection; ReLU after the sum. Convolutions have no bias and are
initialized He-normal fan-out; the Dense head has PyTorch's default init.

Named layers (see `tfadakd.models.feature_extractor`):
"stem" (after the stem ReLU, HxW), "stage1" (HxW), "stage2" (H/2), "stage3" (H/4): the outputs of each
stage; "stage1_preact" ... "stage3_preact": the residual sums of the last block of each stage, before its
ReLU; "pool" (pre-logit vector); "logits".
"""

from __future__ import annotations

import keras

from tfadakd.models import _common as C
from tfadakd.models._registry import MODELS


def _basic_block(x, planes, stride, prefix, out_name=None):
    init = C.he_fan_out()
    shortcut = x
    y = C.conv(x, planes, 3, stride, name=f"{prefix}_conv1", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn1")
    y = C.relu(y, f"{prefix}_relu1")
    y = C.conv(y, planes, 3, 1, name=f"{prefix}_conv2", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn2")
    if stride != 1 or x.shape[-1] != planes:
        shortcut = C.conv(x, planes, 1, stride, name=f"{prefix}_shortcut_conv", kernel_initializer=init)
        shortcut = C.bn(shortcut, f"{prefix}_shortcut_bn")
    y = keras.layers.Add(name=f"{out_name}_preact" if out_name else f"{prefix}_add")([y, shortcut])
    return C.relu(y, out_name or f"{prefix}_out")


def cifar_resnet(depth, widths=(16, 16, 32, 64), num_classes=100, input_shape=(32, 32, 3), name=None):
    """Builds a CIFAR ResNet with basic blocks.

    Arguments:
        depth: Number of weighted layers, 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...).
        widths: Stem width then the three stage widths, e.g. (16, 16, 32, 64) or (32, 64, 128, 256).
        num_classes: Number of logits.
        input_shape: (height, width, channels).
        name: Model name (default `f"resnet{depth}"`).

    Returns:
        A Functional `keras.Model` mapping images to logits.

    Raises:
        ValueError: if depth is not 6n + 2 with n >= 1, or num_classes / input_shape are invalid.

    Example:

    ```python
    model = cifar_resnet(20)                 # resnet20, 278,324 parameters for 100 classes
    wide = cifar_resnet(8, (32, 64, 128, 256), name="resnet8x4")
    ```
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, ...). Received: depth={depth!r}")
    widths = tuple(widths)
    if len(widths) != 4:
        raise ValueError(f"widths must be (stem, stage1, stage2, stage3). Received: widths={widths!r}")
    num_classes = C.check_num_classes(num_classes)
    n = (depth - 2) // 6

    inputs = keras.Input(C.check_input_shape(input_shape), name="images")
    x = C.conv(inputs, widths[0], 3, 1, name="stem_conv", kernel_initializer=C.he_fan_out())
    x = C.bn(x, "stem_bn")
    x = C.relu(x, "stem")
    for s, planes in enumerate(widths[1:], start=1):
        for b in range(n):
            stride = 2 if (s > 1 and b == 0) else 1
            out_name = f"stage{s}" if b == n - 1 else None
            x = _basic_block(x, planes, stride, f"stage{s}_block{b}", out_name)
    logits = C.logits_head(x, num_classes, init="torch")
    return keras.Model(inputs, logits, name=name or f"resnet{depth}")


def _register(name, depth, widths):
    def builder(num_classes=100, input_shape=(32, 32, 3)):
        return cifar_resnet(depth, widths, num_classes=num_classes, input_shape=input_shape, name=name)

    builder.__name__ = name
    builder.__doc__ = (
        f"{name}: CIFAR ResNet of depth {depth}, widths {widths}. "
        "Arguments: num_classes, input_shape. Returns: a Functional keras.Model outputting logits."
    )
    MODELS.register(name, builder)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64))
_register("resnet8x4", 8, (32, 64, 128, 256))
_register("resnet32x4", 32, (32, 64, 128, 256))
