"""Batch normalization through TensorFlow's fused kernel, a drop-in for `keras.layers.BatchNormalization`."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfadakd import _compat


# cuDNN's lower bound, which tf.nn.fused_batch_norm applies too: PyTorch's 1e-5 becomes 1.001e-5 (a
# change of about 1e-8 in the normalizer).
MIN_EPSILON = 1.001e-5


class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused kernel (`FusedBatchNormV3`).

    Keras 3 normalizes with separate element-wise ops (moments, subtract, multiply, ...) and, under a
    mixed precision policy, casts the activations to float32 and back around them. On a CPU these ops
    and their gradients take most of a CIFAR ResNet's training step (`benchmarks/profile_ops.py`).
    This layer runs the same computation as one fused kernel (oneDNN's on x86) that takes bfloat16 or
    float16 activations directly. Same weights, same arguments, same results up to float rounding
    (tested against `keras.layers.BatchNormalization`; an epsilon below 1.001e-5, cuDNN's bound, is
    raised to it as `tf.nn.fused_batch_norm` does): the moving statistics are updated with the
    batch's biased variance, as Keras does.

    The fused kernel is used for 4-D float32 / bfloat16 / float16 inputs normalized over the last
    axis with `center` and `scale` on, on the TensorFlow backend; anything else (masks, `renorm`,
    `synchronized=True`, other axes or ranks, another Keras backend) falls back to the Keras
    implementation, which receives the inputs untouched (on another backend no TensorFlow op runs).

    Public as `tfadakd.models.FusedBatchNormalization`; its class name is Keras' own, and saved files
    name it `keras.layers.BatchNormalization` (it has no state or argument of its own; Keras keys the
    weights in a `.keras` file by the class name), so that a model of the zoo loads with plain
    `keras.models.load_model` where tfadakd is not installed. `fuse_batch_norm` turns the loaded layers
    back into this class.

    Example:

    ```python
    x = keras.Input((32, 32, 16))
    y = tfadakd.models.FusedBatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    ```
    """

    def _fusable(self, inputs, mask):
        """Whether the fused kernel applies; checks the backend before touching `inputs` with TF."""
        if keras.backend.backend() != "tensorflow":
            return False
        inputs = tf.convert_to_tensor(inputs)
        axis = self.axis if isinstance(self.axis, int) else None
        return (
            mask is None and not self.renorm and not self.synchronized and self.center and self.scale
            and len(inputs.shape) == 4 and axis in (-1, 3)
            and inputs.dtype in (tf.float32, tf.bfloat16, tf.float16)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        inputs = tf.convert_to_tensor(inputs)
        gamma = tf.convert_to_tensor(self.gamma, tf.float32)
        beta = tf.convert_to_tensor(self.beta, tf.float32)
        moving_mean = tf.convert_to_tensor(self.moving_mean, tf.float32)
        moving_variance = tf.convert_to_tensor(self.moving_variance, tf.float32)
        epsilon = max(self.epsilon, MIN_EPSILON)
        if training and self.trainable:
            empty = tf.constant([], tf.float32)
            outputs, mean, variance = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=epsilon,
                data_format="NHWC", is_training=True,
            )[:3]
            # The kernel returns the unbiased (Bessel-corrected) variance; Keras averages the biased one.
            shape = tf.shape(inputs)
            count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(moving_mean * momentum + tf.stop_gradient(mean) * (1.0 - momentum))
            self.moving_variance.assign(moving_variance * momentum + tf.stop_gradient(variance) * (1.0 - momentum))
        else:
            outputs = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance,
                epsilon=epsilon, data_format="NHWC", is_training=False,
            )[0]
        return tf.cast(outputs, self.compute_dtype)


FusedBatchNormalization = BatchNormalization
_compat.serialize_as_public(FusedBatchNormalization, "keras.layers.BatchNormalization")


@keras.saving.register_keras_serializable(package="tfadakd", name="FusedBatchNormalization")
class FusedBatchNormalization_(FusedBatchNormalization):  # noqa: N801
    """The class that `.keras` files written by tfadakd 0.1 name (`tfadakd>FusedBatchNormalization`),
    so that they still load; `fuse_batch_norm` turns it into the current class, whose files load
    without tfadakd."""


FusedBatchNormalization_.__name__ = FusedBatchNormalization_.__qualname__ = "FusedBatchNormalization"


def _layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _layers(layer)


def fuse_batch_norm(model):
    """Turns every `keras.layers.BatchNormalization` of `model` (nested models included), and the layers
    of files written by tfadakd 0.1, into `FusedBatchNormalization`, in place; returns how many it turned.

    A `.keras` file names the zoo's batch norms as Keras' own class (so that it loads without tfadakd);
    the apps call this on the teacher they load, so that it runs the fused kernel again. The weights and
    arguments are unchanged (the layer adds no state; only its `call` differs), the results agree with
    Keras' batch norm up to float rounding.

    Example:

    ```python
    teacher = keras.models.load_model("teacher.keras")
    tfadakd.models.fuse_batch_norm(teacher)
    ```
    """
    turned = 0
    for layer in _layers(model):
        if type(layer) in (keras.layers.BatchNormalization, FusedBatchNormalization_):
            layer.__class__ = FusedBatchNormalization
            turned += 1
    return turned
