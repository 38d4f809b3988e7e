"""Feature terms (tfadakd.methods) against NumPy references, and the Distiller that reads named layers."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
import tfadakd
from tfadakd.methods import AT, RKD, FitNet, LogitTerm

DATA = Path(__file__).resolve().parent / "data"


def features(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# ---------------------------------------------------------------------------- the math
def test_fitnet_without_a_connector_is_the_per_sample_mse():
    t, s = features((4, 8, 8, 16), 0), features((4, 8, 8, 16), 1)
    term = FitNet("stage2")
    per_sample, logs = term({"stage2": t}, {"stage2": s})
    assert term.connector is None and logs == {} and per_sample.shape == (4,)
    np.testing.assert_allclose(per_sample.numpy(), ref.fitnet(t.astype("float64"), s.astype("float64")), rtol=1e-5)


@pytest.mark.parametrize("student_shape, layers", [
    ((2, 16, 16, 8), ["Conv2D", "BatchNormalization", "ReLU"]),          # larger: 3x3, stride 2
    ((2, 4, 4, 8), ["UpSampling2D", "Conv2D", "BatchNormalization", "ReLU"]),  # smaller: upsample 2, 1x1
    ((2, 8, 8, 6), ["Conv2D", "BatchNormalization", "ReLU"]),            # channels only: 1x1
])
def test_fitnet_connectors_are_sized_from_the_two_shapes(student_shape, layers):
    t, s = features((2, 8, 8, 12), 2), features(student_shape, 3)
    term = FitNet()
    per_sample, _ = term({"stage2": t}, {"stage2": s})
    assert [type(layer).__name__ for layer in term.connector.layers] == layers
    conv = next(layer for layer in term.connector.layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.filters == 12 and conv.strides == ((2, 2) if student_shape[1] == 16 else (1, 1))
    assert conv.kernel_size == ((3, 3) if student_shape[1] == 16 else (1, 1))
    mapped = term.connector(s).numpy().astype("float64")
    np.testing.assert_allclose(per_sample.numpy(), ref.fitnet(t.astype("float64"), mapped), rtol=1e-4)


def test_fitnet_refuses_resolutions_that_do_not_divide_naming_both_shapes():
    with pytest.raises(ValueError, match=r"teacher stage2 \(2, 8, 8, 4\), student stage2 \(2, 6, 6, 4\)"):
        FitNet()({"stage2": features((2, 8, 8, 4), 0)}, {"stage2": features((2, 6, 6, 4), 1)})
    with pytest.raises(ValueError, match="4-D feature maps"):
        FitNet()({"stage2": features((2, 8), 0)}, {"stage2": features((2, 8), 1)})


def test_at_equals_the_reference_with_and_without_pooling():
    teacher = [features((3, 16, 16, 8), 4), features((3, 8, 8, 16), 5)]
    student = [features((3, 16, 16, 4), 6), features((3, 4, 4, 8), 7)]  # the second pair: teacher pooled by 2
    term = AT(("stage1", "stage2"))
    per_sample, _ = term(dict(zip(("stage1", "stage2"), teacher)), dict(zip(("stage1", "stage2"), student)))
    expected = ref.at([t.astype("float64") for t in teacher], [s.astype("float64") for s in student])
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="differ by a power of 2"):
        AT("stage1")({"stage1": features((1, 12, 12, 2), 0)}, {"stage1": features((1, 4, 4, 2), 1)})


def test_rkd_equals_the_reference_and_its_gradient_the_finite_differences():
    t, s = features((5, 6), 8), features((5, 4), 9)  # relations: the feature sizes may differ
    term = RKD(distance_weight=25.0, angle_weight=50.0)
    per_sample, logs = term({"pool": t}, {"pool": s})
    np.testing.assert_allclose(per_sample.numpy(), ref.rkd(t.astype("float64"), s.astype("float64")), rtol=1e-4)
    assert set(logs) == {"distance", "angle"}
    variable = tf.Variable(s)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(term({"pool": t}, {"pool": variable})[0])
    got = tape.gradient(total, variable).numpy()
    numeric = ref.numeric_gradient(ref.rkd, t, s)
    np.testing.assert_allclose(got, numeric, rtol=2e-3, atol=2e-4)


# ---------------------------------------------------------------------------- the Distiller
@keras.saving.register_keras_serializable(package="test_feature_terms")
class Counter(keras.layers.Layer):
    """Counts its calls (a forward pass of the model it sits in)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x):
        self.calls.assign_add(1.0)
        return x


