"""Every Keras / TensorFlow private API that `tfadakd._compat` wraps still exists and behaves as relied upon.

Run this file first when trying a new Keras or TensorFlow release (BUILD.md): a failure names the API,
the `_compat` function that wraps it and the installed versions.
"""

import contextlib
import inspect
import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadakd import _compat


@contextlib.contextmanager
def relied_upon(api, function):
    """Turns any failure inside into one message naming the private `api`, its wrapper and the versions."""
    try:
        yield
    except Exception as error:  # AssertionError included: say which API broke, then what
        raise pytest.fail.Exception(
            f"Keras {keras.__version__} / TensorFlow {tf.__version__} changed the private API {api}, which "
            f"tfadakd._compat.{function} relies on: {type(error).__name__}: {error}. Adapt "
            "tfadakd/_compat.py, or keep the bound in pyproject.toml (BUILD.md, 'Trying a new Keras or "
            "TensorFlow release').",
            pytrace=False,
        ) from None


def mlp():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5)(inputs)))


def test_loss_tracker_is_the_mean_fit_logs_as_loss():
    with relied_upon("Trainer._loss_tracker", "loss_tracker"):
        model = mlp()
        model.compile(optimizer="sgd", loss="mse")
        tracker = _compat.loss_tracker(model)
        assert isinstance(tracker, keras.metrics.Mean), f"a {type(tracker).__name__}, not a keras.metrics.Mean"
        assert tracker.name == "loss", f"named {tracker.name!r}, not 'loss'"
        assert any(m is tracker for m in model.metrics), "not in model.metrics (fit would neither reset nor log it)"
        tracker.update_state(2.0, sample_weight=3)
        tracker.update_state(6.0, sample_weight=1)
        assert float(model.get_metrics_result()["loss"]) == pytest.approx(3.0), "its result is not logged as 'loss'"


def test_supports_no_merge_call_is_true_without_a_strategy():
    with relied_upon("tf.__internal__.distribute.strategy_supports_no_merge_call", "supports_no_merge_call"):
        assert _compat.supports_no_merge_call() is True, "not True outside any strategy"
        with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
            value = _compat.supports_no_merge_call()
        assert isinstance(value, bool), f"returned {value!r} under MirroredStrategy, not a bool"


def test_in_multi_worker_mode_is_false_on_one_process():
    with relied_upon("StrategyExtended._in_multi_worker_mode", "in_multi_worker_mode"):
        assert _compat.in_multi_worker_mode() is False, "True under the default strategy"
        assert _compat.in_multi_worker_mode(tf.distribute.OneDeviceStrategy("/cpu:0")) is False
        assert _compat.in_multi_worker_mode(tf.distribute.MirroredStrategy(["/cpu:0"])) is False


WORKER = textwrap.dedent(
    """
    import tensorflow as tf
    from tfadakd import _compat
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    print("RESULT", _compat.in_multi_worker_mode(strategy), _compat.in_multi_worker_mode(), flush=True)
    with strategy.scope():
        print("SCOPED", _compat.in_multi_worker_mode(), flush=True)
    """
)


def test_in_multi_worker_mode_is_true_for_two_workers():
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                     TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    with relied_upon("StrategyExtended._in_multi_worker_mode", "in_multi_worker_mode"):
        for process, (stdout, stderr) in zip(processes, outputs):
            assert process.returncode == 0, stderr[-3000:]
            assert "RESULT True False" in stdout, f"not True for 2 workers (False elsewhere): {stdout!r}"
            assert "SCOPED True" in stdout, f"not True inside the 2-worker strategy's scope: {stdout!r}"


def test_maybe_symbolic_build_gets_the_epoch_iterator_and_builds_from_a_batch():
    seen = {}

    class Probe(keras.Model):
        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            if iterator is not None and "batch" not in seen:
                for begin, end, batches in iterator:  # what _compat.maybe_symbolic_build iterates over
                    seen["steps"] = (begin, end)
                    seen["batch"] = next(batches)
                    break
            return _compat.maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)

    with relied_upon("Trainer._maybe_symbolic_build(iterator, data_batch)", "maybe_symbolic_build"):
        parameters = inspect.signature(keras.Model._maybe_symbolic_build).parameters
        assert {"iterator", "data_batch"} <= set(parameters), f"signature {list(parameters)}"
        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():  # Keras builds symbolically under a strategy
            inputs = keras.Input((4,))
            model = Probe(inputs, keras.layers.Dense(3)(inputs))
            model.compile(optimizer="sgd", loss="mse")
        x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, verbose=0, shuffle=False)
        assert "batch" in seen, "fit did not call _maybe_symbolic_build with its epoch iterator"
        assert all(isinstance(s, int) for s in seen["steps"]), f"iterator yields {seen['steps']!r}, not step numbers"
        batch_x = seen["batch"][0]
        assert tuple(batch_x.shape) == (4, 4), f"the iterator's batches are {seen['batch']!r}"
        # Our workaround then builds from one batch: the data_batch path must build the model.
        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
            inputs = keras.Input((4,))
            model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
            model.compile(optimizer="sgd", loss="mse")
        keras.Model._maybe_symbolic_build(model, data_batch=(tf.constant(x), tf.constant(y), None))
        assert model.optimizer.built, "data_batch did not build the model and optimizer"


def test_flatten_layers_lists_the_model_and_its_nested_layers_once():
    with relied_upon("Layer._flatten_layers", "flatten_layers"):
        inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="inner_dense")], name="inner")
        inputs = keras.Input((4,))
        shared = keras.layers.Dense(4, name="shared")
        outer = keras.Model(inputs, inner(shared(shared(inputs))), name="outer")
        names = [layer.name for layer in _compat.flatten_layers(outer)]
        assert names[0] == "outer", f"does not start with the model itself: {names}"
        assert {"inner", "inner_dense", "shared"} <= set(names), f"misses nested layers: {names}"
        assert len(names) == len(set(names)), f"lists a layer twice: {names}"
        without = [layer.name for layer in _compat.flatten_layers(outer, include_self=False)]
        assert without == names[1:], f"include_self=False gives {without}, not {names[1:]}"


