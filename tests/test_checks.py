"""One rule for numeric arguments (`tfadakd._checks.check_number`) and its use by the public classes."""

import math

import numpy as np
import pytest

from tfadakd import losses, temperatures
from tfadakd._checks import check_number

POSITIVE = dict(minimum=0, exclusive_minimum=True)


@pytest.mark.parametrize(
    "value, want",
    [(4, 4.0), (4.5, 4.5), (np.float32(4.5), 4.5), (np.float64(2), 2.0), (np.float16(0.5), 0.5),
     (np.int64(3), 3.0), (np.uint8(7), 7.0)],
)
def test_accepts_python_and_numpy_real_numbers_and_returns_a_python_float(value, want):
    got = check_number("x", value, **POSITIVE)
    assert got == want and type(got) is float


@pytest.mark.parametrize(
    "value, shown",
    [("4", "'4' (a str)"), (True, "True (a bool)"), (np.bool_(True), "(a bool"), (None, "None (a NoneType)"),
     (1 + 0j, "(1+0j) (a complex)"), (np.array(4.0), "array(4.) (a ndarray)"), ([4.0], "[4.0] (a list)"),
     (float("nan"), "nan (a float)"), (float("inf"), "inf (a float)"), (-math.inf, "-inf (a float)"),
     (np.float32("nan"), "np.float32(nan) (a float32)"), (np.float64("inf"), "(a float64)"),
     (10**400, "(a int)")],
)
def test_refuses_non_numbers_and_non_finite_values_naming_argument_value_and_expectation(value, shown):
    with pytest.raises(ValueError) as info:
        check_number("temperature", value, owner="Static")
    message = str(info.value)
    assert message.startswith("Static `temperature` must be a finite number, got "), message
    assert shown in message, message


@pytest.mark.parametrize(
    "kwargs, value, expected",
    [(POSITIVE, 0, "a finite number > 0"), (POSITIVE, -1.5, "a finite number > 0"),
     (dict(minimum=0), -1e-9, "a finite number >= 0"),
     (dict(maximum=1, exclusive_maximum=True), 1.0, "a finite number < 1"),
     (dict(minimum=0, maximum=1), 1.5, "a finite number >= 0 and <= 1"),
     (dict(integer=True, minimum=1), 0, "an integer >= 1"),
     (dict(integer=True, minimum=1), 2.5, "an integer >= 1"),
     (dict(integer=True), float("nan"), "an integer")],
)
def test_bounds_and_integers(kwargs, value, expected):
    with pytest.raises(ValueError, match=f"^`x` must be {expected}, got "):
        check_number("x", value, **kwargs)


def test_bounds_are_inclusive_unless_asked_and_integers_come_back_as_int():
    assert check_number("x", 0, minimum=0) == 0.0
    assert check_number("x", 1, maximum=1) == 1.0
    for value in (10, 10.0, np.int32(10), np.float32(10)):
        got = check_number("epochs", value, integer=True, minimum=1)
        assert got == 10 and type(got) is int


def test_hint_is_appended():
    with pytest.raises(ValueError, match=r"got -1 \(a int\)\. Typical values are 1 to 8\.$"):
        check_number("t", -1, minimum=0, hint="Typical values are 1 to 8.")


# The three inconsistencies the helper removed, and its use in every numeric argument.


def test_static_refuses_a_numeric_string():
    with pytest.raises(ValueError, match=r"Static `temperature` must be a finite number > 0, got '4' \(a str\)"):
        temperatures.Static("4")
    with pytest.raises(ValueError, match=r"Standardized `base` must be .*got '2'"):
        temperatures.Standardized("2")


