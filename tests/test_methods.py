"""DKD, CTKD's learned temperature, logit standardization and NormKD against their formulas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
import tfadakd
from tfadakd import functional as F
from tfadakd.losses import DKD, KD
from tfadakd.temperatures import AdaptiveMaxLogit, Learnable, NormKD, Standardized, reversal_factor


def logits(batch=16, classes=20, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.normal(scale=3.0, size=(batch, classes))
    s = 0.5 * t + rng.normal(scale=2.0, size=(batch, classes))
    y = rng.integers(0, classes, batch)
    return t.astype("float32"), s.astype("float32"), y


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_terms_equal_formula_static(temperature):
    t, s, y = logits()
    tckd, nckd = F.dkd_terms(t, s, y, tf.constant(temperature))
    want_t, want_n = ref.dkd(t.astype("float64"), s.astype("float64"), y, temperature)
    # float32 against float64: the tolerance, 1e-5
    np.testing.assert_allclose(tckd.numpy(), want_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nckd.numpy(), want_n, rtol=1e-5, atol=1e-5)


def test_dkd_loss_equals_formula_with_per_sample_adaptive_temperature():
    t, s, y = logits(seed=1)
    loss = DKD(alpha=1.0, beta=8.0, temperature=AdaptiveMaxLogit(), standardize=True, warmup_epochs=20)
    got, temperature = loss(t, s, labels=y, return_temperature=True)
    zt, zs = ref.standardize(t.astype("float64")), ref.standardize(s.astype("float64"))
    per_sample_t = ref.adaptive_temperature(zt, zs)
    np.testing.assert_allclose(temperature.numpy(), per_sample_t, rtol=1e-5)
    want_t, want_n = ref.dkd(zt, zs, y, per_sample_t)
    np.testing.assert_allclose(got.numpy(), want_t + 8.0 * want_n, rtol=1e-5, atol=1e-5)  # epoch None: factor 1
    for epoch, factor in ((0, 1 / 20), (9, 10 / 20), (19, 1.0), (50, 1.0)):
        np.testing.assert_allclose(
            loss(t, s, labels=y, epoch=tf.constant(epoch)).numpy(), factor * (want_t + 8.0 * want_n), rtol=1e-5, atol=1e-5
        )


def test_dkd_masks_the_target_and_is_stable_for_a_certain_teacher():
    t, s, y = logits(seed=2)
    t[np.arange(len(y)), y] = 200.0  # the teacher is certain: 1 - p_target underflows to 0 in float32
    tckd, nckd = F.dkd_terms(t, s, y, tf.constant(1.0))
    assert np.all(np.isfinite(tckd.numpy())) and np.all(np.isfinite(nckd.numpy()))
    # NCKD ignores the target logits entirely
    s2 = s.copy()
    s2[np.arange(len(y)), y] += 50.0
    np.testing.assert_allclose(F.dkd_terms(t, s2, y, tf.constant(4.0))[1].numpy(), F.dkd_terms(t, s, y, tf.constant(4.0))[1].numpy(), rtol=1e-5)
    # one-hot labels work like indices
    onehot = np.eye(t.shape[1], dtype="float32")[y]
    np.testing.assert_allclose(DKD()(t, s, labels=onehot).numpy(), DKD()(t, s, labels=y).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        DKD()(t, s)


def test_normkd_equals_formula():
    t, s, _ = logits(seed=3)
    loss, temperature = KD(NormKD(2.0))(t, s, return_temperature=True)
    t64, s64 = t.astype("float64"), s.astype("float64")
    tt = 2.0 * (t64.std(axis=-1, ddof=1, keepdims=True) + 1e-7)
    ts = 2.0 * (s64.std(axis=-1, ddof=1, keepdims=True) + 1e-7)
    p, q = ref.softmax(t64 / tt), ref.softmax(s64 / ts)
    want = tt[:, 0] ** 2 * np.sum(p * (np.log(p) - np.log(q)), axis=-1)
    np.testing.assert_allclose(temperature.numpy(), tt, rtol=1e-5)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5, atol=1e-6)


def test_standardized_equals_formula_and_requires_standardization():
    t, s, _ = logits(seed=4)
    got = KD(Standardized(2.0), standardize=True)(t, s).numpy()
    want = ref.kd(ref.standardize(t.astype("float64")), ref.standardize(s.astype("float64")), 2.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="standardize=True"):
        KD(Standardized(2.0))
    with pytest.raises(ValueError, match=r"Standardized `base` must be a finite number > 0, got 0 \(a int\)"):
        Standardized(0)


def test_reversal_factor_follows_ctkd_cosine_schedule():
    got = [float(reversal_factor(tf.constant(e), 10)) for e in range(12)]
    want = [-(1 - np.cos(np.pi * min(e + 1, 10) / 10)) / 2 for e in range(12)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[0] > -0.03 and got[9] == pytest.approx(-1.0) and got[11] == pytest.approx(-1.0)


@pytest.mark.parametrize("epoch", [0, 4, 20])
def test_gradient_reversal_flips_theta_gradient_with_the_scheduled_factor(epoch):
    t, s, _ = logits(batch=4, seed=5)
    scheme = Learnable("global")
    with tf.GradientTape() as tape:
        tau = scheme(t, s, epoch=tf.constant(epoch))
        value = tf.reduce_sum(tau)
    grad = tape.gradient(value, scheme.theta.value)
    sig = 1 / (1 + np.exp(-1.0))
    plain = 4 * 20.0 * sig * (1 - sig)  # d(sum of 4 taus)/d theta without reversal
    factor = float(reversal_factor(tf.constant(epoch), 10))
    np.testing.assert_allclose(float(grad), factor * plain, rtol=1e-5)
    assert float(grad) < 0 < plain


@pytest.mark.parametrize("mode", ["global", "instance"])
def test_learned_tau_stays_inside_range(mode):
    t, s, _ = logits(batch=8, seed=6)
    scheme = Learnable(mode)
    for value in (-50.0, 0.0, 50.0):
        if mode == "global":
            scheme.theta.assign(value)
            tau = scheme(t, s).numpy()
        else:
            tau = scheme(t * value, s * value).numpy()
        assert tau.shape == (8, 1)
        assert np.all(tau >= 1.0) and np.all(tau <= 21.0)
    if mode == "global":
        scheme.theta.assign(1.0)
        np.testing.assert_allclose(scheme(t, s).numpy(), 1 + 20 / (1 + np.exp(-1.0)), rtol=1e-6)


def mlp(seed, classes=10):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    return keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.Dense(16, activation="relu")(inputs)))


#: name -> (the loss, the number of weights its temperature scheme trains). Only the learnable schemes
#: own weights (CTKD's global theta; the instance MLP's two kernels and two biases); the others must own
#: none, so that nothing but the student trains.
COMBINATIONS = {
    "kd-static": (lambda: KD(4.0), 0),
    "kd-adaptive": (lambda: KD(AdaptiveMaxLogit(), standardize=True), 0),
    "kd-standardized": (lambda: KD(Standardized(2.0), standardize=True), 0),
    "kd-normkd": (lambda: KD(NormKD(2.0)), 0),
    "kd-learnable-global": (lambda: KD(Learnable("global")), 1),
    "kd-learnable-instance": (lambda: KD(Learnable("instance", hidden_units=8)), 4),
    "dkd-static": (lambda: DKD(beta=8.0, temperature=4.0, warmup_epochs=2), 0),
    "dkd-adaptive": (lambda: DKD(beta=2.0, temperature=AdaptiveMaxLogit("teacher"), standardize=True), 0),
    "dkd-learnable": (lambda: DKD(temperature=Learnable("global")), 1),
}


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_each_combination_fits_and_round_trips(name, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 12)).astype("float32"), rng.integers(0, 10, 32)
    make_loss, trained_weights = COMBINATIONS[name]
    loss = make_loss()
    distiller = tfadakd.Distiller(mlp(1), mlp(0), loss, student_loss_weight=1.0, distillation_loss_weight=1.0)
    distiller.compile(optimizer=tfadakd.optimizers.SGD(0.1), metrics=["accuracy"])
    loss(np.zeros((2, 10), "float32"), np.zeros((2, 10), "float32"), labels=np.zeros(2, "int32"))  # builds
    scheme_before = [w.numpy().copy() for w in loss.weights]
    student_before = [w.numpy().copy() for w in distiller.student.trainable_weights]
    logs = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    assert np.all(np.isfinite(logs["loss"])) and len(logs["temperature"]) == 2
    assert np.all(np.isfinite(logs["temperature"])) and min(logs["temperature"]) > 0
    assert np.all(np.isfinite(logs["logit_correlation"]))
    assert float(distiller.epoch.numpy()) == 1.0
    assert all(not np.array_equal(b, a.numpy()) for b, a in zip(student_before, distiller.student.trainable_weights))
    # Exactly the learnable schemes own weights, and every one of them trains with the student's
    # optimizer; the other schemes own none.
    assert len(loss.trainable_weights) == len(loss.weights) == len(scheme_before) == trained_weights
    for before, after in zip(scheme_before, loss.weights, strict=True):
        assert not np.array_equal(before, after.numpy()), after.path

    path = tmp_path / f"{name}.keras"
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.distillation_loss) is type(loss)
    assert type(loaded.distillation_loss.temperature) is type(loss.temperature)
    assert loaded.distillation_loss.temperature.get_config() == loss.temperature.get_config()
    for key, value in loss.get_config().items():
        if key != "temperature":
            assert loaded.distillation_loss.get_config()[key] == value, key
    assert len(loaded.distillation_loss.weights) == trained_weights
    for a, b in zip(loss.weights, loaded.distillation_loss.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert float(loaded.epoch.numpy()) == 1.0
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0))
    # The reloaded loss computes the same values and temperatures, trained weights included.
    t = distiller.teacher.predict(x, verbose=0)
    s = distiller.student.predict(x, verbose=0)
    want, want_t = loss(t, s, labels=y, return_temperature=True)
    got, got_t = loaded.distillation_loss(t, s, labels=y, return_temperature=True)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got_t.numpy(), want_t.numpy(), rtol=1e-6)


def test_dkd_warmup_follows_the_real_epoch_during_fit_and_resume():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 12)).astype("float32"), rng.integers(0, 10, 16)
    distiller = tfadakd.Distiller(mlp(1), mlp(0), DKD(warmup_epochs=20), 1.0, 1.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))  # nothing changes: only the factor moves
    logs = distiller.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False).history
    kd = np.array(logs["distillation_loss"])
    np.testing.assert_allclose(kd / kd[0], [1.0, 2.0, 3.0], rtol=1e-5)
    resumed = distiller.fit(x, y, batch_size=16, epochs=7, initial_epoch=5, verbose=0, shuffle=False).history
    np.testing.assert_allclose(np.array(resumed["distillation_loss"]) / kd[0], [6.0, 7.0], rtol=1e-5)


def test_registries_list_every_method_and_scheme():
    assert tfadakd.losses.LOSSES.names() == ["correlation", "dkd", "kd"]
    assert tfadakd.methods.METHODS.names() == ["at", "fitnet", "rkd"]
    assert tfadakd.temperatures.TEMPERATURES.names() == ["adaptive", "learnable", "normkd", "standardized", "static"]
