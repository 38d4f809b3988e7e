"""tfadakd's losses inside Keras' own `keras.distillation`, on every Keras 3 backend.

`Logits(loss)` wraps any tfadakd loss (`KD` with any temperature scheme, `DKD`, with or without logit
standardization) as a `keras.distillation.DistillationLoss`, and `Features(term)` a feature term of
`tfadakd.methods` that reads one layer of each model (FitNet, RKD, AT on one stage):

```python
import keras
import tfadakd

distiller = keras.distillation.Distiller(
    teacher=teacher,
    student=student,
    distillation_losses=tfadakd.keras_distillation.Logits(
        tfadakd.losses.KD(temperature="adaptive", standardize=True)
    ),
    student_loss_weight=0.5,
)
distiller.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
distiller.fit(x, y, epochs=10)
```

What `Logits` does, and what it adds to a plain `DistillationLoss`:

- **Reduction.** tfadakd losses return per-sample values; `keras.distillation.Distiller` wants a scalar.
  `compute_loss` returns their mean over the batch (`keras.distillation` passes no sample weights). Under a
  `tf.distribute` strategy on the TensorFlow backend it returns that per-replica mean divided by the number
  of replicas, like every built-in `keras.losses.Loss` (Keras sums gradients over replicas): the same
  convention as `LogitsDistillation(loss=keras.losses.KLDivergence())`, so the mix with the student loss
  and the gradients are right. (The Distiller's `distillation_loss`/`total_loss` logs are then divided by
  the number of replicas, as for Keras' own losses; `loss` is right.) On JAX the batch is global: no scaling.
- **Trainable temperatures.** `Logits` is also a `keras.layers.Layer`, so the Distiller tracks it: a
  learned temperature (CTKD's `temperatures.Learnable`) trains with the student's optimizer and is saved in
  the `.keras` file. The wrapped loss is built as soon as the Distiller is created (from the teacher's
  output shape), so that the optimizer sees every weight.
- **Labels.** `keras.distillation.Distiller` gives a distillation loss no labels, which `DKD` needs: use
  `tfadakd.keras_distillation.Distiller` (a `keras.distillation.Distiller` that hands the batch's labels
  to every `Logits`), or call `compute_loss(..., labels=y)` yourself.
- **Epochs.** Schedules (DKD's warm-up, CTKD's gradient-reversal cosine) follow the `epoch` variable of
  each `Logits`, kept current by the `EpochCounter` callback (added by `tfadakd.keras_distillation.Distiller.fit`).
  While it is unset (-1, e.g. under a plain `keras.distillation.Distiller` fitted without the callback)
  the schedules are at their end values, as when a tfadakd loss is called with `epoch=None`: DKD's
  warm-up factor 1 and CTKD's full reversal.

Only `keras` is needed (no TensorFlow): this module runs on the TensorFlow, JAX and PyTorch backends.
"""

import keras
from keras import ops

from tfadakd import _compat
from tfadakd import losses as losses_lib

#: The epoch the schedules see while none is set: "past every schedule" (warm-ups done, full reversal),
#: the values tfadakd losses use with `epoch=None`.
_NO_EPOCH = 1e9


def _scale_for_distribution(value):
    """Divides a per-replica value by the number of replicas under a `tf.distribute` strategy.

    Keras' convention for a loss (`keras.losses.Loss` does the same): gradients are summed over replicas.
    Only the TensorFlow backend replicates this way; elsewhere the value is returned unchanged.
    """
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf  # only on the TensorFlow backend

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return value if replicas == 1 else value * (1.0 / replicas)


class _Batch:
    """Holds the labels of the batch being trained (set by `Distiller.compute_loss`), untracked by Keras."""

    labels = None


