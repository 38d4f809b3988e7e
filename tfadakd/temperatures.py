"""Temperature schemes: callables `scheme(teacher_logits, student_logits) -> (batch, 1)` temperatures.

A scheme is a Keras layer so that learnable schemes can own weights that train and save with the
`Distiller`. Schemes compute in float32 whatever the global mixed-precision policy is, and no gradient
flows through a temperature unless the scheme is meant to be learned. Written with `keras.ops`: they run
on every Keras 3 backend and import without TensorFlow.

Example:

```python
scheme = tfadakd.temperatures.AdaptiveMaxLogit(source="both")
T = scheme(teacher_logits, student_logits)      # shape (batch, 1), one temperature per sample
```
"""

import math
import numbers

import keras
from keras import ops

from tfadakd import functional as F
from tfadakd._checks import check_number
from tfadakd.registry import Registry

#: Temperature schemes by name, for apps and flag files (`--temperature=adaptive`).
TEMPERATURES = Registry("temperature scheme")


class Temperature(keras.layers.Layer):
    """Base class of the temperature schemes.

    Subclasses implement `call(teacher_logits, student_logits, epoch=None)` returning a float32
    tensor of shape (batch, 1). Inputs are cast to float32 before `call`. `epoch` (0-based, a scalar
    tensor during `Distiller.fit`, else None) serves schemes that follow a schedule.

    Class attributes:
        requires_standardized: the scheme is defined on standardized logits, so the loss must use
            `standardize=True` (checked by the loss).
    """

    requires_standardized = False

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def __call__(self, teacher_logits, student_logits, epoch=None, **kwargs):
        teacher_logits = ops.cast(teacher_logits, "float32")
        student_logits = ops.cast(student_logits, "float32")
        return super().__call__(teacher_logits, student_logits, epoch=epoch, **kwargs)

    def call(self, teacher_logits, student_logits, epoch=None):
        raise NotImplementedError

    def student_temperature(self, student_logits, temperature):
        """The temperature that divides the student's logits: by default the same `temperature`.

        Schemes that give teacher and student different temperatures (NormKD) override this.
        """
        return temperature

    def compute_output_shape(self, teacher_shape, student_shape=None):
        return (teacher_shape[0], 1)


@keras.saving.register_keras_serializable(package="tfadakd")
class Static(Temperature):
    """One fixed temperature for every sample (Hinton et al.'s KD).

    Arguments:
        temperature: a positive, finite Python or NumPy number (4.0 in the RepDistiller / mdistiller
            recipe).

    Raises:
        ValueError: if `temperature` is not a positive finite number (a string such as `"4"` included).

    Example:

    >>> tfadakd.temperatures.Static(4.0)(t, s)   # a (batch, 1) tensor of 4.0
    """

    def __init__(self, temperature=4.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_number(
            self._argument_name, temperature, minimum=0, exclusive_minimum=True, owner=type(self).__name__,
            hint=self._typical_values,
        )

    _argument_name = "temperature"
    _typical_values = "Typical values are 1 to 8 (4 in the reference recipe)."

    def call(self, teacher_logits, student_logits, epoch=None):
        return ops.full((ops.shape(teacher_logits)[0], 1), self.temperature, dtype="float32")

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="tfadakd")
class AdaptiveMaxLogit(Temperature):
    """The adaptive temperature of Matsuyama et al. (2025): `T_i = (1 + sqrt 3)/2 * max_j |z_ij|`.

    Computed per sample and per step, with no gradient through `T_i`. Pair it with
    `KD(standardize=True)` so that `z` are the standardized logits, as in the paper.

    Arguments:
        source: `"both"` (the reference code: the max over the teacher's and the student's logits)
            or `"teacher"` (the paper's abstract: the teacher's logits only).
        scale: the constant in front of the max; `(1 + sqrt(3)) / 2` by default (`docs/method.md`
            section 3.2).
        min_temperature: a floor that only acts on degenerate, constant logit vectors (where the max is
            0 and the temperature would be 0).

    Raises:
        ValueError: for an unknown `source`, or a `scale` or `min_temperature` that is not a positive
            finite number.

    Example:

    >>> scheme = tfadakd.temperatures.AdaptiveMaxLogit(source="teacher")
    >>> T = scheme(teacher_logits, student_logits)   # (batch, 1)
    """

    SOURCES = ("both", "teacher")

    def __init__(self, source="both", scale=F.ADAPTIVE_CONSTANT, min_temperature=1e-6, **kwargs):
        super().__init__(**kwargs)
        if source not in self.SOURCES:
            raise ValueError(
                f"AdaptiveMaxLogit source must be one of {self.SOURCES}, got {source!r}."
            )
        self.source = source
        self.scale = check_number("scale", scale, minimum=0, exclusive_minimum=True, owner="AdaptiveMaxLogit")
        self.min_temperature = check_number(
            "min_temperature", min_temperature, minimum=0, exclusive_minimum=True, owner="AdaptiveMaxLogit"
        )

    def call(self, teacher_logits, student_logits, epoch=None):
        peak = F.max_abs_logit(teacher_logits)
        if self.source == "both":
            peak = ops.maximum(peak, F.max_abs_logit(student_logits))
        temperature = ops.maximum(self.scale * peak, self.min_temperature)
        return ops.stop_gradient(temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "source": self.source,
            "scale": self.scale,
            "min_temperature": self.min_temperature,
        }


