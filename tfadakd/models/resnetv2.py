"""ImageNet-shaped ResNets adapted to CIFAR, as in the zoo's `resnetv2.py` ("ResNet18", "ResNet50").

A 3x3 stride-1 stem conv to 64 channels + BN + ReLU (no 7x7 conv, no max pooling), four stages of
widths (64, 128, 256, 512) x expansion with strides (1, 2, 2, 2), global average pooling and a Dense
head. ResNet18 uses basic blocks (2, 2, 2, 2); ResNet50 bottlenecks (3, 4, 6, 3) with expansion 4 and the
stride on the 3x3 conv. A 1x1 conv + BN projection shortcut whenever the stride or the width changes.
Convolutions have no bias and He-normal fan-out init; the Dense head has PyTorch's default init; no
zero-init of the last BN (the zoo's default `zero_init_residual=False`).

Named layers (see `tfadakd.models.feature_extractor`): "stem" (HxW, 64), "stage1" (HxW), "stage2"
(H/2), "stage3" (H/4), "stage4" (H/8); "stage1_preact" ... "stage4_preact" (the residual sums before
the last ReLU of each stage); "pool"; "logits".
"""

from __future__ import annotations

import keras

from tfadakd.models import _common as C
from tfadakd.models._registry import MODELS


def _shortcut(x, out, stride, prefix):
    if stride == 1 and x.shape[-1] == out:
        return x
    y = C.conv(x, out, 1, stride, name=f"{prefix}_shortcut_conv", kernel_initializer=C.he_fan_out())
    return C.bn(y, f"{prefix}_shortcut_bn")


def _basic(x, planes, stride, prefix, out_name=None):
    init = C.he_fan_out()
    y = C.conv(x, planes, 3, stride, name=f"{prefix}_conv1", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn1")
    y = C.relu(y, f"{prefix}_relu1")
    y = C.conv(y, planes, 3, 1, name=f"{prefix}_conv2", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn2")
    y = keras.layers.Add(name=f"{out_name}_preact" if out_name else f"{prefix}_add")(
        [y, _shortcut(x, planes, stride, prefix)]
    )
    return C.relu(y, out_name or f"{prefix}_out")


def _bottleneck(x, planes, stride, prefix, out_name=None):
    init = C.he_fan_out()
    y = C.conv(x, planes, 1, 1, name=f"{prefix}_conv1", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn1")
    y = C.relu(y, f"{prefix}_relu1")
    y = C.conv(y, planes, 3, stride, name=f"{prefix}_conv2", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn2")
    y = C.relu(y, f"{prefix}_relu2")
    y = C.conv(y, 4 * planes, 1, 1, name=f"{prefix}_conv3", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn3")
    y = keras.layers.Add(name=f"{out_name}_preact" if out_name else f"{prefix}_add")(
        [y, _shortcut(x, 4 * planes, stride, prefix)]
    )
    return C.relu(y, out_name or f"{prefix}_out")


def stage_blocks(block, num_blocks):
    """The block builder named `block` ("basic" or "bottleneck") and the four stages' block counts.

    Raises:
        ValueError: for another block name, or anything but four positive integers.

    Example:

    >>> make, num_blocks = stage_blocks("basic", [2, 2, 2, 2])
    """
    blocks = {"basic": _basic, "bottleneck": _bottleneck}
    if block not in blocks:
        raise ValueError(f"block must be 'basic' or 'bottleneck'. Received: block={block!r}")
    num_blocks = tuple(num_blocks)
    if len(num_blocks) != 4 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                       for n in num_blocks):
        raise ValueError(f"num_blocks must be four positive integers. Received: num_blocks={num_blocks!r}")
    return blocks[block], num_blocks


def resnet_v2(block, num_blocks, num_classes=100, input_shape=(32, 32, 3), name=None):
    """Builds a CIFAR-adapted ImageNet ResNet (the zoo's `resnetv2.ResNet`).

    Arguments:
        block: "basic" or "bottleneck".
        num_blocks: Blocks in each of the four stages, e.g. (2, 2, 2, 2) or (3, 4, 6, 3).
        num_classes: Number of logits.
        input_shape: (height, width, channels).
        name: Model name.

    Returns:
        A Functional `keras.Model` mapping images to logits.

    Raises:
        ValueError: for an unknown block, a bad num_blocks, or invalid num_classes / input_shape.

    Example:

    ```python
    teacher = resnet_v2("bottleneck", (3, 4, 6, 3), name="ResNet50")   # 23,705,252 parameters
    ```
    """
    make, num_blocks = stage_blocks(block, num_blocks)
    num_classes = C.check_num_classes(num_classes)

    inputs = keras.Input(C.check_input_shape(input_shape), name="images")
    x = C.conv(inputs, 64, 3, 1, name="stem_conv", kernel_initializer=C.he_fan_out())
    x = C.bn(x, "stem_bn")
    x = C.relu(x, "stem")
    for s, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks), start=1):
        for b in range(n):
            stride = 2 if (s > 1 and b == 0) else 1
            x = make(x, planes, stride, f"stage{s}_block{b}", f"stage{s}" if b == n - 1 else None)
    logits = C.logits_head(x, num_classes, init="torch")
    return keras.Model(inputs, logits, name=name or f"resnet_{block}")


@MODELS.register("ResNet18")
def resnet18(num_classes=100, input_shape=(32, 32, 3)):
    """ResNet18 for CIFAR: basic blocks (2, 2, 2, 2). Returns a Functional keras.Model."""
    return resnet_v2("basic", (2, 2, 2, 2), num_classes=num_classes, input_shape=input_shape, name="ResNet18")


@MODELS.register("ResNet50")
def resnet50(num_classes=100, input_shape=(32, 32, 3)):
    """ResNet50 for CIFAR: bottlenecks (3, 4, 6, 3). Returns a Functional keras.Model."""
    return resnet_v2("bottleneck", (3, 4, 6, 3), num_classes=num_classes, input_shape=input_shape, name="ResNet50")
