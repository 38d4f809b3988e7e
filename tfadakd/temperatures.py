"""Temperature schemes: callables `scheme(teacher_logits, student_logits) -> (batch, 1)` temperatures.

A scheme is a Keras layer so that learnable schemes can own weights that train and save with the
`Distiller`. Schemes compute in float32 whatever the global mixed-precision policy is, and no gradient
flows through a temperature unless the scheme is meant to be learned.

Example:

```python
scheme = tfadakd.temperatures.AdaptiveMaxLogit(source="both")
T = scheme(teacher_logits, student_logits)      # shape (batch, 1), one temperature per sample
```
"""

import math

import keras
import tensorflow as tf

from tfadakd import functional as F
from tfadakd.registry import Registry

#: Temperature schemes by name, for apps and flag files (`--temperature=adaptive`).
TEMPERATURES = Registry("temperature scheme")


class Temperature(keras.layers.Layer):
    """Base class of the temperature schemes.

    Subclasses implement `call(teacher_logits, student_logits)` returning a float32 tensor of shape
    (batch, 1). Inputs are cast to float32 before `call`.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def __call__(self, teacher_logits, student_logits, **kwargs):
        teacher_logits = tf.cast(teacher_logits, "float32")
        student_logits = tf.cast(student_logits, "float32")
        return super().__call__(teacher_logits, student_logits, **kwargs)

    def compute_output_shape(self, teacher_shape, student_shape=None):
        return (teacher_shape[0], 1)


@keras.saving.register_keras_serializable(package="tfadakd")
class Static(Temperature):
    """One fixed temperature for every sample (Hinton et al.'s KD).

    Arguments:
        temperature: a positive, finite float (4.0 in the RepDistiller / mdistiller recipe).

    Raises:
        ValueError: if `temperature` is not a positive finite number.

    Example:

    >>> tfadakd.temperatures.Static(4.0)(t, s)   # a (batch, 1) tensor of 4.0
    """

    def __init__(self, temperature=4.0, **kwargs):
        super().__init__(**kwargs)
        try:
            value = float(temperature)
        except (TypeError, ValueError):
            raise ValueError(f"Static temperature must be a number, got {temperature!r}.") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"Static temperature must be positive and finite, got {temperature!r}. "
                "Typical values are 1 to 8 (4 in the reference recipe)."
            )
        self.temperature = value

    def call(self, teacher_logits, student_logits):
        batch = tf.shape(teacher_logits)[0]
        return tf.fill(tf.stack([batch, 1]), tf.constant(self.temperature, "float32"))

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
        scale: the constant in front of the max; `(1 + sqrt(3)) / 2` by default (METHOD.md section 3).
        min_temperature: a floor that only acts on degenerate, constant logit vectors (where the max is
            0 and the temperature would be 0).

    Raises:
        ValueError: for an unknown `source` or a non-positive `scale`.

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
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"AdaptiveMaxLogit scale must be a positive number, got {scale!r}.")
        if not (isinstance(min_temperature, (int, float)) and min_temperature > 0):
            raise ValueError(
                f"AdaptiveMaxLogit min_temperature must be positive, got {min_temperature!r}."
            )
        self.source = source
        self.scale = float(scale)
        self.min_temperature = float(min_temperature)

    def call(self, teacher_logits, student_logits):
        peak = F.max_abs_logit(teacher_logits)
        if self.source == "both":
            peak = tf.maximum(peak, F.max_abs_logit(student_logits))
        temperature = tf.maximum(self.scale * peak, self.min_temperature)
        return tf.stop_gradient(temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "source": self.source,
            "scale": self.scale,
            "min_temperature": self.min_temperature,
        }


TEMPERATURES.register("static", Static)
TEMPERATURES.register("adaptive", AdaptiveMaxLogit)


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
    if isinstance(identifier, (int, float)):
        return Static(identifier)
    if isinstance(identifier, str):
        return TEMPERATURES.build(identifier)
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(
        f"Cannot interpret {identifier!r} as a temperature scheme: pass a "
        f"tfadakd.temperatures scheme, a positive number or one of {TEMPERATURES.names()}."
    )
