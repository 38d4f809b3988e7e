"""The `Distiller`: a `keras.Model` that trains a student against a frozen teacher."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfadakd import functional as F
from tfadakd import losses as losses_lib

#: Names of the values the Distiller logs during training, besides the compiled metrics.
TRAINING_LOG_NAMES = ("student_loss", "distillation_loss", "temperature", "logit_correlation", "skipped_batches")

#: What a training step does with a batch whose teacher logits, loss or gradients are NaN or Inf.
NAN_POLICIES = ("raise", "skip_batch")

# Codes of `Distiller._step_status[0]`: why a training step was not applied.
_OK, _TEACHER_NON_FINITE, _LOSS_NON_FINITE, _LABELS_OUT_OF_RANGE = 0, 1, 2, 3


class NonFiniteError(FloatingPointError):
    """Training produced NaN or Inf (teacher logits, loss, gradients or weights); nothing bad was saved.

    Raised by `Distiller.fit` / `train_on_batch` with `nan_policy="raise"`, by `tfadakd.runs.fit_run`
    when a model's training loss becomes non-finite, and by the checkpoint callbacks of
    `tfadakd.callbacks` instead of writing weights that contain NaN or Inf.
    """


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


def _labels_message(num_classes):
    return (
        f"Labels out of range: the student outputs {num_classes} classes, so sparse labels must be "
        f"integers in [0, {num_classes - 1}]. Check the labels of the data set and the number of "
        "classes the models were built for."
    )


class _StepGuard(keras.callbacks.Callback):
    """Raises, right after the batch, the error of a training step that was not applied."""

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.model.raise_if_step_failed(f"{batch + 1} of epoch {getattr(self, '_epoch', 0) + 1}")


def _reducible(logs):
    """Step logs in the form Keras can reduce over the replicas of the current strategy.

    Keras 3 reduces each logged value across workers with `strategy.reduce("MEAN", value, axis=0)`
    under a multi-worker strategy, which fails on scalars: there, log shape-(1,) values, which
    that reduction turns back into scalars. Elsewhere the logs are returned as they are.
    """
    extended = tf.distribute.get_strategy().extended
    multi_worker = getattr(extended, "_in_multi_worker_mode", lambda: False)()
    return {k: tf.reshape(v, [1]) for k, v in logs.items()} if multi_worker else logs


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
        nan_policy: what a training step does when the teacher logits, the total loss or (unless the
            optimizer is a `LossScaleOptimizer`, which handles overflow itself) a gradient is NaN or
            Inf. Either way the batch is not applied: no weight update and no increment of
            `optimizer.iterations` (the student's BatchNormalization moving statistics, updated by
            the forward pass, are not rolled back). `"raise"` (default): `fit` / `train_on_batch`
            then raise `NonFiniteError` naming the cause and the batch. `"skip_batch"`: training
            goes on; the batch is left out of the logged losses and metrics and counted in the
            logged `skipped_batches` (per epoch).

    Sparse integer labels outside `[0, num_classes - 1]` always stop training with an
    `InvalidArgumentError` naming the valid range (an assertion inside the step; under XLA, where
    assertions are compiled out, the batch is not applied and `fit` raises the same error after it).
    Inputs whose per-example shape differs from the student's input shape, or integer (e.g. uint8)
    images where the student takes floats, are refused with a `ValueError` when the step is traced.

    Raises:
        ValueError: if the weights are negative or not finite, if teacher and student have different
            input or output shapes, if the teacher outputs probabilities instead of logits, or if
            `nan_policy` is not one of `"raise"`, `"skip_batch"`.

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
        nan_policy="raise",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if nan_policy not in NAN_POLICIES:
            raise ValueError(
                f"nan_policy must be one of {', '.join(map(repr, NAN_POLICIES))}, got {nan_policy!r}."
            )
        self.nan_policy = nan_policy
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
        if nan_policy == "skip_batch":
            self.skipped_batches_tracker = keras.metrics.Sum(name="skipped_batches")
        # Why the last training step(s) were not applied: [code, smallest label, largest label], read
        # by `fit` after every batch (see `raise_if_step_failed`). Set with object.__setattr__ so that
        # it is not a weight: it is not saved and does not change the checkpoint fingerprint.
        object.__setattr__(self, "_step_status", tf.Variable(
            tf.zeros([3], tf.int64), trainable=False, name="step_status",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        ))
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
        return total, student_logits, logs, teacher_logits

    # ------------------------------------------------------------------ input checks
    def _check_inputs(self, x):
        """Refuses, when the step is traced, inputs of the wrong per-example shape or integer images.

        Returns `x` (behind a run-time shape assertion when the traced shape is not fully known).
        """
        if not tf.is_tensor(x) or isinstance(x, (tf.SparseTensor, tf.RaggedTensor)):
            return x
        expected = _shape_or_none(self.student, "input_shape")
        try:
            expected_dtype = tf.as_dtype(self.student.inputs[0].dtype)
        except (AttributeError, IndexError, TypeError, ValueError):
            expected_dtype = None
        received = tuple(x.shape) if x.shape.rank is not None else None
        if (x.dtype.is_integer or x.dtype == tf.bool) and (expected_dtype is None or expected_dtype.is_floating):
            raise ValueError(
                f"The data yields {x.dtype.name} inputs of shape {received}, but the student takes float "
                f"inputs (dtype {expected_dtype.name if expected_dtype else 'float'}, shape {expected}). "
                "Integer images are raw pixels: convert them to float32 and normalize them first, e.g. "
                "with tfadakd.data.load_cifar (which yields normalized float32 batches) or "
                "tfadakd.data.normalize(images, 'cifar100')."
            )
        if expected is None or received is None:
            return x
        advice = (
            f"each example must have shape {tuple(expected[1:])}. Resize the inputs in the data pipeline, "
            "or build teacher and student for the data's shape (e.g. tfadakd.models.build(name, "
            "input_shape=...))."
        )
        if len(received) != len(expected) or any(
            e is not None and r is not None and e != r for e, r in zip(expected[1:], received[1:])
        ):
            raise ValueError(
                f"The data yields inputs of shape {received} (dtype {x.dtype.name}), but the student "
                f"expects inputs of shape {expected}: {advice}"
            )
        unknown = [i for i in range(1, len(expected)) if expected[i] is not None and received[i] is None]
        if unknown:  # a retraced step sees (None, None, ...): check at run time (not under XLA)
            shape = tf.shape(x)
            fits = tf.reduce_all(tf.stack([tf.equal(shape[i], expected[i]) for i in unknown]))
            check = tf.debugging.Assert(
                fits, [f"The data yields inputs of the wrong shape: the student expects {expected}: {advice} "
                       "Shape of the batch:", shape]
            )
            with tf.control_dependencies([check]):
                x = tf.identity(x)
        return x

    def _num_classes(self):
        shape = _shape_or_none(self.student, "output_shape")
        return shape[-1] if shape and len(shape) == 2 else None

    def _check_labels(self, y):
        """Asserts that sparse labels lie in [0, num_classes - 1].

        Returns `(labels_ok, smallest, largest, y)`, `y` depending on the assertion so that it runs
        before any loss. XLA compiles assertions out: `labels_ok` then reaches `fit` through the
        step status instead.
        """
        num_classes = self._num_classes()
        sparse = (
            tf.is_tensor(y) and y.dtype.is_integer and num_classes is not None and y.shape.rank is not None
            and (y.shape.rank == 1 or (y.shape.rank == 2 and y.shape[-1] == 1))
        )
        if not sparse:
            return tf.constant(True), tf.zeros((), tf.int64), tf.zeros((), tf.int64), y
        smallest, largest = tf.cast(tf.reduce_min(y), tf.int64), tf.cast(tf.reduce_max(y), tf.int64)
        labels_ok = (smallest >= 0) & (largest < num_classes)
        check = tf.debugging.Assert(
            labels_ok, [_labels_message(num_classes), "Smallest label in the batch:", smallest, "largest:", largest]
        )
        with tf.control_dependencies([check]):
            y = tf.identity(y)
        return labels_ok, smallest, largest, y

    # ------------------------------------------------------------------ steps
    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, keeping `self.epoch` equal to the epoch being trained.

        With `nan_policy="raise"` it raises `NonFiniteError` right after a batch with NaN or Inf
        teacher logits, loss or gradients (that batch not applied); out-of-range labels raise an
        `InvalidArgumentError` under either policy.
        """
        args = list(args)
        added = [_EpochCounter()]
        if len(args) > 5:  # callbacks passed positionally
            args[5] = [_StepGuard()] + list(args[5] or []) + added
        else:
            kwargs["callbacks"] = [_StepGuard()] + list(kwargs.get("callbacks") or []) + added
        return super().fit(*args, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 builds a model created under a strategy from its first batch, reducing the
        # per-replica values with `strategy.reduce("MEAN")`, which fails under
        # MultiWorkerMirroredStrategy (keras-team/keras#20585). Only the batch's shapes and dtypes
        # matter there, so give it this worker's first replica's values instead.
        strategy = self._distribute_strategy
        if iterator is not None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(batches),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_on_batch(self, *args, **kwargs):
        """`keras.Model.train_on_batch`, raising like `fit` if the batch could not be applied."""
        logs = super().train_on_batch(*args, **kwargs)
        self.raise_if_step_failed("passed to train_on_batch")
        return logs

    def raise_if_step_failed(self, where="of this step"):
        """Raises the error recorded by a training step that was not applied, and clears it.

        `fit` and `train_on_batch` call it after every batch. A custom loop that calls `train_step`
        itself should call it after each step too: until it does, a recorded problem (non-finite
        values with `nan_policy="raise"`, out-of-range labels under XLA) keeps further updates from
        being applied.

        Arguments:
            where: how the batch is named in the message (e.g. `"3 of epoch 2"`).

        Raises:
            NonFiniteError: for non-finite teacher logits, loss or gradients.
            tf.errors.InvalidArgumentError: for labels outside `[0, num_classes - 1]`.
        """
        status = np.asarray(keras.ops.convert_to_numpy(self._step_status.read_value()))
        code = int(status[0])
        if code == _OK:
            return
        self._step_status.assign(tf.zeros([3], tf.int64))
        if code == _LABELS_OUT_OF_RANGE:
            raise tf.errors.InvalidArgumentError(
                None, None,
                f"{_labels_message(self._num_classes())} The batch {where} has labels from {status[1]} to "
                f"{status[2]}; it was not applied.",
            )
        if code == _TEACHER_NON_FINITE:
            cause = (
                "Non-finite teacher logits (NaN or Inf)",
                "The teacher is broken or the inputs hold NaN/Inf: check the data and evaluate the teacher alone.",
            )
        else:
            cause = (
                "Non-finite training loss or gradients (NaN or Inf) with finite teacher logits",
                "The student diverged (learning rate too high?) or a loss term overflowed: lower the learning rate.",
            )
        raise NonFiniteError(
            f"{cause[0]} in the training batch {where}. The batch was not applied: the student's weights "
            f"and the optimizer state are those before it. {cause[1]} To skip such batches instead, use "
            "Distiller(..., nan_policy='skip_batch') (apps: --nan_policy=skip_batch); they are then counted "
            "in the `skipped_batches` log."
        )

    def _step_ok(self, teacher_logits, total, gradients, labels_ok, smallest, largest):
        """Decides whether this step's update is applied, and records why not (see `_step_status`)."""
        teacher_ok = tf.reduce_all(tf.math.is_finite(teacher_logits))
        loss_ok = tf.math.is_finite(total)
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # One sum per gradient and one check: a NaN or Inf anywhere makes the total non-finite
            # (fewer ops than an is_finite per gradient; benchmarks/distill_overhead.py). A finite sum
            # can only overflow float32 if the gradients are beyond 1e38: a diverged student anyway.
            sums = [tf.reduce_sum(tf.cast(g, "float32")) for g in gradients
                    if g is not None and not isinstance(g, tf.IndexedSlices)]
            if sums:
                loss_ok = loss_ok & tf.math.is_finite(tf.add_n(sums))
        code = tf.where(
            ~labels_ok, _LABELS_OUT_OF_RANGE,
            tf.where(~teacher_ok, _TEACHER_NON_FINITE, tf.where(~loss_ok, _LOSS_NON_FINITE, _OK)),
        )
        record = tf.stack([tf.cast(code, tf.int64), smallest, largest])
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            # Every replica must take the same decision: combine the replicas' records.
            gathered = tf.distribute.get_replica_context().all_gather(
                tf.cast(record, tf.float32)[tf.newaxis], axis=0
            )
            record = tf.cast(
                tf.stack([
                    tf.reduce_max(gathered[:, 0]), tf.reduce_min(gathered[:, 1]), tf.reduce_max(gathered[:, 2])
                ]),
                tf.int64,
            )
        code = record[0]
        previous = self._step_status.read_value()
        pending = previous[0] != _OK  # an earlier step of this execution must still raise
        must_raise = code == _LABELS_OUT_OF_RANGE
        if self.nan_policy == "raise":
            must_raise = code != _OK
        self._step_status.assign(tf.where(pending | ~must_raise, previous, record))
        return (code == _OK) & ~pending

    def _apply_gradients_if(self, ok, gradients, trainable):
        """`optimizer.apply_gradients` if `ok`, else nothing (the iteration count does not move)."""
        if not self.optimizer.built:
            self.optimizer.build(trainable)

        def apply(grads, variables):
            self.optimizer.apply_gradients(zip(grads, variables))

        if not tf.distribute.has_strategy() or tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(ok, lambda: apply(gradients, trainable), lambda: None)
            return

        # As Keras' LossScaleOptimizer does: the optimizer calls `merge_call`, which a `cond` in replica
        # context cannot contain, so the `cond` runs in cross-replica context (`ok` is the same on
        # every replica).
        def cross_replica(distribution, ok, grads, variables):
            ok = distribution.experimental_local_results(ok)[0]
            tf.cond(
                ok,
                lambda: distribution.extended.call_for_each_replica(apply, args=(grads, variables)),
                lambda: None,
            )

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(ok, gradients, trainable))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = self._check_inputs(x)
        labels_ok, smallest, largest, y = self._check_labels(y)
        trainable = self.trainable_variables
        with tf.GradientTape() as tape:
            total, student_logits, logs, teacher_logits = self._distillation_terms(x, y, sample_weight, True)
            # Gradients are summed over replicas: scale the per-replica mean to the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        gradients = tape.gradient(scaled, trainable)
        ok = self._step_ok(teacher_logits, total, gradients, labels_ok, smallest, largest)
        self._apply_gradients_if(ok, gradients, trainable)

        # A batch that is not applied does not enter the logged losses (nor, with "skip_batch", the
        # compiled metrics); with "raise", training stops after it anyway.
        applied = tf.cast(ok, "float32")
        batch = tf.cast(tf.shape(student_logits)[0], "float32") * applied
        self._loss_tracker.update_state(tf.where(ok, total, 0.0), sample_weight=batch)
        trackers = (
            self.student_loss_tracker,
            self.distillation_loss_tracker,
            self.temperature_tracker,
            self.correlation_tracker,
        )
        for tracker in trackers:
            tracker.update_state(tf.where(ok, logs[tracker.name], 0.0), sample_weight=batch)
        if self.nan_policy == "skip_batch":
            # Metric results are summed over replicas, and every replica skips the same batches.
            self.skipped_batches_tracker.update_state((1.0 - applied) / replicas)
            trackers += (self.skipped_batches_tracker,)
            weights = tf.ones(tf.shape(student_logits)[:1]) if sample_weight is None else sample_weight
            sample_weight = tf.cast(weights, "float32") * applied
            student_logits = tf.where(ok, student_logits, 0.0)
        if y is None:
            return _reducible({m.name: m.result() for m in (self._loss_tracker,) + trackers})
        return _reducible(self.compute_metrics(x, y, student_logits, sample_weight=sample_weight))

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = self._check_inputs(x)
        _, _, _, y = self._check_labels(y)
        student_logits = tf.cast(self.student(x, training=False), "float32")
        loss = _weighted_mean(self._per_sample_student_loss(y, student_logits), sample_weight)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(student_logits)[0])
        logs = self.compute_metrics(x, y, student_logits, sample_weight=sample_weight)
        return _reducible({name: value for name, value in logs.items() if name not in TRAINING_LOG_NAMES})

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
                "nan_policy": self.nan_policy,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher", "distillation_loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
