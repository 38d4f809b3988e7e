"""Wide ResNets (Zagoruyko & Komodakis 2016) as in the RepDistiller / mdistiller zoo.

WRN-d-k: a 3x3 stem conv to 16 channels (no BN, no ReLU), three stages of n = (d - 4) / 6
pre-activation basic blocks with widths (16k, 32k, 64k) and strides (1, 2, 2), then BN-ReLU, global
average pooling and a Dense head. No dropout (the zoo's dropRate is 0).

A block is BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut. When the width changes, the 1x1 shortcut
conv reads the activated input (BN-ReLU applied); otherwise the shortcut is the raw input. Convolutions
have no bias, He-normal fan-out init; the Dense head has PyTorch's default kernel init and a zero bias.

Named layers (see `tfadakd.models.feature_extractor`): "stem" (the stem conv, HxW), "stage1" (HxW),
"stage2" (H/2), "stage3" (H/4): the stage outputs (residual sums, not activated);
"stage1_preact" / "stage2_preact": the BN of the next stage's first block applied to that output,
"stage3_preact": the final BN (mdistiller's `preact_feats`); "pool"; "logits".
"""

from __future__ import annotations

import re

import keras

from tfadakd.models import _common as C
from tfadakd.models._registry import MODELS

WRN_PATTERN = re.compile(r"^wrn_(\d+)_(\d+)$")


def _block(x, out_planes, stride, prefix, bn1_name=None, out_name=None):
    init = C.he_fan_out()
    equal_in_out = x.shape[-1] == out_planes
    act = C.bn(x, bn1_name or f"{prefix}_bn1")
    act = C.relu(act, f"{prefix}_relu1")
    y = C.conv(act, out_planes, 3, stride, name=f"{prefix}_conv1", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn2")
    y = C.relu(y, f"{prefix}_relu2")
    y = C.conv(y, out_planes, 3, 1, name=f"{prefix}_conv2", kernel_initializer=init)
    if equal_in_out:
        if stride != 1:
            raise ValueError(f"A WRN block with equal widths cannot have stride {stride}.")
        shortcut = x
    else:
        shortcut = C.conv(act, out_planes, 1, stride, name=f"{prefix}_shortcut_conv", kernel_initializer=init)
    return keras.layers.Add(name=out_name or f"{prefix}_add")([shortcut, y])


def wide_resnet(depth, width, num_classes=100, input_shape=(32, 32, 3), name=None):
    """Builds WRN-`depth`-`width`.

    Arguments:
        depth: 6n + 4 (10, 16, 22, 28, 40, ...).
        width: Widening factor k >= 1; stage widths are (16k, 32k, 64k).
        num_classes: Number of logits.
        input_shape: (height, width, channels).
        name: Model name (default `f"wrn_{depth}_{width}"`).

    Returns:
        A Functional `keras.Model` mapping images to logits.

    Raises:
        ValueError: if depth is not 6n + 4 with n >= 1, width is not a positive integer, or
            num_classes / input_shape are invalid.

    Example:

    ```python
    teacher = wide_resnet(40, 2)            # wrn_40_2, 2,255,156 parameters for 100 classes
    big = tfadakd.models.build("wrn_28_10") # any size through the name pattern
    ```
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...). Received: depth={depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"WRN width must be a positive integer. Received: width={width!r}")
    num_classes = C.check_num_classes(num_classes)
    n = (depth - 4) // 6
    widths = (16 * width, 32 * width, 64 * width)

    inputs = keras.Input(C.check_input_shape(input_shape), name="images")
    x = C.conv(inputs, 16, 3, 1, name="stem", kernel_initializer=C.he_fan_out())
    for s, planes in enumerate(widths, start=1):
        for b in range(n):
            stride = 2 if (s > 1 and b == 0) else 1
            # The first BN of stages 2 and 3 reads the previous stage's output: mdistiller's preact feature.
            bn1_name = f"stage{s - 1}_preact" if (s > 1 and b == 0) else None
            out_name = f"stage{s}" if b == n - 1 else None
            x = _block(x, planes, stride, f"stage{s}_block{b}", bn1_name=bn1_name, out_name=out_name)
    x = C.bn(x, "stage3_preact")
    x = C.relu(x, "final_relu")
    logits = C.logits_head(x, num_classes, init="torch_zero_bias")
    return keras.Model(inputs, logits, name=name or f"wrn_{depth}_{width}")


def build_from_name(name, num_classes=100, input_shape=(32, 32, 3)):
    """Builds a WRN from a name "wrn_{depth}_{width}", or returns None if the name does not match.

    Raises:
        ValueError: if the name matches but the depth or width is invalid.
    """
    match = WRN_PATTERN.match(name) if isinstance(name, str) else None
    if match is None:
        return None
    depth, width = int(match.group(1)), int(match.group(2))
    return wide_resnet(depth, width, num_classes=num_classes, input_shape=input_shape, name=name)


def _register(depth, width):
    name = f"wrn_{depth}_{width}"

    def builder(num_classes=100, input_shape=(32, 32, 3)):
        return wide_resnet(depth, width, num_classes=num_classes, input_shape=input_shape, name=name)

    builder.__name__ = name
    builder.__doc__ = f"{name}: WRN-{depth}-{width}. Returns a Functional keras.Model outputting logits."
    MODELS.register(name, builder)


for _d, _w in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_d, _w)
