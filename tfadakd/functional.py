"""The distillation math as small pure functions of logits (float32 tensors of shape (batch, classes)).

Everything here is stateless and testable against NumPy; the Keras objects in `losses.py` and
`temperatures.py` only wire hyper-parameters around these functions. Formulas: `docs/method.md` sections 1-4.

Written with `keras.ops` only, so it runs on every Keras 3 backend (TensorFlow, JAX, PyTorch) and
imports without TensorFlow; the functions return the backend's tensors (`tf.Tensor` on TensorFlow,
`jax.Array` on JAX) and accept NumPy arrays too.
"""

import math

from keras import ops

#: The adaptive temperature's constant (1 + sqrt(3)) / 2 = 1 / (sqrt(3) - 1), about 1.366.
ADAPTIVE_CONSTANT = (1.0 + math.sqrt(3.0)) / 2.0

#: The epsilon added to the standard deviation in logit standardization (Sun et al., 2024).
STANDARDIZE_EPSILON = 1e-7


def standardize(logits, epsilon=STANDARDIZE_EPSILON):
    """Z-scores each row: `(l - mean(l)) / (std(l) + epsilon)`, std with Bessel's correction (N - 1).

    This matches `torch.std` (unbiased) as used by the reference code; `keras.ops.std` (like
    `tf.math.reduce_std`) would give the population std instead.

    Example:

    >>> np.asarray(standardize(np.array([[1.0, 2.0, 3.0]], "float32"))).round(4)
    array([[-1.,  0.,  1.]], dtype=float32)
    """
    logits = ops.convert_to_tensor(logits)
    centered = logits - ops.mean(logits, axis=-1, keepdims=True)
    return centered / standard_deviation(logits, epsilon)


def _per_sample(temperature):
    """(batch, 1) or scalar temperature -> (batch,) or scalar, for the T^2 factor."""
    return ops.squeeze(temperature, axis=-1) if len(temperature.shape) == 2 else temperature


def _cast_temperatures(logits, temperature, student_temperature):
    temperature = ops.cast(temperature, logits.dtype)
    if student_temperature is None:
        return temperature, temperature
    return temperature, ops.cast(student_temperature, logits.dtype)


def _kl(log_p, log_q):
    """Sum over the last axis of `p * (log p - log q)`, from log-probabilities."""
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def kd_divergence(teacher_logits, student_logits, temperature, student_temperature=None):
    """Per-sample `T^2 * KL(softmax(t / T) || softmax(s / T))`, shape (batch,).

    Arguments:
        teacher_logits, student_logits: tensors of shape (batch, classes).
        temperature: a scalar or a (batch, 1) tensor of per-sample temperatures.
        student_temperature: the student's own temperature where a scheme uses two (NormKD);
            defaults to `temperature`. The `T^2` factor uses the teacher's temperature.
    """
    teacher_logits = ops.convert_to_tensor(teacher_logits)
    student_logits = ops.convert_to_tensor(student_logits)
    temperature, student_temperature = _cast_temperatures(teacher_logits, temperature, student_temperature)
    log_p_teacher = ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_p_student = ops.log_softmax(student_logits / student_temperature, axis=-1)
    return _kl(log_p_teacher, log_p_student) * ops.square(_per_sample(temperature))


#: Logit offset that removes the target class from the non-target softmax in DKD.
_MASK = -1e9


def _sparse_labels(labels):
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 2 and labels.shape[-1] not in (None, 1):  # one-hot or soft labels
        return ops.cast(ops.argmax(labels, axis=-1), "int32")
    return ops.cast(ops.reshape(labels, (-1,)), "int32")


def target_mask(labels, classes):
    """A (batch, classes) boolean mask, True at each sample's target class.

    Arguments:
        labels: (batch,) or (batch, 1) class indices, or (batch, classes) one-hot labels.
        classes: the number of classes.
    """
    labels = _sparse_labels(labels)
    return ops.equal(ops.expand_dims(labels, -1), ops.expand_dims(ops.arange(classes, dtype="int32"), 0))


def dkd_terms(teacher_logits, student_logits, labels, temperature, student_temperature=None):
    """Decoupled KD's two per-sample terms (Zhao et al., 2022), each with the `T^2` factor.

    - TCKD: the binary KL between `[p_target, 1 - p_target]` of teacher and student.
    - NCKD: the KL between the softmaxes over the non-target classes (target logit masked out).

    Computed in log space, so that a teacher certain of the target gives no `log(0)`.

    Arguments:
        teacher_logits, student_logits: (batch, classes).
        labels: (batch,) or (batch, 1) class indices, or (batch, classes) one-hot labels.
        temperature, student_temperature: as in `kd_divergence`.

    Returns:
        `(tckd, nckd)`, two tensors of shape (batch,).
    """
    teacher_logits = ops.convert_to_tensor(teacher_logits)
    student_logits = ops.convert_to_tensor(student_logits)
    temperature, student_temperature = _cast_temperatures(teacher_logits, temperature, student_temperature)
    target = target_mask(labels, ops.shape(teacher_logits)[-1])
    factor = ops.square(_per_sample(temperature))

    def binary_log_probs(scaled):
        log_p = ops.log_softmax(scaled, axis=-1)
        log_target = ops.max(ops.where(target, log_p, _MASK), axis=-1)
        log_rest = ops.logsumexp(ops.where(target, _MASK, log_p), axis=-1)
        return ops.stack([log_target, log_rest], axis=-1)

    def non_target_log_probs(scaled):
        return ops.log_softmax(ops.where(target, _MASK, scaled), axis=-1)

    t_scaled, s_scaled = teacher_logits / temperature, student_logits / student_temperature
    tckd = _kl(binary_log_probs(t_scaled), binary_log_probs(s_scaled)) * factor
    nckd = _kl(non_target_log_probs(t_scaled), non_target_log_probs(s_scaled)) * factor
    return tckd, nckd


def standard_deviation(logits, epsilon=STANDARDIZE_EPSILON):
    """Per-sample Bessel-corrected std plus `epsilon`, shape (batch, 1)."""
    logits = ops.convert_to_tensor(logits)
    n = ops.cast(ops.shape(logits)[-1], logits.dtype)
    centered = logits - ops.mean(logits, axis=-1, keepdims=True)
    return ops.sqrt(ops.sum(ops.square(centered), axis=-1, keepdims=True) / (n - 1.0)) + epsilon


def max_abs_logit(logits):
    """Per-sample `max_j |l_j|`, shape (batch, 1)."""
    return ops.max(ops.abs(logits), axis=-1, keepdims=True)


def logit_correlation(teacher_logits, student_logits, epsilon=1e-12):
    """Per-sample Pearson correlation of the teacher's and the student's logit vectors, shape (batch,)."""
    teacher_logits = ops.convert_to_tensor(teacher_logits)
    student_logits = ops.convert_to_tensor(student_logits)
    t = teacher_logits - ops.mean(teacher_logits, axis=-1, keepdims=True)
    s = student_logits - ops.mean(student_logits, axis=-1, keepdims=True)
    num = ops.sum(t * s, axis=-1)
    den = ops.sqrt(ops.sum(ops.square(t), axis=-1) * ops.sum(ops.square(s), axis=-1))
    return num / (den + epsilon)
