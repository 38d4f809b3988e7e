"""The one door to Keras and TensorFlow internals: every private API tfadakd uses goes through here.

Each function wraps exactly one private attribute, method or module of Keras or TensorFlow and says what
it relies on. `tests/test_compat.py` checks every one of them against the installed releases, with a
message naming the API and the versions, so that a Keras or TensorFlow release that removes or changes
one fails there first and plainly (not deep inside a training step). The versions in `pyproject.toml`
are bounded to the range these tests passed on; BUILD.md says how to try a new release.

Checked against: Keras 3.15.1, TensorFlow 2.21.0.

Example:

```python
from tfadakd import _compat

_compat.loss_tracker(model).update_state(loss)     # instead of model._loss_tracker
```
"""

import keras

# TensorFlow is imported inside the functions that need it: `tfadakd.keras_distillation` uses this module
# on every Keras backend, TensorFlow not installed included.


def loss_tracker(model):
    """The `keras.metrics.Mean` named "loss" that `Model.compile` creates and `fit` logs as `loss`.

    Relies on: `Trainer._loss_tracker` (keras/src/trainers/trainer.py), set by `compile()` and listed
    first in `model.metrics` (so `fit` resets it every epoch and logs its result as `loss`). A custom
    `train_step` that reports its own loss updates it, as Keras' own `train_step` does. Private since
    Keras 3.0; checked on Keras 3.15.
    """
    return model._loss_tracker


def supports_no_merge_call():
    """Whether the current strategy runs optimizer updates in pure replica context (no `merge_call`).

    When it does, `optimizer.apply_gradients` may sit inside a `tf.cond` in replica context; when it
    does not, the `cond` must move to cross-replica context (Keras' `LossScaleOptimizer` makes the same
    choice with the same function). True without a strategy.

    Relies on: `tf.__internal__.distribute.strategy_supports_no_merge_call` (TensorFlow's
    distribute/merge_call_interim.py, exported for Keras since 2021). Checked on TensorFlow 2.21.
    """
    import tensorflow as tf

    return tf.__internal__.distribute.strategy_supports_no_merge_call()