def cnn(width, seed, counter=None):
    """A Functional CIFAR-like model with zoo-style names: stage1 (8x8), stage2 (4x4), pool, logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = inputs if counter is None else counter(inputs)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="stage1")(x)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu", name="stage2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="logits")(x))


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 5, n)


def test_terms_read_named_layers_with_one_pass_of_each_model_and_train_their_connectors(tmp_path):
    teacher_counter, student_counter = Counter(name="teacher_calls"), Counter(name="student_calls")
    teacher, student = cnn(8, 0, teacher_counter), cnn(4, 1, student_counter)
    kd = tfadakd.losses.KD(temperature="adaptive", standardize=True)
    distiller = tfadakd.Distiller(student, teacher, terms=[(kd, 9.0), (FitNet("stage2"), 100.0),
                                                           (AT(("stage1", "stage2")), 1000.0), (RKD(), 1.0)],
                                  student_loss_weight=0.1)
    distiller.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(True))
    connector = distiller.terms[1].connector
    assert connector is not None and all(any(v is w for w in distiller.trainable_variables) for v in connector.trainable_weights)
    assert not any(v is w for v in connector.weights for w in student.weights)  # not part of the student
    before = [v.numpy() for v in connector.weights]
    calls = float(teacher_counter.calls.numpy()), float(student_counter.calls.numpy())
    x, y = data()
    history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)
    # 2 steps: one teacher and one student forward each, whatever the number of terms
    assert float(teacher_counter.calls.numpy()) - calls[0] == 2 and float(student_counter.calls.numpy()) - calls[1] == 2
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, connector.weights))
    logs = history.history
    for name in ("kd_loss", "fitnet_loss", "at_loss", "rkd_loss", "temperature", "distance", "angle",
                 "logit_correlation", "student_loss"):
        assert name in logs and np.isfinite(logs[name][0]), name
    assert "distillation_loss" not in logs
    # the exported student is the student architecture alone, TFLite included
    assert student.count_params() == cnn(4, 1, Counter()).count_params()
    tflite = tmp_path / "student.tflite"
    tfadakd.export.to_tflite(student, tflite)
    np.testing.assert_allclose(tfadakd.export.predict_tflite(tflite, x), student.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)
    assert "CONV_2D" in tfadakd.export.tflite_operators(tflite)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert [t.name for t in loaded.terms] == ["kd", "fitnet", "at", "rkd"] and loaded.term_weights == [9.0, 100.0, 1000.0, 1.0]
    for a, b in zip(loaded.terms[1].connector.weights, connector.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0))


def test_a_keras_applications_student_reads_its_own_layer_names():
    """A Functional keras.applications model as the student: FitNet from the teacher's stage2 (4x4x16) to
    MobileNet's conv_pw_1_relu (4x4 at this input size), the connector sized by itself."""
    student = keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=5,
                                           classifier_activation=None)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu", name="stage1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stage2")(x)
    teacher = keras.Model(inputs, keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D()(x)))
    term = FitNet("stage2", student_stage="conv_pw_2_relu")
    distiller = tfadakd.Distiller(student, teacher, terms=[(term, 1.0)], student_loss_weight=1.0)
    distiller.compile(optimizer="sgd")
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    logs = distiller.train_on_batch(x, np.arange(4) % 5, return_dict=True)
    assert np.isfinite(logs["fitnet_loss"]) and term.connector is not None


