"""The distillation math as small pure functions of logits (float32 tensors of shape (batch, classes)).

Everything here is stateless and testable against NumPy; the Keras objects in `losses.py` and
`temperatures.py` only wire hyper-parameters around these functions. Formulas: METHOD.md sections 1-3.
"""

import math

import tensorflow as tf

#: The adaptive temperature's constant (1 + sqrt(3)) / 2 = 1 / (sqrt(3) - 1), about 1.366.
ADAPTIVE_CONSTANT = (1.0 + math.sqrt(3.0)) / 2.0

#: The epsilon added to the standard deviation in logit standardization (Sun et al., 2024).
STANDARDIZE_EPSILON = 1e-7


def standardize(logits, epsilon=STANDARDIZE_EPSILON):
    """Z-scores each row: `(l - mean(l)) / (std(l) + epsilon)`, std with Bessel's correction (N - 1).

    This matches `torch.std` (unbiased) as used by the reference code; `tf.math.reduce_std` would give
    the population std instead.

    Example:

    >>> standardize(tf.constant([[1.0, 2.0, 3.0]])).numpy().round(4)
    array([[-1.,  0.,  1.]], dtype=float32)
    """
    logits = tf.convert_to_tensor(logits)
    n = tf.cast(tf.shape(logits)[-1], logits.dtype)
    centered = logits - tf.reduce_mean(logits, axis=-1, keepdims=True)
    var = tf.reduce_sum(tf.square(centered), axis=-1, keepdims=True) / (n - 1.0)
    return centered / (tf.sqrt(var) + epsilon)


def kd_divergence(teacher_logits, student_logits, temperature):
    """Per-sample `T^2 * KL(softmax(t / T) || softmax(s / T))`, shape (batch,).

    Arguments:
        teacher_logits, student_logits: tensors of shape (batch, classes).
        temperature: a scalar or a (batch, 1) tensor of per-sample temperatures.
    """
    temperature = tf.cast(temperature, teacher_logits.dtype)
    log_p_teacher = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    log_p_student = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    per_sample_t = tf.squeeze(temperature, axis=-1) if temperature.shape.rank == 2 else temperature
    return kl * tf.square(per_sample_t)


def max_abs_logit(logits):
    """Per-sample `max_j |l_j|`, shape (batch, 1)."""
    return tf.reduce_max(tf.abs(logits), axis=-1, keepdims=True)


def logit_correlation(teacher_logits, student_logits, epsilon=1e-12):
    """Per-sample Pearson correlation of the teacher's and the student's logit vectors, shape (batch,)."""
    t = teacher_logits - tf.reduce_mean(teacher_logits, axis=-1, keepdims=True)
    s = student_logits - tf.reduce_mean(student_logits, axis=-1, keepdims=True)
    num = tf.reduce_sum(t * s, axis=-1)
    den = tf.sqrt(tf.reduce_sum(tf.square(t), axis=-1) * tf.reduce_sum(tf.square(s), axis=-1))
    return num / (den + epsilon)