def in_multi_worker_mode(strategy=None):
    """Whether `strategy` (default: the current one) spans several workers (processes).

    Keras 3 then reduces each logged value across workers with `strategy.reduce("MEAN", v, axis=0)`,
    which needs a leading axis (see `tfadakd.distiller._reducible`).

    Relies on: `StrategyExtended._in_multi_worker_mode()` (TensorFlow's distribute_lib.py; implemented
    by every strategy's `extended`, True for `MultiWorkerMirroredStrategy` with more than one worker).
    Keras 3's TensorFlow trainer makes the same test with it. Checked on TensorFlow 2.21.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    return bool(strategy.extended._in_multi_worker_mode())


def maybe_symbolic_build(model, iterator=None, data_batch=None):
    """`keras.Model._maybe_symbolic_build`, built from this worker's first replica's batch under MWMS.

    Keras 3 builds a model created under a strategy from the first batch of `fit` / `evaluate`,
    reducing the per-replica values with `strategy.reduce("MEAN")`, which fails under
    `MultiWorkerMirroredStrategy` (keras-team/keras#20585). Only the batch's shapes and dtypes matter
    there, so this gives it this worker's first replica's values instead. Elsewhere it is Keras' own.
    A `keras.Model` subclass overrides its `_maybe_symbolic_build` with this function.

    Relies on: `Trainer._maybe_symbolic_build(iterator=None, data_batch=None)` (Keras' TensorFlow
    trainer; `fit` and `evaluate` call it with their epoch iterator, then reset the iterator) and on
    that iterator yielding `(begin_step, end_step, batches)` triples whose `batches` is a Python
    iterator. Checked on Keras 3.15.
    """
    import tensorflow as tf

    strategy = model.distribute_strategy
    if iterator is not None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v,
                next(batches),
            )
            break
        iterator = None
    return keras.Model._maybe_symbolic_build(model, iterator=iterator, data_batch=data_batch)


def flatten_layers(model, include_self=True):
    """`model` and all its layers, nested ones included (depth first, each once); without `model` itself
    when `include_self` is False.

    Relies on: `Layer._flatten_layers(include_self=True, recursive=True)` (keras/src/layers/layer.py),
    private since Keras 3.0. Checked on Keras 3.15.
    """
    return model._flatten_layers(include_self=include_self)


def is_functional(model):
    """Whether `model` is a Functional model: built as `keras.Model(inputs, outputs)` (the tfadakd zoo,
    `keras.applications`), so that `keras.models.clone_model` can rebuild it layer by layer. A subclassed
    `keras.Model` (its own `call`) is not; `keras.Sequential` is its own public class (test it with
    `isinstance(model, keras.Sequential)`).

    Relies on: `keras.src.models.functional.Functional`, the class `keras.Model(inputs, outputs)` returns,
    which Keras 3 does not export. Checked on Keras 3.15.
    """
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def tflite_schema():
    """The Python module of the TFLite flatbuffer schema (`Model`, `BuiltinOperator`, ...), to read a
    `.tflite` file's operators and buffers without an interpreter.

    Relies on: `ai_edge_litert.schema_py_generated` when the `ai-edge-litert` package is installed (a
    public module of LiteRT), else TensorFlow's private copy `tensorflow.lite.python.schema_py_generated`
    (the same generated flatbuffer code, shipped inside TensorFlow's TFLite converter). Checked on
    TensorFlow 2.21 and ai-edge-litert 2.3.
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def variable_index(optimizer, variable):
    """The index of the trainable `variable` among those `optimizer.build` received.

    Lets an optimizer's `update_step` find its per-variable slots (a list built in `build`), as Keras'
    own optimizers do.

    Relies on: `BaseOptimizer._get_variable_index(variable)` (keras/src/optimizers/base_optimizer.py),
    private since Keras 3.0. Checked on Keras 3.15.
    """
    return optimizer._get_variable_index(variable)


def distiller_student_loss(distiller):
    """The student loss a `keras.distillation.Distiller` was compiled with (None before `compile`).

    Its `compile` replaces `loss` by its own wrapper and keeps what the user passed in a private
    attribute, which `get_compile_config` needs to write a `.keras` file that reloads compiled.

    Relies on: `keras.distillation.Distiller._student_loss_for_serialization`
    (keras/src/distillation/distiller.py), set by its `compile()`. Checked on Keras 3.15.
    """
    return getattr(distiller, "_student_loss_for_serialization", None)


def weights_to_bytes(model):
    """The content `model.save_weights("x.weights.h5")` writes (weights, optimizer state), built in memory.

    `tfadakd.callbacks.ResumeCheckpoint` writes these bytes itself, so a full disk is an ordinary
    `OSError` from Python's file write (never HDF5 failing inside a half-written file, which can end the
    process with a segmentation fault when h5py closes it), and it knows the checkpoint's SHA-256 before
    the file exists. The bytes load back with the public `model.load_weights(path)`.

    Relies on: `keras.src.saving.saving_lib.H5IOStore` (which accepts an `io.BytesIO`) and
    `saving_lib._save_state(saveable, weights_store, assets_store, inner_path, visited_saveables)`,
    what `save_weights_only` (behind `Model.save_weights`) calls. Checked on Keras 3.15.
    """
    import io

    from keras.src.saving import saving_lib

    if not model.built:
        raise ValueError("The model is not built yet: call it on a batch (or fit it) before saving its weights.")
    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    finally:
        store.close()
    return buffer.getvalue()


def serialize_as_public(cls, public_name):
    """Makes `.keras` files name instances of `cls` as the public Keras class `public_name`.

    `tfadakd.models.FusedBatchNormalization` computes exactly what `keras.layers.BatchNormalization`
    computes, with the same arguments and weights; written under the public name, a model of the zoo loads
    with plain `keras.models.load_model` in a process without tfadakd (a colleague's, a serving stack's).
    Loading gives the public class; `tfadakd.models.fuse_batch_norm` brings the fused kernel back.

    Relies on: `keras.src.api_export.REGISTERED_OBJS_TO_NAMES` (class -> exported name), which
    `serialization_lib.serialize_with_public_class` reads to write `module` and `class_name` of a built-in
    class. Only the class -> name direction is set, so the public name still deserializes to the public
    class. Checked on Keras 3.15.
    """
    from keras.src import api_export

    api_export.REGISTERED_OBJS_TO_NAMES[cls] = public_name


def uncompiled(model):
    """A context in which `model.save` writes no compile state (optimizer, loss, metrics).

    A compiled model's `.keras` file names its optimizer's class; tfadakd's PyTorch-semantics
    `tfadakd.optimizers.SGD` cannot be found where tfadakd is not installed, and Keras then refuses the
    whole file. The models that runs write are for inference and distillation (training resumes from
    checkpoints, not from these files), so they are written without it.

    Relies on: `Trainer.compiled` (keras/src/trainers/trainer.py), which `get_compile_config` reads
    (it returns `{}` when False, and saving then writes no `compile_config`); the optimizer's state is
    then left out too. Checked on Keras 3.15.
    """
    import contextlib

    @contextlib.contextmanager
    def context():
        compiled = getattr(model, "compiled", False)
        optimizer = getattr(model, "optimizer", None)
        model.compiled = False
        if compiled:
            model.optimizer = None
        try:
            yield model
        finally:
            model.compiled = compiled
            if compiled:
                model.optimizer = optimizer

    return context()
