"""What the `Distiller` refuses in the data and in the compiled loss, before any computation.

Inputs of the wrong per-example shape or integer images are refused when the step is traced; sparse
labels outside `[0, num_classes - 1]` by an assertion inside the step (and, under XLA where assertions
are compiled out, by the step guard: `tfadakd.step_guard`); a compiled loss that expects probabilities
when the student outputs logits at the first step.

Example:

```python
x = check_inputs(x, student)                                  # ValueError for uint8 images
labels_ok, smallest, largest, y = check_labels(y, num_classes(student))
loss_fn = student_loss_fn(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
```
"""

import keras
import tensorflow as tf

from tfadakd.step_guard import failure


def shape_or_none(model, attribute):
    """`model.input_shape` / `model.output_shape` (named by `attribute`) as a tuple, or None if unknown or nested."""
    try:
        shape = getattr(model, attribute)
    except (AttributeError, ValueError):
        return None
    return tuple(shape) if isinstance(shape, (tuple, list)) and shape and not isinstance(shape[0], (tuple, list)) else None


def num_classes(student):
    """The number of classes of a student with `(batch, classes)` outputs, else None."""
    shape = shape_or_none(student, "output_shape")
    return shape[-1] if shape and len(shape) == 2 else None


def labels_message(num_classes):
    """Why labels are refused and what to do, for a student with `num_classes` outputs."""
    return failure("labels_out_of_range").describe(num_classes=num_classes)


#: The key under which a batch carries the teacher's logits: `({"images": x, "teacher_logits": t}, y)`.
TEACHER_LOGITS = "teacher_logits"


def split_teacher_logits(x, student=None):
    """`(inputs, teacher_logits)` of a batch's `x`; `teacher_logits` is None unless `x` carries them.

    A batch carries the teacher's logits as `x = {"images": images, "teacher_logits": logits}` (what
    `tfadakd.teacher_cache.TeacherCache.attach` yields): the `Distiller` then skips the teacher's
    forward pass. Refused when the traced logits do not have the student's `(batch, classes)` shape.

    Example:

    >>> images, logits = split_teacher_logits({"images": x, "teacher_logits": t})
    """
    if not isinstance(x, dict) or TEACHER_LOGITS not in x:
        return x, None
    if set(x) != {"images", TEACHER_LOGITS}:
        raise ValueError(
            f"A batch that carries the teacher's logits must be {{'images': ..., 'teacher_logits': ...}}, got the "
            f"keys {sorted(x)}. Use tfadakd.teacher_cache.TeacherCache.attach(pipeline) to build such batches."
        )
    logits = x[TEACHER_LOGITS]
    classes = num_classes(student) if student is not None else None
    shape = tuple(logits.shape) if hasattr(logits, "shape") else None
    advice = "the cached logits belong to another teacher or data set (rebuild the cache for this teacher)."
    if classes is not None and shape is not None and (len(shape) != 2 or shape[-1] not in (None, classes)):
        raise ValueError(
            f"The batch's teacher_logits have shape {shape}, but the student outputs {classes} classes: {advice}"
        )
    if classes is not None and shape is not None and shape[-1] is None:  # a relaxed trace: check at run time
        check = tf.debugging.Assert(
            tf.equal(tf.shape(logits)[-1], classes),
            [f"The batch's teacher_logits do not have the student's {classes} classes: {advice} Shape:",
             tf.shape(logits)])
        with tf.control_dependencies([check]):
            logits = tf.identity(logits)
    return x["images"], logits


def check_inputs(x, student):
    """Refuses, when the step is traced, inputs of the wrong per-example shape or integer images.

    Returns `x` (behind a run-time shape assertion when the traced shape is not fully known).

    Raises:
        ValueError: for integer or bool inputs to a float student, or a per-example shape that
            differs from the student's input shape.
    """
    if not tf.is_tensor(x) or isinstance(x, (tf.SparseTensor, tf.RaggedTensor)):
        return x
    expected = shape_or_none(student, "input_shape")
    try:
        expected_dtype = tf.as_dtype(student.inputs[0].dtype)
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


def check_labels(y, num_classes):
    """Asserts that sparse labels lie in [0, num_classes - 1].

    Returns `(labels_ok, smallest, largest, y)`, `y` depending on the assertion so that it runs
    before any loss. XLA compiles assertions out: `labels_ok` then reaches `fit` through the
    step guard instead. Labels that are not sparse integers pass unchecked.
    """
    sparse = (
        tf.is_tensor(y) and y.dtype.is_integer and num_classes is not None and y.shape.rank is not None
        and (y.shape.rank == 1 or (y.shape.rank == 2 and y.shape[-1] == 1))
    )
    if not sparse:
        return tf.constant(True), tf.zeros((), tf.int64), tf.zeros((), tf.int64), y
    smallest, largest = tf.cast(tf.reduce_min(y), tf.int64), tf.cast(tf.reduce_max(y), tf.int64)
    labels_ok = (smallest >= 0) & (largest < num_classes)
    check = tf.debugging.Assert(
        labels_ok, [labels_message(num_classes), "Smallest label in the batch:", smallest, "largest:", largest]
    )
    with tf.control_dependencies([check]):
        y = tf.identity(y)
    return labels_ok, smallest, largest, y


def student_loss_fn(loss):
    """Turns the compiled `loss` into a per-sample function `fn(y_true, y_pred) -> (batch,)`.

    The student produces logits, so a cross-entropy that expects probabilities is refused.

    Raises:
        ValueError: for several losses, a cross-entropy on probabilities, or something not a loss.
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