@keras.saving.register_keras_serializable(package="tfadakd")
class Standardized(Static):
    """Logit standardization's temperature (Sun et al., CVPR 2024): a base temperature applied to
    z-scored logits. Use it with `KD(standardize=True)` (or `DKD(standardize=True)`); the loss refuses
    it otherwise.

    Arguments:
        base: the base temperature, a positive finite number (2 in the reference settings, 3 for some
            pairs).

    Example:

    >>> loss = tfadakd.losses.KD(tfadakd.temperatures.Standardized(2.0), standardize=True)
    """

    requires_standardized = True

    _argument_name = "base"
    _typical_values = "The reference settings use 2 (3 for some pairs)."

    def __init__(self, base=2.0, **kwargs):
        super().__init__(temperature=base, **kwargs)

    @property
    def base(self):
        return self.temperature

    def get_config(self):
        config = super().get_config()
        config["base"] = config.pop("temperature")
        return config


@keras.saving.register_keras_serializable(package="tfadakd")
class NormKD(Temperature):
    """NormKD's per-sample temperatures: `scale * std(logits)`, for teacher and student separately.

    The teacher's logits are divided by `scale * std(t_i)` and the student's by `scale * std(s_i)`
    (Bessel-corrected std plus 1e-7); the `T^2` factor and the logged temperature use the teacher's.
    No gradient flows through either temperature.

    Arguments:
        scale: the multiplier of the standard deviation (2.0 in NormKD).

    Example:

    >>> loss = tfadakd.losses.KD(tfadakd.temperatures.NormKD(2.0))
    """

    def __init__(self, scale=2.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = check_number("scale", scale, minimum=0, exclusive_minimum=True, owner="NormKD")

    def call(self, teacher_logits, student_logits, epoch=None):
        return ops.stop_gradient(self.scale * F.standard_deviation(teacher_logits))

    def student_temperature(self, student_logits, temperature):
        return ops.stop_gradient(self.scale * F.standard_deviation(ops.cast(student_logits, "float32")))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def reverse_gradient(x, factor):
    """Identity forward; the backward pass multiplies the incoming gradient by `factor` (< 0 reverses).

    Backend-neutral (no custom gradient): `stop_gradient(x) + factor * (x - stop_gradient(x))`, whose
    value is exactly `x` (the bracket is exactly 0) and whose gradient with respect to `x` is `factor`.
    No gradient flows into `factor`.
    """
    x = ops.convert_to_tensor(x)
    factor = ops.stop_gradient(ops.cast(factor, x.dtype))
    frozen = ops.stop_gradient(x)
    return frozen + factor * (x - frozen)


def reversal_factor(epoch, reversal_epochs=10, max_reversal=1.0):
    """CTKD's gradient-reversal factor: 0 -> -max_reversal on a cosine over `reversal_epochs` epochs.

    `lambda(e) = -max_reversal * (1 - cos(pi * min(e + 1, E) / E)) / 2` for the 0-based Keras epoch `e`
    (CTKD counts epochs from 1). With `epoch=None` (outside `fit`) the factor is `-max_reversal`.
    """
    if epoch is None:
        return ops.convert_to_tensor(-max_reversal, "float32")
    progress = ops.minimum((ops.cast(epoch, "float32") + 1.0) / float(reversal_epochs), 1.0)
    return -max_reversal * (1.0 - ops.cos(math.pi * progress)) / 2.0


@keras.saving.register_keras_serializable(package="tfadakd")
class Learnable(Temperature):
    """CTKD's learned temperature (Li et al., AAAI 2023): `tau = t_start + t_range * sigmoid(theta)`.

    `theta` is trained by the student's optimizer through a gradient reversal layer whose factor
    goes from 0 to -1 on a cosine schedule over the first `reversal_epochs` epochs, so the
    temperature learns to *maximize* the distillation loss (an easy-to-hard curriculum) while the
    student minimizes it. The weights live in this layer, train with the `Distiller` and are saved
    with it.

    Arguments:
        mode: `"global"` (one scalar `theta`, initialized to 1 as in CTKD) or `"instance"` (a small
            MLP on the concatenated teacher and student logits, no gradient into the logits, giving
            one `theta` per sample).
        t_start, t_range: `tau` lies in `(t_start, t_start + t_range)`: (1, 21) by default; both
            positive finite numbers.
        hidden_units: width of the instance MLP's hidden layer (an integer >= 1).
        reversal_epochs, max_reversal: the gradient-reversal schedule (see `reversal_factor`): an
            integer >= 1 and a finite number >= 0.

    Raises:
        ValueError: for an unknown `mode` or a numeric argument outside the ranges above (NaN and
            infinities included), naming the argument.

    Example:

    >>> loss = tfadakd.losses.KD(tfadakd.temperatures.Learnable("global"))
    """

    MODES = ("global", "instance")

    def __init__(
        self,
        mode="global",
        t_start=1.0,
        t_range=20.0,
        hidden_units=256,
        reversal_epochs=10,
        max_reversal=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"Learnable mode must be one of {self.MODES}, got {mode!r}.")
        positive = dict(minimum=0, exclusive_minimum=True, owner="Learnable")
        self.mode = mode
        self.t_start = check_number("t_start", t_start, **positive)
        self.t_range = check_number("t_range", t_range, **positive)
        self.hidden_units = check_number("hidden_units", hidden_units, integer=True, minimum=1, owner="Learnable")
        self.reversal_epochs = check_number(
            "reversal_epochs", reversal_epochs, integer=True, minimum=1, owner="Learnable"
        )
        self.max_reversal = check_number("max_reversal", max_reversal, minimum=0, owner="Learnable")
        if mode == "global":
            self.theta = self.add_weight(
                name="theta", shape=(), initializer=keras.initializers.Constant(1.0)
            )
        else:
            self.hidden = keras.layers.Dense(self.hidden_units, activation="relu", dtype="float32")
            self.head = keras.layers.Dense(1, dtype="float32")

    def build(self, teacher_logits_shape, *args, **kwargs):
        if self.mode == "instance":
            classes = teacher_logits_shape[-1]
            self.hidden.build((None, 2 * classes))
            self.head.build((None, self.hidden_units))
        self.built = True

    def call(self, teacher_logits, student_logits, epoch=None):
        if self.mode == "global":
            theta = ops.full((ops.shape(teacher_logits)[0], 1), 1.0, dtype="float32") * self.theta
        else:
            features = ops.stop_gradient(ops.concatenate([teacher_logits, student_logits], axis=-1))
            theta = self.head(self.hidden(features))
        factor = reversal_factor(epoch, self.reversal_epochs, self.max_reversal)
        theta = reverse_gradient(theta, factor)
        return self.t_start + self.t_range * ops.sigmoid(theta)

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "t_start": self.t_start,
            "t_range": self.t_range,
            "hidden_units": self.hidden_units,
            "reversal_epochs": self.reversal_epochs,
            "max_reversal": self.max_reversal,
        }


TEMPERATURES.register("static", Static)
TEMPERATURES.register("adaptive", AdaptiveMaxLogit)
TEMPERATURES.register("standardized", Standardized)
TEMPERATURES.register("normkd", NormKD)
TEMPERATURES.register("learnable", Learnable)


def get(identifier):
    """Returns a temperature scheme from a scheme, a positive number (a `Static` temperature), a
    registered name (`"static"`, `"adaptive"`, ...) or a serialized config.

    Raises:
        ValueError: for anything else, naming the value.
    """
    if isinstance(identifier, Temperature):
        return identifier
    if isinstance(identifier, bool):
        raise ValueError(f"Cannot interpret {identifier!r} as a temperature scheme.")
    if isinstance(identifier, numbers.Real):  # Python and NumPy numbers alike
        return Static(identifier)
    if isinstance(identifier, str):
        return TEMPERATURES.build(identifier)
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(
        f"Cannot interpret {identifier!r} as a temperature scheme: pass a "
        f"tfadakd.temperatures scheme, a positive number or one of {TEMPERATURES.names()}."
    )