def test_bad_names_subclassed_models_duplicate_terms_and_a_logit_cache_are_refused():
    teacher, student = cnn(8, 0), cnn(4, 1)
    with pytest.raises(ValueError, match=r"student .* has no layer named 'stage_2'. Nearest layer names: stage2"):
        tfadakd.Distiller(student, teacher, terms=[(FitNet("stage2", student_stage="stage_2"), 1.0)])

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(5)

        def call(self, x):
            return self.dense(keras.layers.Flatten()(x))

    sub = Subclassed()
    sub(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed keras.Model .* Build it as a Functional model"):
        tfadakd.Distiller(sub, teacher, terms=[(FitNet("stage2"), 1.0)])
    tfadakd.Distiller(sub, teacher, terms=[("kd", 1.0)])  # logits only: any model
    with pytest.raises(ValueError, match="Two terms are named 'fitnet'"):
        tfadakd.Distiller(student, teacher, terms=[(FitNet("stage1"), 1.0), (FitNet("stage2"), 1.0)])
    with pytest.raises(ValueError, match="either as `terms="):
        tfadakd.Distiller(student, teacher, "kd", terms=[("kd", 1.0)])
    distiller = tfadakd.Distiller(student, teacher, terms=[(FitNet("stage2"), 1.0)])
    distiller.compile(optimizer="sgd")
    x, y = data(4)
    with pytest.raises(ValueError, match="read the teacher's intermediate features, which a teacher-logit cache"):
        distiller.train_on_batch({"images": x, "teacher_logits": np.zeros((4, 5), "float32")}, y)


def test_a_distiller_saved_by_tfadakd_0_1_loads_with_its_weights():
    """tests/data/distiller_0.1.keras was written by tfadakd 0.1 (before terms): a KD loss with a learned
    (CTKD) temperature, trained one epoch."""
    loaded = keras.models.load_model(DATA / "distiller_0.1.keras")
    x = np.load(DATA / "distiller_0.1_inputs.npy")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), np.load(DATA / "distiller_0.1_predictions.npy"), rtol=1e-6)
    assert [t.name for t in loaded.terms] == ["distillation"] and loaded.term_weights == [2.0]
    assert isinstance(loaded.terms[0], LogitTerm) and loaded.terms[0].loss is loaded.distillation_loss
    theta = float(loaded.distillation_loss.temperature.theta.numpy())
    assert theta != 1.0 and abs(theta - 1.0) < 1e-3  # trained (the file's value), not re-initialized
    assert loaded.get_config()["distillation_loss_weight"] == 2.0 and "terms" not in loaded.get_config()


def test_under_mixed_bfloat16_the_terms_and_connectors_compute_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        teacher, student = cnn(8, 0), cnn(4, 1)
        distiller = tfadakd.Distiller(student, teacher, terms=[(FitNet("stage2"), 1.0), (AT(("stage1",)), 1.0)])
        features = distiller._student_features(data(4)[0], training=False)
        assert features["stage2"].dtype == "bfloat16"  # the models compute in bfloat16 ...
        connector = distiller.terms[0].connector
        assert all(layer.compute_dtype == "float32" for layer in connector.layers)  # ... the terms in float32
        per_sample, _ = distiller.terms[0](distiller._teacher_features(data(4)[0], training=False), features)
        assert per_sample.dtype == "float32"
        distiller.compile(optimizer="sgd")
        logs = distiller.train_on_batch(*data(8), return_dict=True)
        assert np.isfinite(logs["fitnet_loss"]) and np.isfinite(logs["at_loss"])
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_the_temperature_monitor_leaves_a_distiller_without_logit_terms_alone():
    distiller = tfadakd.Distiller(cnn(4, 1), cnn(8, 0), terms=[(AT(("stage1",)), 1.0)])
    assert distiller.distillation_loss is None
    monitor = tfadakd.callbacks.TemperatureMonitor([data(4)], num_batches=1)
    monitor.set_model(distiller)
    logs = {"loss": 1.0}
    monitor.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0}
