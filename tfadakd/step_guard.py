"""The step guard: whether a training step's update is applied, why not, and the error raised after it.

A `Distiller` training step is refused (no weight update, no increment of `optimizer.iterations`) when
one of the `FAILURES` occurs. Each is one `Failure` row: its code in the recorded step status, its
check, its message and advice, and the `nan_policy` values under which `fit` raises it after the batch
(under the others the batch is skipped and training goes on). Adding a reason to refuse a step is one
more row; its check reads the step's values from a `StepValues`.

Example (what `Distiller.train_step` and `Distiller.fit` do):

```python
guard = StepGuard("raise")                                        # once, in Distiller.__init__
# in the traced step, per replica:
ok = guard.decide(StepValues(teacher_logits, total, gradients, labels_ok, optimizer), smallest, largest)
apply_gradients_if(optimizer, ok, gradients, variables)
# eagerly, after the batch:
guard.raise_if_failed("3 of epoch 2", num_classes=100)            # NonFiniteError, InvalidArgumentError
```
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Tuple

import keras
import numpy as np
import tensorflow as tf

from tfadakd import _compat

#: What a training step does with a batch whose teacher logits, loss or gradients are NaN or Inf.
NAN_POLICIES = ("raise", "skip_batch")

#: The code of the step status when every step was applied.
OK = 0


class NonFiniteError(FloatingPointError):
    """Training produced NaN or Inf (teacher logits, loss, gradients or weights); nothing bad was saved.

    Raised by `Distiller.fit` / `train_on_batch` with `nan_policy="raise"`, by `tfadakd.runs.fit_run`
    when a model's training loss becomes non-finite, and by the checkpoint callbacks of
    `tfadakd.callbacks` instead of writing weights that contain NaN or Inf.
    """


class StepValues(NamedTuple):
    """What the checks of `FAILURES` look at: one training step's values on one replica."""

    teacher_logits: Any
    total: Any  # the unscaled total loss
    gradients: Any
    labels_ok: Any  # from `tfadakd.input_checks.check_labels`
    optimizer: Any


def _labels_out_of_range(step):
    return ~step.labels_ok


def _teacher_non_finite(step):
    return ~tf.reduce_all(tf.math.is_finite(step.teacher_logits))


def _loss_non_finite(step):
    ok = tf.math.is_finite(step.total)
    if not isinstance(step.optimizer, keras.optimizers.LossScaleOptimizer):  # it handles overflow itself
        # One sum per gradient and one check: a NaN or Inf anywhere makes the total non-finite (fewer
        # ops than an is_finite per gradient; benchmarks/distill_overhead.py). A finite sum can only
        # overflow float32 if the gradients are beyond 1e38: a diverged student anyway.
        sums = [tf.reduce_sum(tf.cast(g, "float32")) for g in step.gradients
                if g is not None and not isinstance(g, tf.IndexedSlices)]
        if sums:
            ok = ok & tf.math.is_finite(tf.add_n(sums))
    return ~ok


@dataclasses.dataclass(frozen=True)
class Failure:
    """One reason to refuse a training step.

    Attributes:
        code: its code in the step status: unique, not `OK`. When replicas disagree, the largest
            code is reported.
        name: a short identifier.
        refuses: `fn(step: StepValues) -> scalar bool tensor`, True if the step must not be applied.
        error: the exception class raised after the step.
        message, advice, note: what went wrong, what to do, what follows; `str.format` templates
            over `where` (the batch), `num_classes`, `last_class`, `smallest`, `largest` (the
            batch's sparse label range).
        raised_under: the `nan_policy` values under which `fit` raises it.

    Example: `Failure(4, "loss_too_large", lambda step: step.total > 1e6, NonFiniteError, ...)`.
    """

    code: int
    name: str
    refuses: Callable
    error: type
    message: str
    advice: str
    note: str
    raised_under: Tuple[str, ...]

    def describe(self, **details):
        """The message and the advice, formatted with `details`."""
        return f"{self.message} {self.advice}".format(**_with_last_class(details))

    def exception(self, **details):
        """The error to raise, its text formatted with `details`."""
        text = f"{self.message} {self.advice} {self.note}".format(**_with_last_class(details))
        return self.error(None, None, text) if issubclass(self.error, tf.errors.OpError) else self.error(text)


def _with_last_class(details):
    num_classes = details.get("num_classes")
    return dict(details, last_class=None if num_classes is None else num_classes - 1)


_NOT_APPLIED = (
    "in the training batch {where}. The batch was not applied: the student's weights and the optimizer "
    "state are those before it."
)
_SKIP_HINT = (
    "To skip such batches instead, use Distiller(..., nan_policy='skip_batch') (apps: "
    "--nan_policy=skip_batch); they are then counted in the `skipped_batches` log."
)

