"""The Distiller: what it trains, what it logs, how it saves, and what it refuses."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
import tfadakd
from tfadakd.losses import KD
from tfadakd.temperatures import AdaptiveMaxLogit

NUM_CLASSES = 10


def cnn(seed, batch_norm=False, width=8):
    """A tiny CIFAR-shaped CNN producing logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(width, 3, padding="same")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x))


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, NUM_CLASSES, n)


def ce(logits, labels):
    return -np.log(ref.softmax(logits)[np.arange(len(labels)), labels])


def test_teacher_weights_are_bit_identical_after_fit_and_only_the_student_trains():
    teacher, student = cnn(0, batch_norm=True), cnn(1, batch_norm=True)
    teacher_before = [w.copy() for w in teacher.get_weights()]  # includes BN moving statistics
    student_before = [w.copy() for w in student.get_weights()]
    distiller = tfadakd.Distiller(student, teacher)
    assert {id(v) for v in distiller.trainable_variables} == {id(v) for v in student.trainable_variables}
    distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    x, y = data(64)
    distiller.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    changed = [not np.array_equal(b, a) for b, a in zip(student_before, student.get_weights())]
    assert all(changed)  # every student variable, BN moving statistics included, moved


@pytest.mark.parametrize("weighted", [False, True])
def test_logged_losses_equal_the_formula(weighted):
    """One step at learning rate 0: logged values against NumPy, with and without sample_weight."""
    teacher, student = cnn(0), cnn(1)
    x, y = data(16)
    w = np.linspace(0.0, 2.0, 16).astype("float32") if weighted else np.ones(16, "float32")
    distiller = tfadakd.Distiller(
        student, teacher, KD(AdaptiveMaxLogit(), standardize=True), 0.1, 9.0
    )
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    kwargs = {"sample_weight": w} if weighted else {}
    logs = distiller.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, **kwargs).history

    t = teacher.predict(x, verbose=0).astype("float64")
    s = student.predict(x, verbose=0).astype("float64")
    zt, zs = ref.standardize(t), ref.standardize(s)
    temperature = ref.adaptive_temperature(zt, zs)
    kd = np.sum(w * ref.kd(zt, zs, temperature)) / 16
    student_loss = np.sum(w * ce(s, y)) / 16
    np.testing.assert_allclose(logs["distillation_loss"][0], kd, rtol=1e-5)
    np.testing.assert_allclose(logs["student_loss"][0], student_loss, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"][0], 0.1 * student_loss + 9.0 * kd, rtol=1e-5)
    np.testing.assert_allclose(logs["temperature"][0], temperature.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["logit_correlation"][0], ref.pearson(t, s).mean(), rtol=1e-4)


def test_sample_weight_zero_removes_samples():
    """Weights 0 on half the batch equal the loss of the other half, scaled by 1/2."""
    x, y = data(16)
    w = np.r_[np.ones(8), np.zeros(8)].astype("float32")

    def one_step(x, y, **kwargs):
        distiller = tfadakd.Distiller(cnn(1), cnn(0), KD(4.0), 0.1, 0.9)
        distiller.compile(optimizer=keras.optimizers.SGD(0.0))
        return distiller.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False, **kwargs).history

    weighted, half = one_step(x, y, sample_weight=w), one_step(x[:8], y[:8])
    for name in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(weighted[name][0], half[name][0] / 2, rtol=1e-5)


def test_update_equals_the_gradient_of_the_formula():
    teacher, student = cnn(0), cnn(1)
    reference_student = cnn(1)
    x, y = data(16)
    loss_fn = KD(AdaptiveMaxLogit(), standardize=True)
    distiller = tfadakd.Distiller(student, teacher, loss_fn, 0.1, 9.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)

    with tf.GradientTape() as tape:
        s = reference_student(x, training=True)
        t = teacher(x, training=False)
        ce_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, s)
        total = 0.1 * ce_loss + 9.0 * tf.reduce_mean(loss_fn(t, s))
    grads = tape.gradient(total, reference_student.trainable_variables)
    for variable, grad, trained in zip(reference_student.trainable_variables, grads, student.trainable_variables):
        np.testing.assert_allclose(trained.numpy(), variable.numpy() - 0.5 * grad.numpy(), rtol=1e-5, atol=1e-6)