def test_numpy_numbers_are_accepted_everywhere():
    dkd = losses.DKD(alpha=np.float32(1), beta=np.float64(8), warmup_epochs=np.int64(20))
    assert (dkd.alpha, dkd.beta, dkd.warmup_epochs) == (1.0, 8.0, 20.0)
    assert all(type(v) is float for v in (dkd.alpha, dkd.beta, dkd.warmup_epochs))
    assert temperatures.Static(np.float32(4)).temperature == 4.0
    assert temperatures.get(np.float32(3)).temperature == 3.0  # a NumPy number is a static temperature
    assert losses.KD(temperature=np.float64(2)).temperature.temperature == 2.0
    assert temperatures.AdaptiveMaxLogit(scale=np.float32(2)).scale == 2.0
    assert temperatures.NormKD(np.float32(2)).scale == 2.0
    learnable = temperatures.Learnable(t_start=np.float32(1), t_range=np.float64(20), reversal_epochs=np.int64(10))
    assert (learnable.t_start, learnable.t_range, learnable.reversal_epochs) == (1.0, 20.0, 10)


@pytest.mark.parametrize("name", ["t_start", "t_range", "max_reversal"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_learnable_refuses_non_finite_values(name, bad):
    with pytest.raises(ValueError, match=f"Learnable `{name}` must be a finite number"):
        temperatures.Learnable(**{name: bad})


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: losses.DKD(alpha=-1), r"DKD `alpha` must be a finite number >= 0, got -1"),
        (lambda: losses.DKD(beta=float("nan")), r"DKD `beta` must be a finite number >= 0, got nan"),
        (lambda: losses.DKD(warmup_epochs="20"), r"DKD `warmup_epochs` must be .*got '20' \(a str\)"),
        (lambda: losses.DKD(alpha=True), r"DKD `alpha` .*got True \(a bool\)"),
        (lambda: temperatures.Static(0), r"Static `temperature` must be a finite number > 0, got 0"),
        (lambda: temperatures.Static(np.float32("inf")), r"Static `temperature` .*got np.float32\(inf\)"),
        (lambda: temperatures.AdaptiveMaxLogit(scale=0), r"AdaptiveMaxLogit `scale` must be a finite number > 0"),
        (lambda: temperatures.AdaptiveMaxLogit(min_temperature=float("inf")), r"`min_temperature` must be"),
        (lambda: temperatures.NormKD("2"), r"NormKD `scale` must be a finite number > 0, got '2'"),
        (lambda: temperatures.Learnable(t_start=0), r"Learnable `t_start` must be a finite number > 0, got 0"),
        (lambda: temperatures.Learnable(t_range=-1), r"Learnable `t_range` must be a finite number > 0"),
        (lambda: temperatures.Learnable(reversal_epochs=0), r"Learnable `reversal_epochs` must be an integer >= 1"),
        (lambda: temperatures.Learnable(reversal_epochs=2.5), r"`reversal_epochs` must be an integer >= 1, got 2.5"),
        (lambda: temperatures.Learnable("instance", hidden_units=0), r"`hidden_units` must be an integer >= 1"),
        (lambda: temperatures.Learnable(max_reversal=-0.5), r"`max_reversal` must be a finite number >= 0"),
    ],
)
def test_every_numeric_argument_uses_the_rule(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("bad", [True, 4j, None, [4.0], "4"])
def test_temperatures_get_refuses_what_is_not_a_number_or_a_name(bad):
    with pytest.raises(ValueError, match=r"Cannot interpret|Unknown"):
        temperatures.get(bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(student_loss_weight=-1.0), r"Distiller `student_loss_weight` must be a finite number >= 0, got -1"),
        (dict(distillation_loss_weight="9"), r"Distiller `distillation_loss_weight` must be .*got '9' \(a str\)"),
        (dict(distillation_loss_weight=float("inf")), r"`distillation_loss_weight` must be a finite number >= 0"),
    ],
)
def test_distiller_weights_follow_the_same_rule(kwargs, message):
    import keras

    from tfadakd import Distiller

    def model():
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(3)(inputs))

    with pytest.raises(ValueError, match=message):
        Distiller(model(), model(), **kwargs)
    assert Distiller(model(), model(), student_loss_weight=np.float32(0.5)).student_loss_weight == 0.5