#: The reasons to refuse a training step, the first that occurs being recorded.
FAILURES = (
    Failure(
        3, "labels_out_of_range", _labels_out_of_range, tf.errors.InvalidArgumentError,
        message="Labels out of range: the student outputs {num_classes} classes, so sparse labels must be "
                "integers in [0, {last_class}].",
        advice="Check the labels of the data set and the number of classes the models were built for.",
        note="The batch {where} has labels from {smallest} to {largest}; it was not applied.",
        raised_under=NAN_POLICIES,
    ),
    Failure(
        1, "teacher_non_finite", _teacher_non_finite, NonFiniteError,
        message="Non-finite teacher logits (NaN or Inf) " + _NOT_APPLIED,
        advice="The teacher is broken or the inputs hold NaN/Inf: check the data and evaluate the teacher alone.",
        note=_SKIP_HINT,
        raised_under=("raise",),
    ),
    Failure(
        2, "loss_non_finite", _loss_non_finite, NonFiniteError,
        message="Non-finite training loss or gradients (NaN or Inf) with finite teacher logits " + _NOT_APPLIED,
        advice="The student diverged, a loss term overflowed, or the inputs hold NaN/Inf that the teacher's "
               "kernels hid (some fused CPU kernels turn NaN into 0): check a batch of the data with np.isfinite "
               "first, then lower the learning rate.",
        note=_SKIP_HINT,
        raised_under=("raise",),
    ),
)


def failure(name):
    """The row of `FAILURES` called `name`."""
    return next(f for f in FAILURES if f.name == name)


class StepGuard:
    """Decides, inside the step, whether its update is applied, and raises after it if it was not.

    The decision is recorded in `status`, `[code, smallest label, largest label]`: a variable that is
    not a model weight (not saved). A recorded failure that must raise keeps later steps of the same
    execution from being applied until `raise_if_failed` reads and clears it.

    Arguments:
        nan_policy: one of `NAN_POLICIES`.
    """

    def __init__(self, nan_policy="raise"):
        if nan_policy not in NAN_POLICIES:
            raise ValueError(
                f"nan_policy must be one of {', '.join(map(repr, NAN_POLICIES))}, got {nan_policy!r}."
            )
        self.nan_policy = nan_policy
        self._raising = [f.code for f in FAILURES if nan_policy in f.raised_under]
        self.status = tf.Variable(
            tf.zeros([3], tf.int64), trainable=False, name="step_status",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def decide(self, step, smallest, largest):
        """Returns whether this step's update is applied (a scalar bool tensor) and records why not.

        Every replica takes the same decision. Call it in replica context, inside the step.
        """
        code = OK
        for row in reversed(FAILURES):  # the first row that refuses wins
            code = tf.where(row.refuses(step), row.code, code)
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
        previous = self.status.read_value()
        pending = previous[0] != OK  # an earlier step of this execution must still raise
        must_raise = tf.reduce_any(tf.equal(code, tf.constant(self._raising, tf.int64)))
        self.status.assign(tf.where(pending | ~must_raise, previous, record))
        return (code == OK) & ~pending

    def raise_if_failed(self, where="of this step", num_classes=None):
        """Raises the error recorded by a step that was not applied, and clears it; eagerly, after the step.

        Arguments:
            where: how the batch is named in the message (e.g. `"3 of epoch 2"`).
            num_classes: the student's number of classes, for the labels message.
        """
        status = np.asarray(keras.ops.convert_to_numpy(self.status.read_value()))
        code = int(status[0])
        if code == OK:
            return
        self.status.assign(tf.zeros([3], tf.int64))
        row = next(f for f in FAILURES if f.code == code)
        raise row.exception(where=where, num_classes=num_classes, smallest=status[1], largest=status[2])


def apply_gradients_if(optimizer, ok, gradients, variables):
    """`optimizer.apply_gradients` if `ok`, else nothing (the iteration count does not move).

    Call it in replica context; `ok` must be the same on every replica (as `StepGuard.decide` makes it).
    """
    if not optimizer.built:
        optimizer.build(variables)

    def apply(grads, variables):
        optimizer.apply_gradients(zip(grads, variables))

    if not tf.distribute.has_strategy() or _compat.supports_no_merge_call():
        tf.cond(ok, lambda: apply(gradients, variables), lambda: None)
        return

    # As Keras' LossScaleOptimizer does: the optimizer calls `merge_call`, which a `cond` in replica
    # context cannot contain, so the `cond` runs in cross-replica context (`ok` is the same on every
    # replica).
    def cross_replica(distribution, ok, grads, variables):
        ok = distribution.experimental_local_results(ok)[0]
        tf.cond(
            ok,
            lambda: distribution.extended.call_for_each_replica(apply, args=(grads, variables)),
            lambda: None,
        )

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(ok, gradients, variables))


class RaiseFailedSteps(keras.callbacks.Callback):
    """Calls `model.raise_if_step_failed` right after every training batch (`Distiller.fit` adds it)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.model.raise_if_step_failed(f"{batch + 1} of epoch {getattr(self, '_epoch', 0) + 1}")