def test_evaluate_runs_the_student_alone():
    class CountCalls(keras.layers.Layer):
        def build(self, input_shape):
            self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)

        def call(self, inputs):
            self.calls.assign_add(1.0)
            return inputs

    teacher_core = cnn(0)
    counter = CountCalls()
    teacher = keras.Model(teacher_core.input, counter(teacher_core.output))
    student = cnn(1)
    distiller = tfadakd.Distiller(student, teacher)
    distiller.compile(optimizer="sgd", metrics=["accuracy"])
    calls_after_init = float(counter.calls.numpy())
    x, y = data(32)
    result = distiller.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert float(counter.calls.numpy()) == calls_after_init
    assert set(result) == {"loss", "accuracy"}
    s = student.predict(x, verbose=0)
    np.testing.assert_allclose(result["loss"], ce(s.astype("float64"), y).mean(), rtol=1e-5)
    np.testing.assert_allclose(result["accuracy"], np.mean(s.argmax(-1) == y), rtol=1e-6)


def test_keras_round_trip_keeps_predictions_config_and_compile(tmp_path):
    distiller = tfadakd.Distiller(
        cnn(1, batch_norm=True), cnn(0, batch_norm=True), KD(AdaptiveMaxLogit("teacher"), standardize=True), 0.25, 3.0
    )
    distiller.compile(optimizer=tfadakd.optimizers.SGD(0.05), metrics=["accuracy"])
    x, y = data(32)
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(path)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "compile" in m or "Skipping variable loading" in m], messages
    assert isinstance(loaded, tfadakd.Distiller)
    assert loaded.student_loss_weight == 0.25 and loaded.distillation_loss_weight == 3.0
    assert loaded.distillation_loss.temperature.source == "teacher"
    assert loaded.distillation_loss.standardize is True
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0))
    np.testing.assert_array_equal(loaded.teacher.predict(x, verbose=0), distiller.teacher.predict(x, verbose=0))
    assert int(loaded.optimizer.iterations.numpy()) == 2
    # training resumes identically from the saved optimizer state
    h1 = distiller.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    h2 = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-6)
    for a, b in zip(distiller.student.get_weights(), loaded.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_jit_compile_gives_the_same_step():
    x, y = data(32)
    results = []
    for jit in (False, True):
        distiller = tfadakd.Distiller(cnn(1), cnn(0))
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit)
        results.append(distiller.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history)
        results.append(distiller.student.get_weights())
    np.testing.assert_allclose(results[0]["loss"], results[2]["loss"], rtol=1e-5)
    for a, b in zip(results[1], results[3]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_mixed_bfloat16_student_trains_with_float32_losses():
    teacher = cnn(0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        student = cnn(1)
        distiller = tfadakd.Distiller(student, teacher)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
        assert student.output.dtype == "bfloat16"
        x, y = data(32)
        logs = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(v).all() for v in logs.values())
    assert distiller.distillation_loss.compute_dtype == "float32"


def test_mixed_float16_scales_the_loss_and_updates_like_float32():
    """Under mixed_float16 (with a LossScaleOptimizer, which Keras' compile also adds by itself) one step
    moves the student's weights as float32 does, up to float16 rounding: a loss left unscaled, or
    scaled twice, would be off by the loss scale."""
    teacher = cnn(0)
    x, y = data(16)
    updates = {}
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            student = cnn(1)
            distiller = tfadakd.Distiller(student, teacher)
            optimizer = keras.optimizers.SGD(0.5)
            if policy == "mixed_float16":  # a scale that does not overflow on step 1 (2^15 would skip it)
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**6)
            distiller.compile(optimizer=optimizer)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        before = [w.copy() for w in student.get_weights()]
        logs = distiller.train_on_batch(x, y, return_dict=True)
        updates[policy] = ([a - b for a, b in zip(student.get_weights(), before)], logs)
    assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
    assert distiller.distillation_loss.compute_dtype == "float32"
    (full, full_logs), (half, half_logs) = updates["float32"], updates["mixed_float16"]
    np.testing.assert_allclose(half_logs["loss"], full_logs["loss"], rtol=1e-2)
    for a, b in zip(half, full):
        assert np.abs(b).max() > 0
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02 * np.abs(b).max())


