"""CIFAR ShuffleNet V1 and V2 as in the RepDistiller / mdistiller zoo ("ShuffleV1", "ShuffleV2").

Both start with a 1x1 conv to 24 channels + BN + ReLU at full resolution (no stride, no max pooling),
then three stages, each halving the resolution in its first block, and global average pooling.

ShuffleV1 (groups 3, stage widths 240, 480, 960, blocks 4, 8, 4): a block is grouped 1x1 conv - BN -
ReLU - channel shuffle - 3x3 depthwise (stride s) - BN - ReLU - grouped 1x1 conv - BN, then ReLU of
(sum with the input) or, for stride 2, of (concat with a 3x3 stride-2 average pooling of the input,
zero padding counted, as PyTorch's `AvgPool2d(3, 2, padding=1)`). The very first 1x1 conv (24 input
channels) is not grouped. Note the ReLU after the depthwise conv: the reference has it, the paper not.

ShuffleV2 (net size 1: stage widths 116, 232, 464, blocks 3, 7, 3 after a down-sampling block, then a
1x1 conv to 1024 + BN + ReLU): a basic block splits the channels in halves, keeps the first and runs the
second through 1x1 conv - BN - ReLU - 3x3 depthwise - BN - 1x1 conv - BN - ReLU, concatenates
(kept, processed) and shuffles with 2 groups. The down-sampling block concatenates (3x3 dw stride 2 -
BN - 1x1 - BN - ReLU) of the input with (1x1 - BN - ReLU - 3x3 dw stride 2 - BN - 1x1 - BN - ReLU) of the
input, then shuffles.

Initialization: the reference sets none for these two networks, so every layer keeps PyTorch's default
(conv and Dense kernels U(+-1/sqrt(fan_in)), Dense bias likewise, BN gamma 1 beta 0); we reproduce that.

Grouped 1x1 convolutions use `GroupedConv2D` (one convolution per group, same weights as
`Conv2D(groups=3)`), which runs on CPU without XLA and converts to TFLite.

Named layers (see `tfadakd.models.feature_extractor`): "stem" (HxW, 24 channels), "stage1" (H/2),
"stage2" (H/4), "stage3" (H/8); V1 also "stage1_preact" ... "stage3_preact" (the sum before the last
ReLU of each stage); V2 also "head_relu" (1024 channels); "pool"; "logits".
"""

from __future__ import annotations

import keras

from tfadakd.models import _common as C
from tfadakd.models._registry import MODELS

_SHUFFLE_V2_SIZES = {
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2: ((224, 488, 976, 2048), (3, 7, 3)),
}


def _stem(inputs):
    x = C.conv(inputs, 24, 1, 1, name="stem_conv", kernel_initializer=C.torch_default())
    x = C.bn(x, "stem_bn")
    return C.relu(x, "stem")


# --------------------------------------------------------------------------------------------------
# ShuffleNet V1
# --------------------------------------------------------------------------------------------------
def _v1_block(x, out_planes, stride, groups, prefix, out_name=None):
    init = C.torch_default()
    in_planes = x.shape[-1]
    mid = out_planes // 4
    g1 = 1 if in_planes == 24 else groups
    y = C.conv(x, mid, 1, 1, name=f"{prefix}_conv1", kernel_initializer=init, groups=g1)
    y = C.bn(y, f"{prefix}_bn1")
    y = C.relu(y, f"{prefix}_relu1")
    y = C.ChannelShuffle(g1, name=f"{prefix}_shuffle")(y)
    y = C.depthwise_conv(y, 3, stride, name=f"{prefix}_dw_conv", depthwise_initializer=C.torch_default_depthwise())
    y = C.bn(y, f"{prefix}_bn2")
    y = C.relu(y, f"{prefix}_relu2")
    y = C.conv(y, out_planes, 1, 1, name=f"{prefix}_conv3", kernel_initializer=init, groups=groups)
    y = C.bn(y, f"{prefix}_bn3")
    preact_name = f"{out_name}_preact" if out_name else f"{prefix}_merge"
    if stride == 2:
        res = keras.layers.ZeroPadding2D(1, name=f"{prefix}_shortcut_pad")(x)
        res = keras.layers.AveragePooling2D(3, 2, padding="valid", name=f"{prefix}_shortcut_pool")(res)
        y = keras.layers.Concatenate(axis=-1, name=preact_name)([y, res])
    else:
        y = keras.layers.Add(name=preact_name)([y, x])
    return C.relu(y, out_name or f"{prefix}_out")


