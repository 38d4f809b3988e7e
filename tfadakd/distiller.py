"""The `Distiller`: a `keras.Model` that trains a student against a frozen teacher."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfadakd import functional as F
from tfadakd import losses as losses_lib

#: Names of the values the Distiller logs during training, besides the compiled metrics.
TRAINING_LOG_NAMES = ("student_loss", "distillation_loss", "temperature", "logit_correlation")


def _check_weight(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number, got {value!r}.") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
    return value


def _shape_or_none(model, attribute):
    try:
        shape = getattr(model, attribute)
    except (AttributeError, ValueError):
        return None
    return tuple(shape) if isinstance(shape, (tuple, list)) and shape and not isinstance(shape[0], (tuple, list)) else None


def _weighted_mean(values, sample_weight):
    """`sum(w * v) / batch`: Keras' default `sum_over_batch_size` reduction of per-sample values."""
    if sample_weight is not None:
        values = values * tf.reshape(tf.cast(sample_weight, values.dtype), [-1])
    return tf.reduce_sum(values) / tf.cast(tf.size(values), values.dtype)


def _resolve_student_loss(loss):
    """Turns the compiled `loss` into a per-sample function `fn(y_true, y_pred) -> (batch,)`.

    The student produces logits, so a cross-entropy that expects probabilities is refused.
    """
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if isinstance(loss, (list, tuple, dict)):
        raise ValueError(
            f"The Distiller trains a single-output student; compile it with one loss, got {loss!r}."
        )
    if isinstance(loss, str):
        name = loss
        loss = keras.losses.get(loss)
        if "crossentropy" in name:
            raise ValueError(
                f"compile(loss={name!r}) expects probabilities, but the student outputs logits. Use "
                "e.g. loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True) (the default "
                "when loss is omitted)."
            )
    if isinstance(loss, keras.losses.Loss):
        if loss.get_config().get("from_logits") is False:
            raise ValueError(
                f"The student loss {type(loss).__name__} has from_logits=False, but the student "
                f"outputs logits. Pass {type(loss).__name__}(from_logits=True)."
            )
        return loss.call
    if callable(loss):
        return loss
    raise ValueError(f"Cannot use {loss!r} as the student loss: pass a keras.losses.Loss.")


