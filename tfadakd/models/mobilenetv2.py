"""MobileNetV2 as in the RepDistiller / mdistiller zoo ("MobileNetV2" = the zoo's `mobile_half`).

The zoo's variant (from "Knowledge Distillation via Route Constrained Optimization") differs from
`keras.applications.MobileNetV2`:

- width multiplier 0.5 on the stem (16 channels) and on every block, but the last 1x1 conv keeps 1280
  channels (it is scaled only for multipliers above 1);
- the first block (expansion 1) still has its 1x1 expansion conv;
- channels are `int(c * width)`, not rounded to multiples of 8;
- the stem is a stride-2 3x3 conv, so a 32x32 input ends at 2x2 before pooling;
- no dropout; Dense kernel N(0, 0.01), bias 0; convs He-normal fan-out (depthwise: N(0, 2 / (9 * C))).

Inverted residual settings (t, c, n, s): (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1), with c scaled by the width.

Named layers (see `tfadakd.models.feature_extractor`): "stem" (H/2), "stage1" (after block group 1,
H/2), "stage2" (group 2, H/4), "stage3" (group 4, H/8), "stage4" (group 6, H/16), as mdistiller's
`feats`; "head_relu" (the 1x1 conv to 1280, activated); "pool"; "logits".
"""

from __future__ import annotations

import keras

from tfadakd.models import _common as C
from tfadakd.models._registry import MODELS

SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# Feature names given to the output of block groups 1, 2, 4 and 6 (mdistiller's f1 ... f4).
_STAGE_OF_GROUP = {1: "stage1", 2: "stage2", 4: "stage3", 6: "stage4"}


def _inverted_residual(x, oup, stride, expand, prefix, out_name=None):
    init = C.he_fan_out()
    inp = x.shape[-1]
    hidden = inp * expand
    y = C.conv(x, hidden, 1, 1, name=f"{prefix}_expand_conv", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_expand_bn")
    y = C.relu(y, f"{prefix}_expand_relu")
    y = C.depthwise_conv(y, 3, stride, name=f"{prefix}_dw_conv", depthwise_initializer=C.he_fan_out_depthwise())
    y = C.bn(y, f"{prefix}_dw_bn")
    y = C.relu(y, f"{prefix}_dw_relu")
    y = C.conv(y, oup, 1, 1, name=f"{prefix}_project_conv", kernel_initializer=init)
    if stride == 1 and inp == oup:
        y = C.bn(y, f"{prefix}_project_bn")
        return keras.layers.Add(name=out_name or f"{prefix}_add")([x, y])
    return C.bn(y, out_name or f"{prefix}_project_bn")


def mobilenetv2(expansion=6, width=0.5, num_classes=100, input_shape=(32, 32, 3), name="MobileNetV2"):
    """Builds the zoo's CIFAR MobileNetV2 (`mobilenetv2_T_w(T=expansion, W=width)`).

    Arguments:
        expansion: Expansion ratio t of every block but the first.
        width: Width multiplier (the zoo's "MobileNetV2" uses 0.5).
        num_classes: Number of logits.
        input_shape: (height, width, channels).
        name: Model name.

    Returns:
        A Functional `keras.Model` mapping images to logits.

    Raises:
        ValueError: if expansion or width is not positive, or num_classes / input_shape are invalid.

    Example:

    ```python
    student = mobilenetv2()      # 812,836 parameters for 100 classes
    ```
    """
    if isinstance(expansion, bool) or not isinstance(expansion, int) or expansion < 1:
        raise ValueError(f"expansion must be a positive integer. Received: expansion={expansion!r}")
    if not width > 0:
        raise ValueError(f"width must be positive. Received: width={width!r}")
    num_classes = C.check_num_classes(num_classes)

    init = C.he_fan_out()
    inputs = keras.Input(C.check_input_shape(input_shape), name="images")
    x = C.conv(inputs, int(32 * width), 3, 2, name="stem_conv", kernel_initializer=init)
    x = C.bn(x, "stem_bn")
    x = C.relu(x, "stem")
    for g, (t, c, n, s) in enumerate(SETTINGS):
        t = 1 if g == 0 else expansion
        oup = int(c * width)
        for b in range(n):
            out_name = _STAGE_OF_GROUP.get(g) if b == n - 1 else None
            x = _inverted_residual(x, oup, s if b == 0 else 1, t, f"group{g}_block{b}", out_name)
    last = int(1280 * width) if width > 1.0 else 1280
    x = C.conv(x, last, 1, 1, name="head_conv", kernel_initializer=init)
    x = C.bn(x, "head_bn")
    x = C.relu(x, "head_relu")
    logits = C.logits_head(x, num_classes, init="normal_001")
    return keras.Model(inputs, logits, name=name)


@MODELS.register("MobileNetV2")
def mobilenetv2_half(num_classes=100, input_shape=(32, 32, 3)):
    """MobileNetV2: the zoo's `mobile_half` (expansion 6, width 0.5). Returns a Functional keras.Model."""
    return mobilenetv2(6, 0.5, num_classes=num_classes, input_shape=input_shape, name="MobileNetV2")
