"""The `Distiller`: a `keras.Model` that trains a student against a frozen teacher.

What a distiller is lives here: its models and their validation, the loss terms, `train_step` /
`test_step` and the config. The step guard (whether a step is applied, `NonFiniteError`) is in
`tfadakd.step_guard`, the checks of inputs, labels and compiled loss in `tfadakd.input_checks`, the
Keras and TensorFlow internals in `tfadakd._compat`.
"""


import keras
import numpy as np
import tensorflow as tf

from tfadakd import _compat
from tfadakd._checks import check_number
from tfadakd import functional as F
from tfadakd import input_checks
from tfadakd import losses as losses_lib
from tfadakd import methods as methods_lib
from tfadakd import step_guard
from tfadakd.features import model_features
from tfadakd.step_guard import NAN_POLICIES, NonFiniteError  # noqa: F401  (public here too)

#: The name of the one term that `distillation_loss=` makes (so that it logs `distillation_loss`).
LEGACY_TERM = "distillation"


def _weighted_mean(values, sample_weight):
    """`sum(w * v) / batch`: Keras' default `sum_over_batch_size` reduction of per-sample values."""
    if sample_weight is not None:
        values = values * tf.reshape(tf.cast(sample_weight, values.dtype), [-1])
    return tf.reduce_sum(values) / tf.cast(tf.size(values), values.dtype)


def _reducible(logs):
    """Step logs in the form Keras can reduce over the replicas of the current strategy.

    Keras 3 reduces each logged value across workers with `strategy.reduce("MEAN", value, axis=0)`
    under a multi-worker strategy, which fails on scalars: there, log shape-(1,) values, which
    that reduction turns back into scalars. Elsewhere the logs are returned as they are.
    """
    return {k: tf.reshape(v, [1]) for k, v in logs.items()} if _compat.in_multi_worker_mode() else logs


def _check_single_output(role, model, outputs):
    """Refuses a model with several outputs (a list, tuple or dict): distillation needs one logits tensor."""
    if isinstance(outputs, (list, tuple, dict)) and len(outputs) != 1:
        raise ValueError(
            f"The {role} has {len(outputs)} outputs, but distillation needs one: the logits, shape (batch, "
            f"classes). Keep only the logits, e.g. keras.Model({role}.inputs, {role}.outputs[0])."
        )


def _check_models(teacher, student):
    """Fails early, with the values, on incompatible models; returns a probe batch (or None when the input
    shape is not fully known)."""
    for role, model in (("teacher", teacher), ("student", student)):
        _check_single_output(role, model, getattr(model, "outputs", None))
    shape = input_checks.shape_or_none
    t_in, s_in = shape(teacher, "input_shape"), shape(student, "input_shape")
    if t_in and s_in and t_in[1:] != s_in[1:]:
        raise ValueError(
            f"Teacher and student take different inputs: teacher input shape {t_in}, student "
            f"input shape {s_in}. Both must read the same batches."
        )
    t_out, s_out = shape(teacher, "output_shape"), shape(student, "output_shape")
    if t_out and s_out and t_out[1:] != s_out[1:]:
        raise ValueError(
            f"Teacher and student have different output shapes: teacher {t_out}, student "
            f"{s_out}. Build both for the same number of classes."
        )
    if not (t_in and all(d is not None for d in t_in[1:])):
        return None
    probe = np.random.default_rng(0).normal(size=(2,) + tuple(t_in[1:])).astype("float32")
    outputs = teacher(probe, training=False)
    _check_single_output("teacher", teacher, outputs)
    outputs = keras.ops.convert_to_numpy(outputs).astype("float64")
    if outputs.ndim == 2 and outputs.shape[-1] > 1 and np.all(outputs >= 0) and np.allclose(
        outputs.sum(axis=-1), 1.0, atol=1e-3
    ):
        raise ValueError(
            "The teacher outputs probabilities (every row is non-negative and sums to 1), but "
            "distillation needs logits. Remove the final softmax, e.g. rebuild the last "
            "layer with activation=None, or use keras.Model(teacher.input, "
            "teacher.layers[-2].output) if the softmax is a separate layer."
        )
    return probe


