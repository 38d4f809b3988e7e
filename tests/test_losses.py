"""Losses and temperature schemes against NumPy references of docs/method.md sections 1-3."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
import tfadakd
from tfadakd import functional as F
from tfadakd.losses import KD
from tfadakd.temperatures import AdaptiveMaxLogit, Static


def random_logits(batch=16, classes=100, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    teacher = rng.normal(scale=scale, size=(batch, classes))
    student = teacher * 0.5 + rng.normal(scale=scale, size=(batch, classes))
    return teacher.astype("float32"), student.astype("float32")


def test_standardize_uses_bessel_correction():
    logits = np.array([[1.0, 2.0, 3.0, 10.0]], "float32")
    got = F.standardize(logits).numpy()
    np.testing.assert_allclose(got, ref.standardize(logits.astype("float64")), atol=1e-6)
    # ddof=1: the population std would give a different (smaller) z-score
    population = (logits - logits.mean()) / logits.std()
    assert not np.allclose(got, population, atol=1e-3)
    np.testing.assert_allclose(got.std(ddof=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 8.0])
def test_kd_static_equals_formula(temperature):
    t, s = random_logits()
    got = KD(temperature=Static(temperature))(t, s).numpy()
    assert got.shape == (16,)
    np.testing.assert_allclose(got, ref.kd(t.astype("float64"), s.astype("float64"), temperature), rtol=1e-5, atol=1e-5)


def test_kd_is_zero_for_identical_logits_and_positive_otherwise():
    t, s = random_logits()
    for loss in (KD(4.0), KD(AdaptiveMaxLogit(), standardize=True)):
        np.testing.assert_allclose(loss(t, t).numpy(), 0.0, atol=1e-6)
        assert np.all(loss(t, s).numpy() > 1e-3)


@pytest.mark.parametrize("source", ["both", "teacher"])
def test_adaptive_temperature_equals_formula(source):
    t, s = random_logits(seed=1)
    got = AdaptiveMaxLogit(source=source)(t, s).numpy()
    assert got.shape == (16, 1)
    np.testing.assert_allclose(got, ref.adaptive_temperature(t, s, source), rtol=1e-6)


def test_sources_differ_when_the_student_has_the_larger_logit():
    t, s = random_logits(seed=2)
    s[0, 0] = 100.0
    both = AdaptiveMaxLogit("both")(t, s).numpy()[0, 0]
    teacher = AdaptiveMaxLogit("teacher")(t, s).numpy()[0, 0]
    np.testing.assert_allclose(both, ref.ADAPTIVE * 100.0, rtol=1e-6)
    assert teacher < both


@pytest.mark.parametrize("source", ["both", "teacher"])
def test_standardized_adaptive_kd_equals_formula(source):
    t, s = random_logits(seed=3)
    loss, temperature = KD(AdaptiveMaxLogit(source), standardize=True)(t, s, return_temperature=True)
    zt, zs = ref.standardize(t.astype("float64")), ref.standardize(s.astype("float64"))
    expected_t = ref.adaptive_temperature(zt, zs, source)
    np.testing.assert_allclose(temperature.numpy(), expected_t, rtol=1e-5)
    np.testing.assert_allclose(loss.numpy(), ref.kd(zt, zs, expected_t), rtol=1e-5, atol=1e-6)


def test_adaptive_temperature_range_on_standardized_logits():
    """docs/method.md section 3.4: for N = 100 standardized logits, T lies in about [1.36, 13.5]."""
    t, s = random_logits(batch=256, seed=4)
    T = KD(AdaptiveMaxLogit(), standardize=True)(t, s, return_temperature=True)[1].numpy()
    assert np.all(T >= ref.ADAPTIVE * 1.0 - 1e-6)
    assert np.all(T <= ref.ADAPTIVE * 99 / np.sqrt(100) + 1e-4)  # max |z| <= (N-1)/sqrt(N)


def test_kd_at_adaptive_temperature_tracks_logit_correlation():
    """docs/method.md section 3.3: T^2 KL ~ ((N-1)/N) (1 - rho), correlation above 0.99 over random logits."""
    rng = np.random.default_rng(5)
    n = 100
    teacher = rng.normal(size=(512, n)) * rng.uniform(0.5, 5, size=(512, 1))
    mix = rng.uniform(0.0, 1.0, size=(512, 1))
    student = mix * teacher + (1 - mix) * rng.normal(size=(512, n)) * 3
    kd = KD(AdaptiveMaxLogit(), standardize=True)(teacher.astype("float32"), student.astype("float32")).numpy()
    rho = ref.pearson(teacher, student)
    approx = (n - 1) / n * (1 - rho)
    assert np.corrcoef(kd, approx)[0, 1] > 0.99
    np.testing.assert_allclose(
        F.logit_correlation(teacher.astype("float32"), student.astype("float32")).numpy(), rho, atol=1e-5
    )


def test_no_gradient_flows_through_the_adaptive_temperature():
    t, s = random_logits(batch=4, seed=6)
    s = tf.Variable(s)
    scheme = AdaptiveMaxLogit()
    with tf.GradientTape() as tape:
        temperature = scheme(t, s)
    assert tape.gradient(temperature, s) is None

    # and the loss gradient equals the gradient at a constant temperature
    loss = KD(scheme, standardize=False)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss(t, s))
    grad = tape.gradient(value, s)
    fixed = tf.constant(ref.adaptive_temperature(t, s.numpy()), "float32")
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(F.kd_divergence(tf.constant(t), s, fixed))
    np.testing.assert_allclose(grad.numpy(), tape.gradient(value, s).numpy(), rtol=1e-5, atol=1e-7)


def test_losses_compute_in_float32_from_half_precision_logits():
    t, s = random_logits(batch=4, seed=7)
    got = KD(AdaptiveMaxLogit(), standardize=True)(tf.cast(t, "bfloat16"), tf.cast(s, "bfloat16"))
    assert got.dtype == tf.float32
    assert np.all(np.isfinite(got.numpy()))


def test_float_and_name_shortcuts():
    assert isinstance(KD(temperature=4.0).temperature, Static)
    assert KD(temperature=4.0).temperature.temperature == 4.0
    assert isinstance(KD(temperature="adaptive").temperature, AdaptiveMaxLogit)
    assert isinstance(tfadakd.losses.get("kd"), KD)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "hot"])
def test_static_rejects_bad_temperatures(bad):
    with pytest.raises(ValueError, match=repr(bad) if not isinstance(bad, float) else "temperature"):
        Static(bad)


def test_bad_names_and_sources_list_valid_values():
    with pytest.raises(ValueError, match="adaptive.*static"):
        tfadakd.temperatures.get("warm")
    with pytest.raises(ValueError, match="'student'"):
        AdaptiveMaxLogit(source="student")
    with pytest.raises(ValueError, match="kd"):
        tfadakd.losses.get("nope")


def test_mismatched_logit_shapes_are_refused():
    with pytest.raises(ValueError, match=r"teacher \(2, 10\) and student \(2, 100\)"):
        KD(4.0)(np.zeros((2, 10), "float32"), np.zeros((2, 100), "float32"))


@pytest.mark.parametrize(
    "loss",
    [KD(4.0), KD(AdaptiveMaxLogit("teacher"), standardize=True), KD(Static(2.0), standardize=True)],
)
def test_losses_round_trip_through_config(loss):
    t, s = random_logits(batch=4, seed=8)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone.temperature) is type(loss.temperature)
    assert clone.standardize == loss.standardize
    np.testing.assert_array_equal(clone(t, s).numpy(), loss(t, s).numpy())


def test_correlation_loss_equals_one_minus_pearson_and_ignores_standardization():
    t, s = random_logits(seed=5)
    expected = 1.0 - ref.pearson(t.astype("float64"), s.astype("float64"))
    raw = tfadakd.losses.Correlation()(t, s).numpy()
    standardized = tfadakd.losses.Correlation(AdaptiveMaxLogit(), standardize=True)(t, s).numpy()
    assert raw.shape == (16,)
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(standardized, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tfadakd.losses.Correlation()(t, 3.0 * t + 1.0).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(tfadakd.losses.Correlation()(t, -t).numpy(), 2.0, atol=1e-6)
    assert tfadakd.losses.LOSSES.get("correlation") is tfadakd.losses.Correlation


def test_correlation_loss_gradient_equals_finite_differences_of_the_reference():
    t, s = random_logits(batch=2, classes=7, seed=6)
    student = tf.Variable(s)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(tfadakd.losses.Correlation()(t, student))
    got = tape.gradient(total, student).numpy()
    numeric = ref.numeric_gradient(lambda a, b: 1 - ref.pearson(a, b), t, s)
    np.testing.assert_allclose(got, numeric, rtol=1e-3, atol=1e-5)