class _EpochCounter(keras.callbacks.Callback):
    """Sets `Distiller.epoch` at the start of every epoch (including after `initial_epoch` resumes)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch.assign(float(epoch))


@keras.saving.register_keras_serializable(package="tfadakd")
class Distiller(keras.Model):
    """Distills a frozen teacher into a student; `call` is the student's.

    Each training step runs the teacher in inference mode outside the gradient tape, then trains the
    student (and any trainable weights of the distillation loss or its temperature scheme) on

        loss = student_loss_weight * student_loss + distillation_loss_weight * distillation_loss

    where `student_loss` is the compiled loss on the labels and `distillation_loss` the mean of the
    per-sample distillation loss; `sample_weight` weights both (Keras' `sum_over_batch_size`
    reduction: `sum(w * l) / batch`). Both are means over the replica's batch, and the total is
    divided by the number of replicas before the gradient, so that the update equals the
    single-device update on the same global batch under any `tf.distribute` strategy. Logged values
    (`loss`, `student_loss`, `distillation_loss`, `temperature`, `logit_correlation`, the compiled
    metrics) are unscaled and do not depend on the replica count. Losses are computed in float32
    under mixed precision. `evaluate` runs the student alone: its `loss` is the student loss.

    Arguments:
        student: a `keras.Model` producing logits, the model to train.
        teacher: a trained `keras.Model` producing logits of the same shape. It is frozen
            (`teacher.trainable = False`) and its weights never change.
        distillation_loss: a `tfadakd.losses.DistillationLoss` (or its registered name). Default:
            the paper's method, `KD(temperature=AdaptiveMaxLogit(), standardize=True)`.
        student_loss_weight: weight of the compiled loss on labels (0.1 in the reference recipe).
        distillation_loss_weight: weight of the distillation term (9 with standardization, 0.9 for
            plain KD in the RepDistiller recipe).

    Raises:
        ValueError: if the weights are negative or not finite, if teacher and student have different
            input or output shapes, or if the teacher outputs probabilities instead of logits.

    Example:

    ```python
    distiller = tfadakd.Distiller(
        student=student, teacher=teacher,
        distillation_loss=tfadakd.losses.KD(
            temperature=tfadakd.temperatures.AdaptiveMaxLogit(), standardize=True),
        student_loss_weight=0.1, distillation_loss_weight=9.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    distiller.fit(train_ds, validation_data=test_ds, epochs=240)
    distiller.student.save("student.keras")
    ```
    """

    def __init__(
        self,
        student,
        teacher,
        distillation_loss=None,
        student_loss_weight=0.1,
        distillation_loss_weight=9.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for role, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.Model):
                raise ValueError(f"`{role}` must be a keras.Model, got {type(model).__name__}.")
        self.student_loss_weight = _check_weight("student_loss_weight", student_loss_weight)
        self.distillation_loss_weight = _check_weight(
            "distillation_loss_weight", distillation_loss_weight
        )
        if self.student_loss_weight == 0 and self.distillation_loss_weight == 0:
            raise ValueError("student_loss_weight and distillation_loss_weight cannot both be 0.")
        if distillation_loss is None:
            distillation_loss = losses_lib.KD(temperature="adaptive", standardize=True)
        self.distillation_loss = losses_lib.get(distillation_loss)
        teacher.trainable = False
        self.student = student
        self.teacher = teacher
        self._check_models()
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.temperature_tracker = keras.metrics.Mean(name="temperature")
        self.correlation_tracker = keras.metrics.Mean(name="logit_correlation")
        # The 0-based training epoch, for schedules in losses and temperatures (DKD's warm-up, CTKD's
        # gradient reversal). `fit` keeps it current; it is saved with the model, so resumes keep it.
        self.epoch = self.add_weight(
            name="epoch", shape=(), initializer="zeros", trainable=False, dtype="float32"
        )
        # Student and teacher are built models: the Distiller owns no weights of its own, so it is
        # built too (saving and loading, optimizer variables included, rely on it).
        self.built = True

    # ------------------------------------------------------------------ validation
    def _check_models(self):
        """Fails early, with the values, on incompatible models or a teacher that outputs probabilities."""
        t_in, s_in = _shape_or_none(self.teacher, "input_shape"), _shape_or_none(self.student, "input_shape")
        if t_in and s_in and t_in[1:] != s_in[1:]:
            raise ValueError(
                f"Teacher and student take different inputs: teacher input shape {t_in}, student "
                f"input shape {s_in}. Both must read the same batches."
            )
        t_out, s_out = _shape_or_none(self.teacher, "output_shape"), _shape_or_none(self.student, "output_shape")
        if t_out and s_out and t_out[1:] != s_out[1:]:
            raise ValueError(
                f"Teacher and student have different output shapes: teacher {t_out}, student "
                f"{s_out}. Build both for the same number of classes."
            )
        if t_in and all(d is not None for d in t_in[1:]):
            probe = np.random.default_rng(0).normal(size=(2,) + tuple(t_in[1:])).astype("float32")
            outputs = keras.ops.convert_to_numpy(self.teacher(probe, training=False)).astype("float64")
            # Build the loss (and any weights of its temperature scheme) before training starts.
            self.distillation_loss(outputs, outputs, labels=np.zeros(2, "int32"))
            if outputs.ndim == 2 and outputs.shape[-1] > 1 and np.all(outputs >= 0) and np.allclose(
                outputs.sum(axis=-1), 1.0, atol=1e-3
            ):
                raise ValueError(
                    "The teacher outputs probabilities (every row is non-negative and sums to 1), but "
                    "distillation needs logits. Remove the final softmax, e.g. rebuild the last "
                    "layer with activation=None, or use keras.Model(teacher.input, "
                    "teacher.layers[-2].output) if the softmax is a separate layer."
                )

    # ------------------------------------------------------------------ forward
    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def _per_sample_student_loss(self, y, student_logits):
        loss_fn = _resolve_student_loss(getattr(self, "loss", None))
        return tf.reshape(loss_fn(y, student_logits), [-1])

    def _distillation_terms(self, x, y, sample_weight, training):
        """Returns the unscaled losses and logged values for one (per-replica) batch."""
        teacher_logits = tf.stop_gradient(tf.cast(self.teacher(x, training=False), "float32"))
        student_logits = tf.cast(self.student(x, training=training), "float32")
        per_sample_kd, temperature = self.distillation_loss(
            teacher_logits, student_logits, labels=y, epoch=self.epoch, return_temperature=True
        )
        distillation_loss = _weighted_mean(per_sample_kd, sample_weight)
        total = self.distillation_loss_weight * distillation_loss
        if y is None:
            if self.student_loss_weight > 0:
                raise ValueError(
                    "The data has no labels, so the student loss cannot be computed. Pass (x, y) "
                    "batches, or set student_loss_weight=0 for label-free distillation."
                )
            student_loss = tf.zeros((), "float32")
        else:
            student_loss = _weighted_mean(
                self._per_sample_student_loss(y, student_logits), sample_weight
            )
            total += self.student_loss_weight * student_loss
        regularization = self.student.losses + self.distillation_loss.losses
        if regularization:
            total += tf.add_n([tf.cast(r, "float32") for r in regularization])
        logs = {
            "student_loss": student_loss,
            "distillation_loss": distillation_loss,
            "temperature": tf.reduce_mean(temperature),
            "logit_correlation": tf.reduce_mean(F.logit_correlation(teacher_logits, student_logits)),
        }
        return total, student_logits, logs

    # ------------------------------------------------------------------ steps
    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, keeping `self.epoch` equal to the epoch being trained."""
        args = list(args)
        if len(args) > 5:  # callbacks passed positionally
            args[5] = list(args[5] or []) + [_EpochCounter()]
        else:
            kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [_EpochCounter()]
        return super().fit(*args, **kwargs)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        trainable = self.trainable_variables
        with tf.GradientTape() as tape:
            total, student_logits, logs = self._distillation_terms(x, y, sample_weight, True)
            # Gradients are summed over replicas: scale the per-replica mean to the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        gradients = tape.gradient(scaled, trainable)
        self.optimizer.apply_gradients(zip(gradients, trainable))

        batch = tf.shape(student_logits)[0]
        self._loss_tracker.update_state(total, sample_weight=batch)
        trackers = (
            self.student_loss_tracker,
            self.distillation_loss_tracker,
            self.temperature_tracker,
            self.correlation_tracker,
        )
        for tracker in trackers:
            tracker.update_state(logs[tracker.name], sample_weight=batch)
        if y is None:
            return {m.name: m.result() for m in (self._loss_tracker,) + trackers}
        return self.compute_metrics(x, y, student_logits, sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_logits = tf.cast(self.student(x, training=False), "float32")
        loss = _weighted_mean(self._per_sample_student_loss(y, student_logits), sample_weight)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(student_logits)[0])
        logs = self.compute_metrics(x, y, student_logits, sample_weight=sample_weight)
        return {name: value for name, value in logs.items() if name not in TRAINING_LOG_NAMES}

    # ------------------------------------------------------------------ saving
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "distillation_loss": keras.saving.serialize_keras_object(self.distillation_loss),
                "student_loss_weight": self.student_loss_weight,
                "distillation_loss_weight": self.distillation_loss_weight,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher", "distillation_loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