def shufflenet_v1(out_planes=(240, 480, 960), num_blocks=(4, 8, 4), groups=3, num_classes=100,
                  input_shape=(32, 32, 3), name="ShuffleV1"):
    """Builds the zoo's CIFAR ShuffleNet V1.

    Arguments:
        out_planes: Output width of each of the three stages.
        num_blocks: Blocks per stage.
        groups: Groups of the 1x1 convolutions.
        num_classes: Number of logits.
        input_shape: (height, width, channels).
        name: Model name.

    Returns:
        A Functional `keras.Model` mapping images to logits.

    Raises:
        ValueError: if widths are incompatible with the groups, or num_classes / input_shape are invalid.

    Example:

    ```python
    student = shufflenet_v1()    # ShuffleV1, 949,258 parameters for 100 classes
    ```
    """
    num_classes = C.check_num_classes(num_classes)
    if len(out_planes) != 3 or len(num_blocks) != 3 or min(num_blocks) < 1:
        raise ValueError(f"out_planes and num_blocks need three entries. Received: {out_planes!r}, {num_blocks!r}")
    inputs = keras.Input(C.check_input_shape(input_shape), name="images")
    x = _stem(inputs)
    for s, (planes, n) in enumerate(zip(out_planes, num_blocks), start=1):
        for b in range(n):
            # The stride-2 first block concatenates its input: its branch only makes the difference.
            branch = planes - x.shape[-1] if b == 0 else planes
            if branch <= 0 or (branch // 4) % groups or branch % groups:
                raise ValueError(f"Stage {s} width {planes} is incompatible with groups={groups}.")
            out_name = f"stage{s}" if b == n - 1 else None
            x = _v1_block(x, branch, 2 if b == 0 else 1, groups, f"stage{s}_block{b}", out_name)
    logits = C.logits_head(x, num_classes, init="torch")
    return keras.Model(inputs, logits, name=name)


# --------------------------------------------------------------------------------------------------
# ShuffleNet V2
# --------------------------------------------------------------------------------------------------
def _v2_basic_block(x, prefix, out_name=None):
    init = C.torch_default()
    channels = x.shape[-1]
    half = channels // 2
    x1 = C.ChannelSlice(0, half, name=f"{prefix}_split_keep")(x)
    x2 = C.ChannelSlice(half, channels, name=f"{prefix}_split_branch")(x)
    y = C.conv(x2, channels - half, 1, 1, name=f"{prefix}_conv1", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn1")
    y = C.relu(y, f"{prefix}_relu1")
    y = C.depthwise_conv(y, 3, 1, name=f"{prefix}_dw_conv", depthwise_initializer=C.torch_default_depthwise())
    y = C.bn(y, f"{prefix}_bn2")
    y = C.conv(y, channels - half, 1, 1, name=f"{prefix}_conv3", kernel_initializer=init)
    y = C.bn(y, f"{prefix}_bn3")
    y = C.relu(y, f"{prefix}_relu3")
    y = keras.layers.Concatenate(axis=-1, name=f"{prefix}_concat")([x1, y])
    return C.ChannelShuffle(2, name=out_name or f"{prefix}_shuffle")(y)


def _v2_down_block(x, out_channels, prefix):
    init = C.torch_default()
    dw_init = C.torch_default_depthwise()
    mid = out_channels // 2
    left = C.depthwise_conv(x, 3, 2, name=f"{prefix}_left_dw_conv", depthwise_initializer=dw_init)
    left = C.bn(left, f"{prefix}_left_bn1")
    left = C.conv(left, mid, 1, 1, name=f"{prefix}_left_conv", kernel_initializer=init)
    left = C.bn(left, f"{prefix}_left_bn2")
    left = C.relu(left, f"{prefix}_left_relu")
    right = C.conv(x, mid, 1, 1, name=f"{prefix}_right_conv1", kernel_initializer=init)
    right = C.bn(right, f"{prefix}_right_bn1")
    right = C.relu(right, f"{prefix}_right_relu1")
    right = C.depthwise_conv(right, 3, 2, name=f"{prefix}_right_dw_conv", depthwise_initializer=dw_init)
    right = C.bn(right, f"{prefix}_right_bn2")
    right = C.conv(right, mid, 1, 1, name=f"{prefix}_right_conv3", kernel_initializer=init)
    right = C.bn(right, f"{prefix}_right_bn3")
    right = C.relu(right, f"{prefix}_right_relu3")
    y = keras.layers.Concatenate(axis=-1, name=f"{prefix}_concat")([left, right])
    return C.ChannelShuffle(2, name=f"{prefix}_shuffle")(y)


def shufflenet_v2(net_size=1, num_classes=100, input_shape=(32, 32, 3), name="ShuffleV2"):
    """Builds the zoo's CIFAR ShuffleNet V2.

    Arguments:
        net_size: 0.5, 1, 1.5 or 2 (the zoo's "ShuffleV2" is 1: widths 116, 232, 464, head 1024).
        num_classes: Number of logits.
        input_shape: (height, width, channels).
        name: Model name.

    Returns:
        A Functional `keras.Model` mapping images to logits.

    Raises:
        ValueError: for an unknown net_size or invalid num_classes / input_shape.

    Example:

    ```python
    student = shufflenet_v2()    # ShuffleV2, 1,355,528 parameters for 100 classes
    ```
    """
    if net_size not in _SHUFFLE_V2_SIZES:
        raise ValueError(f"net_size must be one of {sorted(_SHUFFLE_V2_SIZES)}. Received: net_size={net_size!r}")
    num_classes = C.check_num_classes(num_classes)
    widths, num_blocks = _SHUFFLE_V2_SIZES[net_size]
    inputs = keras.Input(C.check_input_shape(input_shape), name="images")
    x = _stem(inputs)
    for s, (planes, n) in enumerate(zip(widths[:3], num_blocks), start=1):
        x = _v2_down_block(x, planes, f"stage{s}_down")
        for b in range(n):
            x = _v2_basic_block(x, f"stage{s}_block{b}", f"stage{s}" if b == n - 1 else None)
    x = C.conv(x, widths[3], 1, 1, name="head_conv", kernel_initializer=C.torch_default())
    x = C.bn(x, "head_bn")
    x = C.relu(x, "head_relu")
    logits = C.logits_head(x, num_classes, init="torch")
    return keras.Model(inputs, logits, name=name)


@MODELS.register("ShuffleV1")
def shuffle_v1(num_classes=100, input_shape=(32, 32, 3)):
    """ShuffleV1: groups 3, widths (240, 480, 960), blocks (4, 8, 4). Returns a Functional keras.Model."""
    return shufflenet_v1(num_classes=num_classes, input_shape=input_shape, name="ShuffleV1")


@MODELS.register("ShuffleV2")
def shuffle_v2(num_classes=100, input_shape=(32, 32, 3)):
    """ShuffleV2: net size 1, widths (116, 232, 464), head 1024. Returns a Functional keras.Model."""
    return shufflenet_v2(1, num_classes=num_classes, input_shape=input_shape, name="ShuffleV2")
