"""CIFAR VGGs with batch norm as in the RepDistiller / mdistiller zoo ("vgg8" ... "vgg19" = `vgg*_bn`).

Five blocks of 3x3 conv (with bias) + BN + ReLU; 2x2 max pooling after blocks 0, 1 and 2 (after block 3
only for 64x64 inputs, as the reference does for Tiny-ImageNet); global average pooling and a single
Dense layer (no fully connected stack). Configurations (convolutions per block; widths 64, 128, 256,
512, 512):

    vgg8  (S): 1 1 1 1 1     vgg11 (A): 1 1 2 2 2     vgg13 (B): 2 2 2 2 2
    vgg16 (D): 2 2 3 3 3     vgg19 (E): 2 2 4 4 4

Init as the reference: conv kernels N(0, 2 / (9 * out_channels)) (He fan-out), conv biases 0; Dense
kernel N(0, 0.01), bias 0.

Named layers (see `tfadakd.models.feature_extractor`): "stem" (block 0 after ReLU, HxW), "stage1" (H/2),
"stage2" (H/4), "stage3" (H/8), "stage4" (H/8): block outputs after ReLU, before pooling;
"stage1_preact" ... "stage4_preact": the same before the ReLU (the last BN); "pool"; "logits".
"""

from __future__ import annotations

import keras

from tfadakd.models import _common as C
from tfadakd.models._registry import MODELS

WIDTHS = (64, 128, 256, 512, 512)
CONFIGS = {
    "vgg8": (1, 1, 1, 1, 1),
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}


def vgg(convs_per_block, num_classes=100, input_shape=(32, 32, 3), name="vgg"):
    """Builds a CIFAR VGG with batch norm.

    Arguments:
        convs_per_block: Five integers, the number of 3x3 convolutions in each block.
        num_classes: Number of logits.
        input_shape: (height, width, channels).
        name: Model name.

    Returns:
        A Functional `keras.Model` mapping images to logits.

    Raises:
        ValueError: if `convs_per_block` is not five positive integers, or num_classes / input_shape
            are invalid.

    Example:

    ```python
    model = vgg((1, 1, 1, 1, 1), name="vgg8")   # = tfadakd.models.build("vgg8")
    ```
    """
    convs_per_block = tuple(convs_per_block)
    if len(convs_per_block) != 5 or not all(isinstance(c, int) and c >= 1 for c in convs_per_block):
        raise ValueError(f"convs_per_block must be five positive integers. Received: {convs_per_block!r}")
    num_classes = C.check_num_classes(num_classes)
    input_shape = C.check_input_shape(input_shape)

    init = C.he_fan_out()
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for blk, (count, width) in enumerate(zip(convs_per_block, WIDTHS)):
        if blk in (1, 2, 3) or (blk == 4 and input_shape[0] == 64):
            x = keras.layers.MaxPooling2D(2, 2, name=f"block{blk - 1}_pool")(x)
        for i in range(count):
            last = i == count - 1
            x = C.conv(x, width, 3, 1, name=f"block{blk}_conv{i}", kernel_initializer=init, use_bias=True)
            x = C.bn(x, f"stage{blk}_preact" if (last and blk > 0) else f"block{blk}_bn{i}")
            x = C.relu(x, ("stem" if blk == 0 else f"stage{blk}") if last else f"block{blk}_relu{i}")
    logits = C.logits_head(x, num_classes, init="normal_001")
    return keras.Model(inputs, logits, name=name)


def _register(name, convs):
    def builder(num_classes=100, input_shape=(32, 32, 3)):
        return vgg(convs, num_classes=num_classes, input_shape=input_shape, name=name)

    builder.__name__ = name
    builder.__doc__ = f"{name}: CIFAR VGG with BN, convs per block {convs}. Returns a Functional keras.Model."
    MODELS.register(name, builder)


for _name, _convs in CONFIGS.items():
    _register(_name, _convs)
