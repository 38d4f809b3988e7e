"""tfadakd's losses inside Keras' own keras.distillation (tfadakd/keras_distillation.py), on TensorFlow.

The same adapter on JAX: tests/test_jax.py.
"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import reference as ref
import tfadakd
from tfadakd.keras_distillation import Distiller, EpochCounter, Logits
from tfadakd.losses import DKD, KD
from tfadakd.temperatures import AdaptiveMaxLogit, Learnable, NormKD, Standardized

CLASSES = 10


def logits(batch=16, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.normal(scale=3.0, size=(batch, CLASSES))
    s = 0.5 * t + rng.normal(scale=2.0, size=(batch, CLASSES))
    return t.astype("float32"), s.astype("float32"), rng.integers(0, CLASSES, batch)


def mlp(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(keras.layers.Dense(16, activation="relu")(inputs)))


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 12)).astype("float32"), rng.integers(0, CLASSES, n)


def z(a):
    return ref.standardize(a.astype("float64"))


#: name -> (the loss, its NumPy reference as a function of (teacher, student, labels), per sample).
REFERENCES = {
    "kd-static": (lambda: KD(4.0), lambda t, s, y: ref.kd(t, s, 4.0)),
    "kd-adaptive-standardized": (
        lambda: KD(temperature="adaptive", standardize=True),
        lambda t, s, y: ref.kd(z(t), z(s), ref.adaptive_temperature(z(t), z(s))),
    ),
    "kd-standardized": (
        lambda: KD(Standardized(2.0), standardize=True), lambda t, s, y: ref.kd(z(t), z(s), 2.0)
    ),
    "kd-adaptive-teacher": (
        lambda: KD(AdaptiveMaxLogit("teacher")), lambda t, s, y: ref.kd(t, s, ref.adaptive_temperature(t, s, "teacher"))
    ),
    "dkd-adaptive-standardized": (
        lambda: DKD(beta=8.0, temperature=AdaptiveMaxLogit(), standardize=True),
        lambda t, s, y: (lambda tc, nc: tc + 8.0 * nc)(*ref.dkd(z(t), z(s), y, ref.adaptive_temperature(z(t), z(s)))),
    ),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_adapter_equals_the_tfadakd_term_and_numpy(name):
    make_loss, reference = REFERENCES[name]
    t, s, y = logits(seed=1)
    loss = make_loss()
    adapter = Logits(loss)
    got = float(adapter.compute_loss(t, s, labels=y))
    per_sample = loss(t, s, labels=y).numpy()
    assert per_sample.shape == (16,)
    np.testing.assert_allclose(got, per_sample.mean(), rtol=1e-6)
    want = reference(t.astype("float64"), s.astype("float64"), y)
    np.testing.assert_allclose(got, want.mean(), rtol=1e-5)
    assert keras.ops.shape(adapter.compute_loss(t, s, labels=y)) == ()


@pytest.mark.parametrize("student_loss_weight", [0.0, 0.5])
def test_keras_distiller_loss_is_the_tfadakd_term_on_the_same_batch(student_loss_weight):
    """Inside keras.distillation.Distiller: total = w * student CE + (1 - w) * mean tfadakd KD."""
    x, y = data(16)
    loss = KD(temperature="adaptive", standardize=True)
    distiller = keras.distillation.Distiller(
        teacher=mlp(1), student=mlp(0), distillation_losses=Logits(loss), student_loss_weight=student_loss_weight
    )
    distiller.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t, s = distiller.teacher.predict(x, verbose=0), distiller.student.predict(x, verbose=0)
    total = float(distiller.compute_loss(x=x, y=y, y_pred=distiller.student(x)))
    kd = ref.kd(z(t), z(s), ref.adaptive_temperature(z(t), z(s))).mean()
    np.testing.assert_allclose(kd, loss(t, s).numpy().mean(), rtol=1e-5)
    log_q = s.astype("float64") - np.log(np.exp(s.astype("float64")).sum(-1, keepdims=True))
    ce = -log_q[np.arange(len(y)), y].mean()
    np.testing.assert_allclose(total, student_loss_weight * ce + (1 - student_loss_weight) * kd, rtol=1e-5)


def test_learned_ctkd_temperature_trains_through_keras_distiller():
    x, y = data()
    scheme = Learnable("global")
    adapter = Logits(KD(scheme))
    distiller = keras.distillation.Distiller(teacher=mlp(1), student=mlp(0), distillation_losses=adapter)
    assert any(w is scheme.theta for w in distiller.trainable_weights)  # the Distiller tracks it
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = float(scheme.theta.numpy())
    tau_before = float(np.mean(scheme(*logits()[:2]).numpy()))
    distiller.fit(x, y, batch_size=16, epochs=2, verbose=0)
    after = float(scheme.theta.numpy())
    assert np.isfinite(after) and abs(after - before) > 1e-4
    assert float(np.mean(scheme(*logits()[:2]).numpy())) != tau_before  # and so does the temperature


@pytest.mark.parametrize("mode", ["global", "instance"])
@pytest.mark.filterwarnings("ignore:`compile\\(\\)` was not called")
def test_keras_distiller_with_adapter_round_trips_through_dot_keras(mode, tmp_path):
    x, y = data()
    loss = KD(Learnable(mode, hidden_units=8), standardize=True)
    distiller = keras.distillation.Distiller(
        teacher=mlp(1), student=mlp(0), distillation_losses=Logits(loss), student_loss_weight=0.3
    )
    distiller.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial = [w.numpy().copy() for w in loss.weights]  # built with the Distiller
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(initial, loss.weights, strict=True))  # trained
    path = tmp_path / "distiller.keras"
    # (keras.distillation.Distiller comes back uncompiled, Keras warns: tfadakd's Distiller does not.)
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is keras.distillation.Distiller
    assert loaded.student_loss_weight == 0.3
    (adapter,) = loaded.distillation_losses
    assert type(adapter) is Logits and type(adapter.loss) is KD
    assert type(adapter.loss.temperature) is Learnable
    assert adapter.loss.temperature.get_config() == loss.temperature.get_config()
    assert adapter.loss.standardize
    assert len(loss.weights) == (1 if mode == "global" else 4)
    for a, b in zip(loss.weights, adapter.loss.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0))
    t, s = distiller.teacher.predict(x, verbose=0), distiller.student.predict(x, verbose=0)
    np.testing.assert_allclose(float(adapter.compute_loss(t, s)), float(distiller.distillation_losses[0].compute_loss(t, s)), rtol=1e-6)


def test_dkd_needs_the_labels_that_tfadakds_keras_distiller_passes(tmp_path):
    x, y = data(16)
    with pytest.raises(ValueError, match="tfadakd.keras_distillation.Distiller"):
        plain = keras.distillation.Distiller(teacher=mlp(1), student=mlp(0), distillation_losses=Logits(DKD()))
        plain.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        plain.fit(x, y, epochs=1, verbose=0)

    loss = DKD(beta=8.0, temperature=4.0, warmup_epochs=20)
    distiller = Distiller(teacher=mlp(1), student=mlp(0), distillation_losses=Logits(loss), student_loss_weight=0.5)
    assert isinstance(distiller, keras.distillation.Distiller)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logs = distiller.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False).history
    # The warm-up follows the real epoch (EpochCounter, added by fit): factors 1/20, 2/20, 3/20.
    t, s = distiller.teacher.predict(x, verbose=0), distiller.student.predict(x, verbose=0)
    tckd, nckd = ref.dkd(t.astype("float64"), s.astype("float64"), y, 4.0)
    np.testing.assert_allclose(logs["distillation_loss"], np.array([1, 2, 3]) / 20 * (tckd + 8 * nckd).mean(), rtol=1e-5)
    assert float(distiller.distillation_losses[0].epoch.numpy()) == 2.0

    # a .keras round trip of the tfadakd Distiller comes back compiled and resumes the schedule
    path = tmp_path / "dkd.keras"
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is Distiller and loaded.compiled
    resumed = loaded.fit(x, y, batch_size=16, epochs=5, initial_epoch=4, verbose=0, shuffle=False).history
    np.testing.assert_allclose(resumed["distillation_loss"], [5 / 20 * (tckd + 8 * nckd).mean()], rtol=1e-5)


def test_epoch_counter_drives_ctkd_reversal_in_a_plain_keras_distiller():
    x, y = data(16)
    adapter = Logits(KD(Learnable("global", reversal_epochs=10)))
    assert float(adapter.epoch.numpy()) == -1.0  # unset: end-of-schedule values, as epoch=None
    t, s, _ = logits()
    np.testing.assert_allclose(float(adapter.compute_loss(t, s)), KD(Learnable("global"))(t, s).numpy().mean(), rtol=1e-6)
    distiller = keras.distillation.Distiller(teacher=mlp(1), student=mlp(0), distillation_losses=adapter)
    distiller.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    distiller.fit(x, y, epochs=3, verbose=0, callbacks=[EpochCounter()])
    assert float(adapter.epoch.numpy()) == 2.0


def test_refuses_what_is_not_a_tfadakd_loss():
    with pytest.raises(ValueError, match="distillation loss"):
        Logits(keras.losses.KLDivergence())
    with pytest.raises(ValueError, match="kd"):
        Logits("nope")
    assert isinstance(Logits("kd").loss, KD)
    assert isinstance(Logits(KD(NormKD(2.0))), keras.distillation.DistillationLoss)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, tfadakd

    def mlp(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((12,))
        return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Dense(16, activation="relu")(inputs)))

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 12)).astype("float32"), rng.integers(0, 10, 32)

    def run(strategy):
        with strategy.scope():
            adapter = tfadakd.keras_distillation.Logits(tfadakd.losses.KD(temperature="adaptive", standardize=True))
            distiller = keras.distillation.Distiller(
                teacher=mlp(1), student=mlp(0), distillation_losses=adapter, student_loss_weight=0.5)
            distiller.compile(optimizer=keras.optimizers.SGD(1.0),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        logs = distiller.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False).history
        return {"replicas": strategy.num_replicas_in_sync, "loss": logs["loss"],
                "weights": [w.tolist() for w in distiller.student.get_weights()]}

    print("RESULT" + json.dumps([run(tf.distribute.OneDeviceStrategy("/cpu:0")),
                                 run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]))
    """
)