def test_label_free_distillation_needs_student_loss_weight_zero():
    x, _ = data(16)
    distiller = tfadakd.Distiller(cnn(1), cnn(0), student_loss_weight=0.0, distillation_loss_weight=1.0)
    distiller.compile(optimizer="sgd")
    logs = distiller.fit(x, batch_size=8, epochs=1, verbose=0).history
    np.testing.assert_allclose(logs["loss"], logs["distillation_loss"], rtol=1e-6)
    labelled = tfadakd.Distiller(cnn(1), cnn(0))
    labelled.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="student_loss_weight=0"):
        labelled.fit(x, batch_size=8, epochs=1, verbose=0)


# ---------------------------------------------------------------- errors that name the values
def test_different_output_shapes_are_refused():
    inputs = keras.Input((8, 8, 3))
    wide = keras.Model(inputs, keras.layers.Dense(100)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match=r"output shapes: teacher \(None, 100\), student \(None, 10\)"):
        tfadakd.Distiller(cnn(1), wide)


def test_a_model_with_two_outputs_is_refused_naming_the_count():
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Flatten()(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(NUM_CLASSES)(features), keras.layers.Dense(NUM_CLASSES)(features)])
    for student, teacher, role in ((cnn(1), two, "teacher"), (two, cnn(0), "student")):
        with pytest.raises(ValueError, match=rf"The {role} has 2 outputs, but distillation needs one: the logits"):
            tfadakd.Distiller(student, teacher)


def test_different_input_shapes_are_refused():
    inputs = keras.Input((16, 16, 3))
    other = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match=r"\(None, 16, 16, 3\).*\(None, 8, 8, 3\)"):
        tfadakd.Distiller(cnn(1), other)


@pytest.mark.parametrize("as_layer", [False, True])
def test_teacher_that_outputs_probabilities_is_refused(as_layer):
    core = cnn(0)
    if as_layer:
        teacher = keras.Model(core.input, keras.layers.Softmax()(core.output))
    else:
        inputs = keras.Input((8, 8, 3))
        hidden = keras.layers.GlobalAveragePooling2D()(inputs)
        teacher = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, activation="softmax")(hidden))
    with pytest.raises(ValueError, match="outputs probabilities"):
        tfadakd.Distiller(cnn(1), teacher)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"student_loss_weight": -0.1}, "student_loss_weight.*-0.1"),
        ({"distillation_loss_weight": float("nan")}, "distillation_loss_weight.*nan"),
        ({"distillation_loss_weight": "nine"}, "distillation_loss_weight.*'nine'"),
        ({"student_loss_weight": 0, "distillation_loss_weight": 0}, "cannot both be 0"),
    ],
)
def test_bad_weights_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfadakd.Distiller(cnn(1), cnn(0), **kwargs)


def test_non_positive_static_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature` must be a finite number > 0, got -2"):
        tfadakd.Distiller(cnn(1), cnn(0), KD(temperature=-2.0))


@pytest.mark.parametrize(
    "loss", ["sparse_categorical_crossentropy", keras.losses.SparseCategoricalCrossentropy()]
)
def test_student_loss_expecting_probabilities_is_refused(loss):
    distiller = tfadakd.Distiller(cnn(1), cnn(0))
    distiller.compile(optimizer="sgd", loss=loss)
    x, y = data(8)
    with pytest.raises(ValueError, match="from_logits=True"):
        distiller.fit(x, y, epochs=1, verbose=0)