@keras.saving.register_keras_serializable(package="tfadakd", name="keras_distillation.Logits")
class Logits(keras.distillation.DistillationLoss, keras.layers.Layer):
    """A tfadakd loss as a `keras.distillation.DistillationLoss` on the final outputs (logits).

    Arguments:
        loss: a `tfadakd.losses` loss (`KD(...)`, `DKD(...)`), a registered name (`"kd"`) or a
            serialized loss config. Its per-sample values are averaged over the batch.
        **kwargs: `keras.layers.Layer` arguments (`name`, ...).

    Raises:
        ValueError: for a `loss` that is not a tfadakd loss (Keras losses belong in
            `keras.distillation.LogitsDistillation`).

    Example:

    >>> adapter = tfadakd.keras_distillation.Logits(tfadakd.losses.KD(temperature="adaptive", standardize=True))
    >>> adapter.compute_loss(teacher_logits, student_logits)   # a scalar: the batch mean
    """

    def __init__(self, loss, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.loss = losses_lib.get(loss)
        # The 0-based training epoch for the loss's schedules; -1 while unknown (see the module docstring).
        self.epoch = self.add_weight(
            name="epoch", shape=(), initializer=keras.initializers.Constant(-1.0), trainable=False,
            dtype="float32",
        )
        self._batch = _Batch()
        self.built = True

    # ------------------------------------------------------------------ keras.distillation API
    def validate_model_compatibility(self, teacher, student):
        """Called by the Distiller's constructor: builds the wrapped loss for the teacher's logits.

        The wrapped loss (and a learned temperature's weights) must exist before the optimizer is
        built. Models without symbolic outputs (subclassed) are skipped: build such a loss yourself by
        calling it once, e.g. `adapter.loss(zeros, zeros, labels=zero_labels)`.
        """
        outputs = getattr(teacher, "outputs", None)
        if not outputs or len(outputs) != 1 or len(outputs[0].shape) != 2 or outputs[0].shape[-1] is None:
            return
        self.build_loss(outputs[0].shape[-1])

    def build_loss(self, classes):
        """Builds the wrapped loss (its temperature's weights included) for `classes` classes."""
        if self.loss.built and self.loss.temperature.built:
            return
        zeros = ops.zeros((2, classes), "float32")
        self.loss(zeros, zeros, labels=ops.zeros((2,), "int32"))

    def validate_outputs(self, teacher_outputs, student_outputs):
        super().validate_outputs(teacher_outputs, student_outputs)
        if isinstance(teacher_outputs, (list, tuple, dict)):
            raise ValueError(
                "tfadakd.keras_distillation.Logits distills one logit tensor (batch, classes); the "
                f"models return a {type(teacher_outputs).__name__}. Wrap a model with one output."
            )

    def compute_loss(self, teacher_outputs, student_outputs, labels=None, epoch=None, **kwargs):
        """The batch mean of the wrapped loss's per-sample values (scaled for `tf.distribute`).

        Arguments:
            teacher_outputs, student_outputs: (batch, classes) logits.
            labels: the batch's labels (DKD needs them); defaults to those set by
                `tfadakd.keras_distillation.Distiller`.
            epoch: the 0-based epoch for the loss's schedules; defaults to this object's `epoch`
                variable (end-of-schedule values while it is -1).

        Returns:
            A float32 scalar.
        """
        if labels is None:
            labels = self._batch.labels
        if epoch is None:
            epoch = ops.convert_to_tensor(self.epoch)
            epoch = ops.where(epoch < 0.0, _NO_EPOCH, epoch)
        if isinstance(self.loss, losses_lib.DKD) and labels is None:
            raise ValueError(
                "DKD needs the labels, which keras.distillation.Distiller does not pass to its "
                "distillation losses: use tfadakd.keras_distillation.Distiller (the same Distiller, "
                "handing the labels to tfadakd's losses) or compute_loss(..., labels=y)."
            )
        per_sample = self.loss(teacher_outputs, student_outputs, labels=labels, epoch=epoch)
        return _scale_for_distribution(ops.mean(per_sample))

    # ------------------------------------------------------------------ saving
    def get_config(self):
        return {**super().get_config(), "loss": keras.saving.serialize_keras_object(self.loss)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfadakd", name="keras_distillation.Features")
class Features(keras.distillation.DistillationLoss, keras.layers.Layer):
    """A feature term of `tfadakd.methods` (FitNet, AT on one stage, RKD) inside `keras.distillation`.

    `keras.distillation.Distiller` extracts one layer of each model per distillation loss (its
    `teacher_layer_name` / `student_layer_name`, which this adapter takes from the term) in the same forward
    pass as the logits, and calls `compute_loss` on the two features. The term's connector (FitNet's) is
    sized from the two layers' output shapes when the Distiller is created, and, this adapter being a
    Keras layer, trains with the student and is saved in the `.keras` file.

    Arguments:
        term: a `tfadakd.methods` term reading one layer of each model, or a registered name ("fitnet").
        **kwargs: `keras.layers.Layer` arguments.

    Raises:
        ValueError: for a term that reads several layers (keras.distillation gives a loss one layer per
            model: use `tfadakd.Distiller(terms=...)`), or reads the logits (use `Logits`).

    Example:

    ```python
    distiller = keras.distillation.Distiller(
        teacher=teacher, student=student, student_loss_weight=1.0,
        distillation_losses=[tfadakd.keras_distillation.Features(tfadakd.methods.FitNet("stage2"))],
        distillation_loss_weights=[100.0])
    ```
    """

    def __init__(self, term, **kwargs):
        from tfadakd import methods as methods_lib

        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.term = methods_lib.get(term)
        if len(self.term.reads) != 1 or not self.term.reads_features:
            raise ValueError(
                f"keras.distillation gives a distillation loss one layer of each model; the term "
                f"{self.term.name!r} reads {list(self.term.reads)}. Use tfadakd.Distiller(terms=...) for it, or "
                "tfadakd.keras_distillation.Logits for a logit loss.")
        self.teacher_layer_name = self.term.reads[0]
        self.student_layer_name = self.term.student_reads[0]
        self.built = True

    def validate_model_compatibility(self, teacher, student):
        """Called by the Distiller's constructor: checks the layer names and sizes the term's connector."""
        shapes = []
        for role, model, name in (("teacher", teacher, self.teacher_layer_name),
                                  ("student", student, self.student_layer_name)):
            try:
                shapes.append((2,) + tuple(model.get_layer(name).output.shape[1:]))
            except (ValueError, AttributeError):
                names = [layer.name for layer in getattr(model, "layers", [])]
                raise ValueError(f"The {role} {model.name!r} has no layer named {name!r} with a symbolic output "
                                 f"(layers: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}).") from None
        if not self.term.built:
            key = self.teacher_layer_name
            self.term.build_for({key: shapes[0]}, {key: shapes[1]})

    def validate_outputs(self, teacher_outputs, student_outputs):
        pass  # the two layers' shapes may differ: the term matches them (or says why it cannot)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """The batch mean of the term's per-sample values (scaled for `tf.distribute`)."""
        key = self.teacher_layer_name
        per_sample, _ = self.term({key: ops.stop_gradient(teacher_outputs)}, {key: student_outputs})
        return _scale_for_distribution(ops.mean(per_sample))

    def get_config(self):
        return {**super().get_config(), "term": keras.saving.serialize_keras_object(self.term)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["term"] = keras.saving.deserialize_keras_object(config["term"])
        return cls(**config)


class EpochCounter(keras.callbacks.Callback):
    """Sets the `epoch` of every `Logits` among `model.distillation_losses` at the start of each epoch.

    Add it to `fit` of a plain `keras.distillation.Distiller` for DKD's warm-up and CTKD's reversal
    schedule to follow the real epoch (`tfadakd.keras_distillation.Distiller.fit` adds it itself).
    """

    def on_epoch_begin(self, epoch, logs=None):
        for loss in getattr(self.model, "distillation_losses", ()):
            if isinstance(loss, Logits):
                loss.epoch.assign(float(epoch))


# Registered under its module's name: "tfadakd>Distiller" is tfadakd's own `tfadakd.Distiller`.
@keras.saving.register_keras_serializable(package="tfadakd", name="keras_distillation.Distiller")
class Distiller(keras.distillation.Distiller):
    """`keras.distillation.Distiller` that hands tfadakd's losses the labels and the epoch.

    The same model, arguments and behaviour as `keras.distillation.Distiller`, plus:

    - during `compute_loss`, every `Logits` among `distillation_losses` sees the batch's labels
      (`DKD` needs them);
    - `fit` adds an `EpochCounter`, so that schedules (DKD's warm-up, CTKD's gradient reversal) follow the
      real epoch (`initial_epoch` resumes included).

    Example:

    >>> distiller = tfadakd.keras_distillation.Distiller(
    ...     teacher, student, tfadakd.keras_distillation.Logits(tfadakd.losses.DKD(beta=8.0)),
    ...     student_loss_weight=0.5)
    """

    def _adapters(self):
        return [loss for loss in self.distillation_losses if isinstance(loss, Logits)]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        adapters = self._adapters()
        for adapter in adapters:
            adapter._batch.labels = y
        try:
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        finally:
            for adapter in adapters:
                adapter._batch.labels = None

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with an `EpochCounter` after the given callbacks."""
        args = list(args)
        if len(args) > 5:  # callbacks passed positionally
            args[5] = list(args[5] or []) + [EpochCounter()]
        else:
            kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [EpochCounter()]
        return super().fit(*args, **kwargs)

    # keras.distillation.Distiller overrides `compile` without these two, so a plain one comes back
    # from a `.keras` file uncompiled (Keras warns); this one comes back compiled, optimizer state included.
    def get_compile_config(self):
        config = super().get_compile_config()
        student_loss = _compat.distiller_student_loss(self)
        if config and student_loss is not None:
            config = dict(config)
            config["loss"] = keras.saving.serialize_keras_object(student_loss)
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)