def test_mirrored_strategy_steps_equal_single_device():
    """Keras sums gradients over replicas: the adapter returns its per-replica mean / replicas, like
    keras.losses.Loss, so two replicas give the single-device step (and the same `loss` log)."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    single, mirrored = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))[6:])
    assert [single["replicas"], mirrored["replicas"]] == [1, 2]
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-5)
    for a, b in zip(single["weights"], mirrored["weights"], strict=True):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)


def staged_cnn(width, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="stage1")(inputs)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu", name="stage2")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D()(x)))


def test_a_feature_term_inside_keras_distillation_trains_its_connector_and_saves(tmp_path):
    """FitNet between stage2 maps of different widths in keras.distillation.Distiller: the loss is the term's
    batch mean, the connector (sized when the Distiller is built) trains and round-trips through .keras.
    (keras.distillation computes its distillation losses only while student_loss_weight < 1.)"""
    from tfadakd.keras_distillation import Features

    teacher, student = staged_cnn(8, 0), staged_cnn(4, 1)
    adapter = Features(tfadakd.methods.FitNet("stage2"))
    distiller = keras.distillation.Distiller(teacher=teacher, student=student, distillation_losses=[adapter],
                                             distillation_loss_weights=[100.0], student_loss_weight=0.5)
    connector = adapter.term.connector
    assert connector is not None and connector.layers[0].filters == 16
    assert len(distiller.trainable_variables) == len(student.trainable_variables) + len(connector.trainable_weights)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 8, 8, 3)).astype("float32"), rng.integers(0, 5, 8)
    teacher_feature = keras.Model(teacher.inputs, teacher.get_layer("stage2").output)(x)
    student_feature = keras.Model(student.inputs, student.get_layer("stage2").output)(x)
    expected = ref.fitnet(np.asarray(teacher_feature, "float64"), np.asarray(connector(student_feature), "float64"))
    np.testing.assert_allclose(float(adapter.compute_loss(teacher_feature, student_feature)), expected.mean(), rtol=1e-5)
    before = [w.numpy() for w in connector.trainable_weights]
    distiller.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(True))
    distiller.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, connector.trainable_weights))
    distiller.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    for a, b in zip(loaded.distillation_losses[0].term.connector.weights, connector.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="one layer of each model; the term 'at' reads"):
        Features(tfadakd.methods.AT(("stage1", "stage2")))