def test_is_functional_tells_functional_models_from_subclassed_ones():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    with relied_upon("keras.src.models.functional.Functional", "is_functional"):
        assert _compat.is_functional(mlp()), "keras.Model(inputs, outputs) is not Functional"
        assert not _compat.is_functional(Subclassed()), "a subclassed keras.Model counts as Functional"
        assert not _compat.is_functional(keras.layers.Dense(3)), "a layer counts as Functional"
        assert _compat.is_functional(keras.models.clone_model(mlp())), "a clone of a Functional model is not"


def _tiny_tflite():
    """The flatbuffer of a dense layer with constant weights, converted with builtin ops only."""
    kernel = tf.constant(np.arange(12, dtype="float32").reshape(4, 3))

    @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
    def dense(x):
        return tf.matmul(x, kernel) + 1.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions([dense.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _check_schema(schema, flatbuffer):
    model = schema.Model.GetRootAs(flatbuffer, 0)
    assert model.SubgraphsLength() == 1, f"{model.SubgraphsLength()} subgraphs"
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        opcode = model.OperatorCodes(i)
        codes.append(max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode()))
    subgraph = model.Subgraphs(0)
    operators = [names[codes[subgraph.Operators(o).OpcodeIndex()]] for o in range(subgraph.OperatorsLength())]
    assert "FULLY_CONNECTED" in operators, f"operators {operators}"
    assert isinstance(schema.BuiltinOperator.CUSTOM, int), "no BuiltinOperator.CUSTOM"
    assert sum(model.Buffers(i).DataLength() for i in range(model.BuffersLength())) >= 4 * 4 * 3, "no weights"


def test_tflite_schema_reads_a_converted_file(monkeypatch):
    flatbuffer = _tiny_tflite()
    with relied_upon("ai_edge_litert.schema_py_generated (or TensorFlow's copy)", "tflite_schema"):
        _check_schema(_compat.tflite_schema(), flatbuffer)
    # Without ai-edge-litert: TensorFlow's private copy of the schema.
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with relied_upon("tensorflow.lite.python.schema_py_generated", "tflite_schema"):
        schema = _compat.tflite_schema()
        assert schema.__name__.startswith("tensorflow."), f"{schema.__name__}, not TensorFlow's copy"
        _check_schema(schema, flatbuffer)


def test_variable_index_is_the_position_given_to_build():
    with relied_upon("BaseOptimizer._get_variable_index", "variable_index"):
        variables = [keras.Variable(np.zeros(2), name=f"v{i}") for i in range(3)]
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        optimizer.build(variables)
        indices = [_compat.variable_index(optimizer, v) for v in variables]
        assert indices == [0, 1, 2], f"indices {indices}, not the order given to build"


def test_distiller_student_loss_is_what_keras_distillation_was_compiled_with():
    with relied_upon("keras.distillation.Distiller._student_loss_for_serialization", "distiller_student_loss"):
        from keras.distillation import Distiller, LogitsDistillation

        inputs = keras.Input((4,))
        teacher = keras.Model(inputs, keras.layers.Dense(3)(inputs))
        student = keras.Model(inputs, keras.layers.Dense(3)(inputs))
        distiller = Distiller(teacher=teacher, student=student, distillation_losses=LogitsDistillation(temperature=2.0))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        distiller.compile(optimizer="sgd", loss=loss)
        assert _compat.distiller_student_loss(distiller) is loss, "not the loss passed to compile()"


def test_weights_to_bytes_is_what_save_weights_writes(tmp_path):
    with relied_upon("keras.src.saving.saving_lib.H5IOStore / _save_state", "weights_to_bytes"):
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5)(inputs)))
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
        model.fit(np.ones((8, 4)), np.ones((8, 3)), verbose=0)  # momentum buffers and iterations are non-zero
        path = tmp_path / "m.weights.h5"
        path.write_bytes(_compat.weights_to_bytes(model))
        keras.utils.set_random_seed(1)
        other = keras.models.clone_model(model)
        other.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
        other.optimizer.build(other.trainable_variables)
        other.load_weights(path)
        for a, b in zip(model.weights + model.optimizer.variables, other.weights + other.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{a.path} not restored")
        assert int(other.optimizer.iterations) == 1


def test_serialize_as_public_names_a_subclass_as_the_keras_class():
    class Wide(keras.layers.Dense):
        pass

    with relied_upon("keras.src.api_export.REGISTERED_OBJS_TO_NAMES", "serialize_as_public"):
        _compat.serialize_as_public(Wide, "keras.layers.Dense")
        config = keras.saving.serialize_keras_object(Wide(3))
        assert (config["module"], config["class_name"], config["registered_name"]) == ("keras.layers", "Dense", None)
        assert type(keras.saving.deserialize_keras_object(config)) is keras.layers.Dense


def test_uncompiled_saves_no_compile_state_and_restores_it(tmp_path):
    import zipfile

    model = mlp()
    model.compile(optimizer="sgd", loss="mse")
    optimizer = model.optimizer
    with relied_upon("Trainer.compiled", "uncompiled"):
        with _compat.uncompiled(model):
            model.save(tmp_path / "m.keras")
        with zipfile.ZipFile(tmp_path / "m.keras") as archive:
            assert not json.loads(archive.read("config.json")).get("compile_config")
        assert model.compiled and model.optimizer is optimizer
        assert not keras.models.load_model(tmp_path / "m.keras").compiled
