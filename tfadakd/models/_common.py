"""Building blocks shared by the CIFAR model zoo: PyTorch-equivalent initializers, padding and layers.

The zoo reproduces the RepDistiller / mdistiller PyTorch networks. Two details matter for that:

- Initializers. `keras.initializers.VarianceScaling` computes fans from the Keras kernel layout
  `(kh, kw, in / groups, out)`, which gives the same fans as PyTorch's `(out, in / groups, kh, kw)` for
  ordinary and grouped convolutions. A `DepthwiseConv2D` kernel is `(kh, kw, channels, 1)` in Keras but
  `(channels, 1, kh, kw)` in PyTorch, so the two fans are swapped: PyTorch's fan-out is Keras' fan-in.
  The depthwise helpers below take care of it.
- Padding. PyTorch pads a strided 3x3 convolution symmetrically (`padding=1`), Keras' `"same"` pads
  only the bottom/right. Strided convolutions and poolings are built as `ZeroPadding2D` + `"valid"`, so
  that the output grid is PyTorch's and weights ported from the reference checkpoints give the same
  outputs.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from tfadakd.models.batch_norm import FusedBatchNormalization

BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1 (Keras keeps 0.9 of the old moving statistic)
BN_EPSILON = 1e-5  # PyTorch's default


# --------------------------------------------------------------------------------------------------
# Initializers
# --------------------------------------------------------------------------------------------------
def he_fan_out():
    """`kaiming_normal_(mode="fan_out", nonlinearity="relu")`, i.e. N(0, 2 / (k * k * out_channels))."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def he_fan_out_depthwise():
    """The same N(0, 2 / (k * k * channels)) for a Keras depthwise kernel (whose fans are swapped)."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def torch_default():
    """PyTorch's default Conv/Linear weight init: `kaiming_uniform_(a=sqrt(5))` = U(+-1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_depthwise():
    """PyTorch's default weight init for a depthwise conv: U(+-1/sqrt(k * k)) (Keras fans swapped)."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_out", "uniform")


def torch_default_bias(fan_in: int):
    """PyTorch's default Linear/Conv bias init: U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------
def check_num_classes(num_classes) -> int:
    """Returns `num_classes` as an int.

    Raises:
        ValueError: if `num_classes` is not a positive integer.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    return num_classes


def check_input_shape(input_shape) -> tuple:
    """Returns `input_shape` as a tuple `(height, width, channels)` (channels_last).

    Raises:
        ValueError: if it is not a 3-tuple of positive integers (height and width may be None).
    """
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    ok = shape is not None and len(shape) == 3 and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape
    ) and shape[-1] is not None
    if not ok:
        raise ValueError(
            "input_shape must be (height, width, channels) with positive integers (channels_last). "
            f"Received: input_shape={input_shape!r}"
        )
    return shape


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="tfadakd")
class GroupedConv2D(layers.Conv2D):
    """A `Conv2D` with `groups > 1` that runs as one convolution per group.

    Same weights, kernel layout `(kh, kw, in / groups, filters)`, config and results as
    `keras.layers.Conv2D(groups=...)`, but it avoids TensorFlow's CPU path for grouped convolutions
    (which Keras compiles with XLA) so the model runs, trains and converts to TFLite on any device.

    Arguments:
        Those of `keras.layers.Conv2D`.
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        axis = -1 if self.data_format == "channels_last" else 1
        xs = ops.split(inputs, self.groups, axis=axis)
        ks = ops.split(kernel, self.groups, axis=-1)
        outs = [
            ops.conv(
                x,
                k,
                strides=list(self.strides),
                padding=self.padding,
                dilation_rate=self.dilation_rate,
                data_format=self.data_format,
            )
            for x, k in zip(xs, ks)
        ]
        return ops.concatenate(outs, axis=axis)


