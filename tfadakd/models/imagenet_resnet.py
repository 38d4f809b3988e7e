"""ImageNet ResNets in the torchvision layout (`torchvision.models.resnet18/34/50`, ResNet v1.5).

Registered as "imagenet_resnet18", "imagenet_resnet34" and "imagenet_resnet50": the zoo already has
"ResNet18" / "ResNet50", the CIFAR-adapted networks of `resnetv2.py` (3x3 stride-1 stem, no max pool),
and mdistiller registers its ImageNet ResNets under those same names in a separate dictionary. A name
that differs only in case ("resnet18") would pick a different network on a one-letter typo and would
give run folders (`<output_dir>/<dataset>/<model>...`) that coincide on case-insensitive file systems
(macOS, Windows), so the ImageNet models carry an explicit prefix.

Architecture (He et al. 2016, torchvision's definition):

- stem: 7x7 stride-2 conv to 64 channels (no bias) + BN + ReLU, then a 3x3 stride-2 max pool with
  padding 1. PyTorch pads both symmetrically (3 and 1 pixels); here the padding is an explicit
  `ZeroPadding2D` before a "valid" conv / pool, so every feature map has PyTorch's size and grid
  (e.g. 224 -> 112 -> 56, 64 -> 32 -> 16). PyTorch's max pool pads with -inf; zero padding gives the same
  result because it follows a ReLU (every window holds at least one real, non-negative value).
- four stages of widths (64, 128, 256, 512) x expansion, strides (1, 2, 2, 2): basic blocks (2, 2, 2, 2)
  for ResNet-18 and (3, 4, 6, 3) for ResNet-34; bottlenecks (3, 4, 6, 3) with expansion 4 for
  ResNet-50, the stride on the 3x3 conv (v1.5, as torchvision). A 1x1 conv + BN projection shortcut
  whenever the stride or the width changes, the identity otherwise; ReLU after the residual sum.
- global average pooling (torchvision's `AdaptiveAvgPool2d(1)`, so other input sizes work too) and a
  Dense head with bias.

Trainable parameters with 1,000 classes: 11,689,512 / 21,797,672 / 25,557,032, torchvision's
`sum(p.numel() for p in model.parameters())` (conv kernels, BN gamma and beta, fc weight and bias; the BN
running statistics are buffers there and non-trainable weights here).

Initialization as torchvision's defaults: convolutions He-normal fan-out, BN gamma 1 / beta 0 (momentum
0.1 and epsilon 1e-5 in PyTorch's terms), the Dense head PyTorch's default Linear init, no zero-init of
the last BN of each block (`zero_init_residual=False`). The blocks are those of `resnetv2.py`, which are
torchvision's `BasicBlock` / `Bottleneck`; only the stem differs.

Named layers (see `tfadakd.models.feature_extractor`), strides relative to the input:
"stem" (after the stem ReLU, before the max pool: H/2, 64 channels, mdistiller's ImageNet `feats[0]`),
"stage1" (H/4), "stage2" (H/8), "stage3" (H/16), "stage4" (H/32); "stage1_preact" ... "stage4_preact" (the
residual sums before the last ReLU of each stage); "pool" (the pre-logit vector, 512 or 2048); "logits".
Porting torchvision weights: `conv1` -> "stem_conv", `bn1` -> "stem_bn", `layerS.B.convK` ->
"stage{S}_block{B}_conv{K}", `layerS.B.downsample.0/1` -> "stage{S}_block{B}_shortcut_conv/_bn", `fc` ->
"logits" (layout conversions in docs/models.md).

Defaults: the builders default to 1,000 classes and (224, 224, 3). `tfadakd.models.build` passes its
own defaults (100 classes, 32x32), so give both there:
`models.build("imagenet_resnet18", num_classes=1000, input_shape=(224, 224, 3))`.
"""

from __future__ import annotations

import keras

from tfadakd.models import _common as C
from tfadakd.models._registry import MODELS
# torchvision's BasicBlock and Bottleneck (v1.5), with the zoo's layer names.
from tfadakd.models.resnetv2 import stage_blocks

IMAGENET_INPUT_SHAPE = (224, 224, 3)
IMAGENET_CLASSES = 1000


def imagenet_resnet(block, num_blocks, num_classes=IMAGENET_CLASSES, input_shape=IMAGENET_INPUT_SHAPE,
                    name=None):
    """Builds an ImageNet ResNet in the torchvision layout (7x7 stride-2 stem and max pool).

    Arguments:
        block: "basic" or "bottleneck" (expansion 4, stride on the 3x3 conv).
        num_blocks: Blocks in each of the four stages, e.g. (2, 2, 2, 2) or (3, 4, 6, 3).
        num_classes: Number of logits.
        input_shape: (height, width, channels), channels_last.
        name: Model name.

    Returns:
        A Functional `keras.Model` mapping images to logits (no softmax).

    Raises:
        ValueError: for an unknown block, a bad num_blocks, or invalid num_classes / input_shape.

    Example:

    ```python
    model = imagenet_resnet("basic", (2, 2, 2, 2), name="imagenet_resnet18")   # 11,689,512 parameters
    ```
    """
    make, num_blocks = stage_blocks(block, num_blocks)
    num_classes = C.check_num_classes(num_classes)

    inputs = keras.Input(C.check_input_shape(input_shape), name="images")
    x = C.conv(inputs, 64, 7, 2, name="stem_conv", kernel_initializer=C.he_fan_out())  # pad 3 + valid
    x = C.bn(x, "stem_bn")
    x = C.relu(x, "stem")
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)  # PyTorch's MaxPool2d(3, 2, padding=1)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
    for s, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks), start=1):
        for b in range(n):
            stride = 2 if (s > 1 and b == 0) else 1
            x = make(x, planes, stride, f"stage{s}_block{b}", f"stage{s}" if b == n - 1 else None)
    logits = C.logits_head(x, num_classes, init="torch")
    return keras.Model(inputs, logits, name=name or f"imagenet_resnet_{block}")


@MODELS.register("imagenet_resnet18")
def imagenet_resnet18(num_classes=IMAGENET_CLASSES, input_shape=IMAGENET_INPUT_SHAPE):
    """torchvision's ResNet-18: basic blocks (2, 2, 2, 2), 11,689,512 parameters for 1,000 classes."""
    return imagenet_resnet("basic", (2, 2, 2, 2), num_classes=num_classes, input_shape=input_shape,
                           name="imagenet_resnet18")


@MODELS.register("imagenet_resnet34")
def imagenet_resnet34(num_classes=IMAGENET_CLASSES, input_shape=IMAGENET_INPUT_SHAPE):
    """torchvision's ResNet-34: basic blocks (3, 4, 6, 3), 21,797,672 parameters for 1,000 classes."""
    return imagenet_resnet("basic", (3, 4, 6, 3), num_classes=num_classes, input_shape=input_shape,
                           name="imagenet_resnet34")


@MODELS.register("imagenet_resnet50")
def imagenet_resnet50(num_classes=IMAGENET_CLASSES, input_shape=IMAGENET_INPUT_SHAPE):
    """torchvision's ResNet-50 (v1.5): bottlenecks (3, 4, 6, 3), 25,557,032 parameters for 1,000 classes."""
    return imagenet_resnet("bottleneck", (3, 4, 6, 3), num_classes=num_classes, input_shape=input_shape,
                           name="imagenet_resnet50")