def _term_pairs(terms):
    """`[(term, weight)]` from `terms=`: pairs, or bare terms / names (weight 1)."""
    if isinstance(terms, (str, methods_lib.Term, losses_lib.DistillationLoss)) or not terms:
        raise ValueError(f"`terms` must be a non-empty list of (term, weight) pairs, e.g. [(tfadakd.methods."
                         f"FitNet('stage2'), 100.0)], got {terms!r}.")
    pairs = []
    for item in terms:
        term, weight = item if isinstance(item, (tuple, list)) and len(item) == 2 else (item, 1.0)
        term = methods_lib.get(term)
        pairs.append((term, check_number(f"the weight of term {term.name!r}", weight, minimum=0, owner="Distiller")))
    names = [term.name for term, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"Two terms are named {repeated[0]!r}: give each its own name (e.g. "
                         f"FitNet('stage1', name='fitnet1')), so that their losses are logged apart.")
    return pairs


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

    A training batch may bring the teacher's logits, `({"images": x, "teacher_logits": t}, y)`: the
    step then uses `t` and skips the teacher's forward pass (otherwise the same step, guards
    included). `tfadakd.teacher_cache.TeacherCache.attach(pipeline)` builds such batches from an
    exact cache of the teacher's logits on every epoch's augmented views.

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
    (The step guard: `tfadakd.step_guard`; the input checks: `tfadakd.input_checks`.)

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
        terms=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Why the last training step(s) were not applied, read by `fit` after every batch. Set with
        # object.__setattr__ so that its variable is not a weight: it is not saved and does not change
        # the checkpoint fingerprint.
        object.__setattr__(self, "_step_guard", step_guard.StepGuard(nan_policy))
        self.nan_policy = nan_policy
        for role, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.Model):
                raise ValueError(f"`{role}` must be a keras.Model, got {type(model).__name__}.")
        self.student_loss_weight = check_number("student_loss_weight", student_loss_weight, minimum=0,
                                                owner="Distiller")
        self.distillation_loss_weight = check_number("distillation_loss_weight", distillation_loss_weight, minimum=0,
                                                     owner="Distiller")
        if terms is not None:
            if distillation_loss is not None:
                raise ValueError("Pass the distillation either as `terms=[(term, weight), ...]` or as "
                                 "`distillation_loss=` with `distillation_loss_weight=`, not both.")
            pairs = _term_pairs(terms)
            logit_losses = [t.loss for t, _ in pairs if isinstance(t, methods_lib.LogitTerm)]
            self.distillation_loss = logit_losses[0] if logit_losses else None
        else:
            if distillation_loss is None:
                distillation_loss = losses_lib.KD(temperature="adaptive", standardize=True)
            self.distillation_loss = losses_lib.get(distillation_loss)
            pairs = [(methods_lib.LogitTerm(self.distillation_loss, name=LEGACY_TERM), self.distillation_loss_weight)]
        self._legacy = terms is None
        if self.student_loss_weight == 0 and all(w == 0 for _, w in pairs):
            raise ValueError("student_loss_weight and distillation_loss_weight cannot both be 0." if self._legacy else
                             "student_loss_weight and every term's weight are 0: nothing to train on.")
        self.terms = [term for term, _ in pairs]
        self.term_weights = [weight for _, weight in pairs]
        teacher.trainable = False
        self.student = student
        self.teacher = teacher
        probe = _check_models(teacher, student)
        # One extractor per model for the union of what the terms read: one forward pass each per step.
        reads_t = {n for t in self.terms for n in t.reads}
        reads_s = {n for t in self.terms for n in t.student_reads}
        object.__setattr__(self, "_teacher_features", model_features(teacher, reads_t, "teacher"))
        object.__setattr__(self, "_student_features", model_features(student, reads_s, "student"))
        self._build_terms(probe)
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.term_trackers = [keras.metrics.Mean(name=f"{t.name}_loss") for t in self.terms]
        self._log_names = self._term_log_names()
        self.log_trackers = [keras.metrics.Mean(name=n) for names in self._log_names for n in names.values()]
        self.correlation_tracker = keras.metrics.Mean(name="logit_correlation")
        if nan_policy == "skip_batch":
            self.skipped_batches_tracker = keras.metrics.Sum(name="skipped_batches")
        # What training logs besides the compiled metrics (left out of `evaluate`'s logs).
        self.training_log_names = tuple(
            ["student_loss", "logit_correlation", "skipped_batches"] + [m.name for m in self.term_trackers]
            + [m.name for m in self.log_trackers])
        # The 0-based training epoch, for schedules in losses and temperatures (DKD's warm-up, CTKD's
        # gradient reversal). `fit` keeps it current; it is saved with the model, so resumes keep it.
        self.epoch = self.add_weight(
            name="epoch", shape=(), initializer="zeros", trainable=False, dtype="float32"
        )
        # Student and teacher are built models: the Distiller owns no weights of its own, so it is
        # built too (saving and loading, optimizer variables included, rely on it).
        self.built = True

    @property
    def reads_teacher_features(self):
        """Whether a term reads more of the teacher than its logits (a teacher-logit cache cannot serve it)."""
        return any(name != methods_lib.LOGITS for t in self.terms for name in t.reads)

    def _term_log_names(self):
        """Per term, {its log name: the logged name}: a name that several terms log gets the term's prefix."""
        counts = {}
        for term in self.terms:
            for name in term.log_names:
                counts[name] = counts.get(name, 0) + 1
        return [{n: (n if counts[n] == 1 else f"{t.name}_{n}") for n in t.log_names} for t in self.terms]

    def _build_terms(self, probe):
        """Sizes every term's connectors from the features of a probe batch (when the input shape is known)."""
        if probe is None:
            return
        teacher = self._features(self._teacher_features, self.teacher, probe, False)
        student = self._features(self._student_features, self.student, probe, False)
        labels = np.zeros(len(probe), "int32")
        for term in self.terms:
            term(teacher, student, labels=labels)  # builds (connectors, a learnable temperature's weights)

    # ------------------------------------------------------------------ forward
    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    @staticmethod
    def _features(extractor, model, x, training):
        if extractor is None:
            return {methods_lib.LOGITS: model(x, training=training)}
        return dict(extractor(x, training=training))

    def _per_sample_student_loss(self, y, student_logits):
        loss_fn = input_checks.student_loss_fn(getattr(self, "loss", None))
        return tf.reshape(loss_fn(y, student_logits), [-1])

    def _distillation_terms(self, x, y, sample_weight, training, teacher_logits=None):
        """Returns the unscaled losses and logged values for one (per-replica) batch; the teacher runs
        unless the batch brought its logits (`teacher_logits`)."""
        if teacher_logits is None:
            teacher = self._features(self._teacher_features, self.teacher, x, False)
        elif self.reads_teacher_features:
            raise ValueError(
                "The batch brings cached teacher logits, but the terms "
                f"{[t.name for t in self.terms if t.reads_features]} read the teacher's intermediate features, "
                "which a teacher-logit cache does not hold. Train on plain (images, labels) batches: the teacher "
                "then runs in every step.")
        else:
            teacher = {methods_lib.LOGITS: teacher_logits}
        teacher = {k: tf.stop_gradient(tf.cast(v, "float32")) for k, v in teacher.items()}
        teacher_logits = teacher[methods_lib.LOGITS]
        student = self._features(self._student_features, self.student, x, training)
        student_logits = tf.cast(student[methods_lib.LOGITS], "float32")
        total = tf.zeros((), "float32")
        logs = {}
        for term, weight, tracker, names in zip(self.terms, self.term_weights, self.term_trackers, self._log_names):
            per_sample, term_logs = term(teacher, student, labels=y, epoch=self.epoch)
            loss = _weighted_mean(per_sample, sample_weight)
            total += weight * loss
            logs[tracker.name] = loss
            logs.update({names[k]: tf.cast(v, "float32") for k, v in term_logs.items()})
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
        regularization = self.student.losses + [r for term in self.terms for r in term.losses]
        if regularization:
            total += tf.add_n([tf.cast(r, "float32") for r in regularization])
        logs["student_loss"] = student_loss
        logs["logit_correlation"] = tf.reduce_mean(F.logit_correlation(teacher_logits, student_logits))
        return total, student_logits, logs, teacher_logits

    # ------------------------------------------------------------------ steps
    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached_logits = input_checks.split_teacher_logits(x, self.student)
        x = input_checks.check_inputs(x, self.student)
        labels_ok, smallest, largest, y = self._check_labels(y)
        trainable = self.trainable_variables
        with tf.GradientTape() as tape:
            total, student_logits, logs, teacher_logits = self._distillation_terms(
                x, y, sample_weight, True, teacher_logits=cached_logits)
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
        loss_tracker = _compat.loss_tracker(self)
        loss_tracker.update_state(tf.where(ok, total, 0.0), sample_weight=batch)
        trackers = (self.student_loss_tracker, *self.term_trackers, *self.log_trackers, self.correlation_tracker)
        for tracker in trackers:
            tracker.update_state(tf.where(ok, logs[tracker.name], 0.0), sample_weight=batch)
        if self.nan_policy == "skip_batch":
            # Metric results are summed over replicas, and every replica skips the same batches.
            self.skipped_batches_tracker.update_state((1.0 - applied) / replicas)
            trackers += (self.skipped_batches_tracker,)
        if y is None:
            return _reducible(self._none_if_all_skipped({m.name: m.result() for m in (loss_tracker,) + trackers}))
        if self.nan_policy != "skip_batch":
            return _reducible(self.compute_metrics(x, y, student_logits, sample_weight=sample_weight))
        # The compiled metrics (`metrics=` ignores sample weights) are updated, then put back for a skipped batch.
        own = {id(m) for m in (loss_tracker,) + trackers}
        variables = [v for m in self.metrics if id(m) not in own for v in m.variables]
        before = [tf.identity(v) for v in variables]
        with tf.control_dependencies(before):
            self.compute_metrics(x, y, tf.where(ok, student_logits, 0.0), sample_weight=sample_weight)
        for variable, old in zip(variables, before):
            variable.assign(tf.where(ok, variable, old))
        with tf.control_dependencies([v.value for v in variables]):
            return _reducible(self.get_metrics_result())

    def get_metrics_result(self):
        """Keras' metric results (what `fit` logs at the end of an epoch), NaN while every batch was skipped."""
        return self._none_if_all_skipped(super().get_metrics_result())

    def _none_if_all_skipped(self, logs):
        """NaN for every logged value but `skipped_batches` while no batch of the epoch was applied: there is
        nothing to average (not 0 loss and 0 accuracy)."""
        if self.nan_policy != "skip_batch":
            return logs
        none_applied = _compat.loss_tracker(self).count <= 0
        return {k: v if k == "skipped_batches" else tf.where(none_applied, float("nan"), tf.cast(v, "float32"))
                for k, v in logs.items()}

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, _ = input_checks.split_teacher_logits(x, self.student)  # evaluation runs the student alone
        x = input_checks.check_inputs(x, self.student)
        _, _, _, y = self._check_labels(y)
        student_logits = tf.cast(self.student(x, training=False), "float32")
        loss = _weighted_mean(self._per_sample_student_loss(y, student_logits), sample_weight)
        _compat.loss_tracker(self).update_state(loss, sample_weight=tf.shape(student_logits)[0])
        logs = self.compute_metrics(x, y, student_logits, sample_weight=sample_weight)
        return _reducible({name: value for name, value in logs.items() if name not in self.training_log_names})

    # ------------------------------------------------------------------ step guard
    # `_check_labels`, `_step_ok` and `_apply_gradients_if` are the seams a subclass (e.g. the ablations
    # of benchmarks/distill_overhead.py) overrides; the work is in tfadakd.input_checks / step_guard.
    def _num_classes(self):
        return input_checks.num_classes(self.student)

    def _check_labels(self, y):
        """`(labels_ok, smallest, largest, y)`: see `tfadakd.input_checks.check_labels`."""
        return input_checks.check_labels(y, self._num_classes())

    def _step_ok(self, teacher_logits, total, gradients, labels_ok, smallest, largest):
        """Whether this step's update is applied; records why not (`tfadakd.step_guard.StepGuard.decide`)."""
        step = step_guard.StepValues(teacher_logits, total, gradients, labels_ok, self.optimizer)
        return self._step_guard.decide(step, smallest, largest)

    def _apply_gradients_if(self, ok, gradients, trainable):
        """`optimizer.apply_gradients` if `ok`, else nothing (the iteration count does not move)."""
        step_guard.apply_gradients_if(self.optimizer, ok, gradients, trainable)

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
        self._step_guard.raise_if_failed(where, num_classes=self._num_classes())

    # ------------------------------------------------------------------ fit
    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, keeping `self.epoch` equal to the epoch being trained.

        With `nan_policy="raise"` it raises `NonFiniteError` right after a batch with NaN or Inf
        teacher logits, loss or gradients (that batch not applied); out-of-range labels raise an
        `InvalidArgumentError` under either policy.
        """
        args = list(args)
        before, after = [step_guard.RaiseFailedSteps()], [_EpochCounter()]
        if len(args) > 5:  # callbacks passed positionally
            args[5] = before + list(args[5] or []) + after
        else:
            kwargs["callbacks"] = before + list(kwargs.get("callbacks") or []) + after
        return super().fit(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        """`keras.Model.train_on_batch`, raising like `fit` if the batch could not be applied."""
        logs = super().train_on_batch(*args, **kwargs)
        self.raise_if_step_failed("passed to train_on_batch")
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' symbolic build, made to work under MultiWorkerMirroredStrategy (see `_compat`)."""
        return _compat.maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)

    # ------------------------------------------------------------------ saving
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "student_loss_weight": self.student_loss_weight,
                "nan_policy": self.nan_policy,
            }
        )
        if self._legacy:  # the form every release wrote: files stay readable by 0.1
            config["distillation_loss"] = keras.saving.serialize_keras_object(self.distillation_loss)
            config["distillation_loss_weight"] = self.distillation_loss_weight
        else:
            config["terms"] = [[keras.saving.serialize_keras_object(t), w] for t, w in zip(self.terms, self.term_weights)]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher", "distillation_loss"):
            if key in config:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("terms") is not None:
            config["terms"] = [(keras.saving.deserialize_keras_object(t), w) for t, w in config["terms"]]
        return cls(**config)