@keras.saving.register_keras_serializable(package="tfadakd")
class ChannelShuffle(layers.Layer):
    """ShuffleNet's channel shuffle on a channels_last tensor.

    Channels viewed as a `(groups, channels / groups)` grid are transposed, as PyTorch's
    `x.view(N, g, C // g, H, W).permute(0, 2, 1, 3, 4)`: output channel `j * groups + i` is input
    channel `i * (C / groups) + j`.

    Arguments:
        groups: Number of groups; must divide the number of channels.
    """

    def __init__(self, groups: int, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(
                f"ChannelShuffle needs channels divisible by groups={self.groups}. "
                f"Received input_shape={input_shape}"
            )

    def call(self, x):
        if self.groups == 1:
            return x
        shape = ops.shape(x)
        c = x.shape[-1]
        y = ops.reshape(x, (-1, shape[1], shape[2], self.groups, c // self.groups))
        y = ops.transpose(y, (0, 1, 2, 4, 3))
        return ops.reshape(y, (-1, shape[1], shape[2], c))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="tfadakd")
class ChannelSlice(layers.Layer):
    """Channels `[start, stop)` of a channels_last tensor (ShuffleNetV2's channel split).

    Arguments:
        start: First channel kept.
        stop: One past the last channel kept.
    """

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= start < stop:
            raise ValueError(f"ChannelSlice needs 0 <= start < stop. Received: start={start}, stop={stop}")
        self.start = int(start)
        self.stop = int(stop)

    def call(self, x):
        return x[..., self.start : self.stop]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.stop - self.start,)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}



def _torch_padding(x, kernel_size, strides, name):
    """PyTorch's symmetric `padding=k // 2`: explicit zero padding before a strided "valid" conv
    (Keras' "same" would pad only bottom and right), else "same" (or "valid" for 1x1)."""
    pad = kernel_size // 2
    if pad and strides > 1:
        return layers.ZeroPadding2D(pad, name=name + "_pad")(x), "valid"
    return x, "same" if pad else "valid"

def conv(x, filters, kernel_size, strides=1, *, name, kernel_initializer, use_bias=False, groups=1,
         bias_initializer="zeros"):
    """A PyTorch-style `Conv2d(padding=kernel_size // 2)`: symmetric zero padding, channels_last.

    Arguments:
        x: Input tensor.
        filters: Output channels.
        kernel_size: Square kernel size (odd).
        strides: Stride.
        name: Layer name (the padding layer, if any, is `name + "_pad"`).
        kernel_initializer: Kernel initializer.
        use_bias: Whether the convolution has a bias.
        groups: Number of groups (uses `GroupedConv2D` when > 1).
        bias_initializer: Bias initializer.

    Returns:
        The output tensor.
    """
    x, padding = _torch_padding(x, kernel_size, strides, name)
    cls = GroupedConv2D if groups > 1 else layers.Conv2D
    return cls(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=use_bias,
        kernel_initializer=kernel_initializer,
        bias_initializer=bias_initializer,
        name=name,
    )(x)


def depthwise_conv(x, kernel_size, strides=1, *, name, depthwise_initializer):
    """A PyTorch-style depthwise `Conv2d(C, C, k, groups=C, padding=k // 2, bias=False)`.

    Returns:
        The output tensor.
    """
    x, padding = _torch_padding(x, kernel_size, strides, name)
    return layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        depthwise_initializer=depthwise_initializer,
        name=name,
    )(x)


def bn(x, name):
    """`BatchNorm2d` with PyTorch's momentum (0.1) and epsilon (1e-5); gamma 1, beta 0. Fused kernel
    (`FusedBatchNormalization`) for the 4-D feature maps, Keras' layer otherwise."""
    if len(x.shape) == 4:
        return FusedBatchNormalization(axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)
    return layers.BatchNormalization(axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def relu(x, name):
    """A named ReLU."""
    return layers.ReLU(name=name)(x)


def logits_head(x, num_classes, *, init="torch"):
    """Global average pooling (layer "pool") and the final Dense (layer "logits", no softmax), which
    computes in float32 under any precision policy (Keras' mixed-precision advice for the output layer).

    Arguments:
        x: The last feature map.
        num_classes: Output size.
        init: "torch" (PyTorch's default Linear: U(+-1/sqrt(fan_in)) for kernel and bias),
            "torch_zero_bias" (default kernel, zero bias: the zoo's WRN) or "normal_001"
            (N(0, 0.01) kernel, zero bias: the zoo's VGG and MobileNetV2).

    Returns:
        The logits tensor.
    """
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    fan_in = x.shape[-1]
    if init == "torch":
        kernel_init, bias_init = torch_default(), torch_default_bias(fan_in)
    elif init == "torch_zero_bias":
        kernel_init, bias_init = torch_default(), "zeros"
    elif init == "normal_001":
        kernel_init, bias_init = keras.initializers.RandomNormal(0.0, 0.01), "zeros"
    else:
        raise ValueError(f"Unknown head init {init!r}: use 'torch', 'torch_zero_bias' or 'normal_001'.")
    # float32 whatever the policy: under mixed precision, logits, losses and metrics stay float32.
    return layers.Dense(num_classes, kernel_initializer=kernel_init, bias_initializer=bias_init, name="logits",
                        dtype="float32")(x)
