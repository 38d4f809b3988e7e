"""Distillation losses: callables `loss(teacher_logits, student_logits) -> (batch,)` per-sample values.

A loss holds its temperature scheme (see `tfadakd.temperatures`) and is a Keras layer, so that a
learnable scheme's weights train and save with the `Distiller`. Losses compute in float32 whatever the
mixed-precision policy is. The `Distiller` reduces the per-sample values (weighted mean, scaled for
`tf.distribute`); calling a loss directly gives the unreduced values, convenient for tests and analysis.
Written with `keras.ops`: the losses run on every Keras 3 backend and import without TensorFlow; inside
Keras' own `keras.distillation.Distiller` use them through `tfadakd.keras_distillation.Logits`.

Example:

```python
kd = tfadakd.losses.KD(temperature=tfadakd.temperatures.AdaptiveMaxLogit(), standardize=True)
per_sample = kd(teacher_logits, student_logits)                       # (batch,)
per_sample, T = kd(teacher_logits, student_logits, return_temperature=True)
```
"""

import keras
from keras import ops

from tfadakd import functional as F
from tfadakd import temperatures as temperatures_lib
from tfadakd._checks import check_number
from tfadakd.registry import Registry

#: Distillation losses by name, for apps and flag files (`--method=kd`).
LOSSES = Registry("distillation method")


def _compatible_shapes(a, b):
    """True if two static shapes have the same rank and agree where both dimensions are known."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


class DistillationLoss(keras.layers.Layer):
    """Base class: standardizes (optionally), asks the temperature scheme for `T`, then `compute`s.

    Subclasses implement `compute(teacher_logits, student_logits, temperature, labels)` returning
    per-sample values of shape (batch,), on logits that are already standardized if asked.

    Arguments:
        temperature: a `tfadakd.temperatures` scheme, a positive number (a static temperature) or a
            registered scheme name.
        standardize: z-score both logit vectors per sample first (logit standardization, Sun et al.
            2024; Bessel-corrected std, epsilon 1e-7); the temperature scheme then sees the
            standardized logits.
    """

    def __init__(self, temperature=4.0, standardize=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not isinstance(standardize, bool):
            raise ValueError(f"`standardize` must be True or False, got {standardize!r}.")
        self.temperature = temperatures_lib.get(temperature)
        if self.temperature.requires_standardized and not standardize:
            raise ValueError(
                f"The {type(self.temperature).__name__} temperature is defined on standardized "
                f"logits: pass standardize=True to {type(self).__name__}."
            )
        self.standardize = standardize

    def __call__(
        self, teacher_logits, student_logits, labels=None, epoch=None, return_temperature=False, **kwargs
    ):
        teacher_logits = ops.cast(teacher_logits, "float32")
        student_logits = ops.cast(student_logits, "float32")
        if len(teacher_logits.shape) != 2 or not _compatible_shapes(teacher_logits.shape, student_logits.shape):
            raise ValueError(
                "Teacher and student logits must have the same shape (batch, classes); got teacher "
                f"{tuple(teacher_logits.shape)} and student {tuple(student_logits.shape)}. Check that "
                "both models were built for the same number of classes."
            )
        return super().__call__(
            teacher_logits,
            student_logits,
            labels=labels,
            epoch=epoch,
            return_temperature=return_temperature,
            **kwargs,
        )

    def call(self, teacher_logits, student_logits, labels=None, epoch=None, return_temperature=False):
        if self.standardize:
            teacher_logits = F.standardize(teacher_logits)
            student_logits = F.standardize(student_logits)
        temperature = self.temperature(teacher_logits, student_logits, epoch=epoch)
        student_temperature = self.temperature.student_temperature(student_logits, temperature)
        loss = self.compute(teacher_logits, student_logits, temperature, student_temperature, labels, epoch)
        return (loss, temperature) if return_temperature else loss

    def compute(self, teacher_logits, student_logits, temperature, student_temperature, labels, epoch):
        """Per-sample loss, shape (batch,), on (standardized if asked) float32 logits.

        `temperature` (batch, 1) divides the teacher's logits and `student_temperature` the
        student's (the same tensor except for schemes such as NormKD); `epoch` is the 0-based
        training epoch during `Distiller.fit`, else None.
        """
        raise NotImplementedError

    def compute_output_shape(self, teacher_shape, *args, **kwargs):
        return (teacher_shape[0],)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": keras.saving.serialize_keras_object(self.temperature),
            "standardize": self.standardize,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["temperature"] = keras.saving.deserialize_keras_object(config["temperature"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfadakd")
class KD(DistillationLoss):
    """Hinton et al.'s KD with any temperature scheme: `T_i^2 * KL(softmax(t/T_i) || softmax(s/T_i))`.

    With `temperature=AdaptiveMaxLogit()` and `standardize=True` this is the paper's method; with
    `temperature=4.0` it is the classic KD baseline. The `T^2` factor keeps gradient sizes independent
    of `T`; KL sums over classes.

    Arguments:
        temperature: a `tfadakd.temperatures` scheme, a positive number or a scheme name.
        standardize: z-score the logits per sample first (see `DistillationLoss`).

    Returns (when called):
        per-sample losses of shape (batch,), float32; with `return_temperature=True` also the
        (batch, 1) temperatures.

    Example:

    >>> kd = tfadakd.losses.KD(temperature=4.0)
    >>> kd(teacher_logits, student_logits)   # (batch,)
    """

    def compute(self, teacher_logits, student_logits, temperature, student_temperature, labels, epoch):
        return F.kd_divergence(teacher_logits, student_logits, temperature, student_temperature)


@keras.saving.register_keras_serializable(package="tfadakd")
class DKD(DistillationLoss):
    """Decoupled KD (Zhao et al., CVPR 2022) with any temperature scheme, the adaptive one included.

        loss_i = min((epoch + 1) / warmup_epochs, 1) * (alpha * TCKD_i + beta * NCKD_i)

    TCKD is the binary target-vs-rest KL and NCKD the KL over the non-target classes, each with the
    `T_i^2` factor (see `tfadakd.functional.dkd_terms`). The warm-up follows the real epoch during
    `Distiller.fit` (the Distiller's epoch counter, restored on resume; mdistiller counts epochs from
    1, hence `epoch + 1`); called outside `fit` (epoch None) the factor is 1. Needs labels.
    Use it with `student_loss_weight=1.0, distillation_loss_weight=1.0` as in the DKD recipe.

    Arguments:
        alpha: TCKD weight (1.0).
        beta: NCKD weight (8.0; 2 for res56->res20 and res110->res32, 6 for vgg13->vgg8 and the
            wrn_40_2 pairs: `docs/method.md` section 4.4).
        temperature: a scheme, a number (4.0 in DKD) or a scheme name.
        standardize: z-score the logits first.
        warmup_epochs: epochs of linear warm-up (20); 0 disables it.

    `alpha`, `beta` and `warmup_epochs` are finite Python or NumPy numbers >= 0.

    Raises:
        ValueError: for a numeric argument that is not a finite number >= 0, naming it.

    Example:

    >>> dkd = tfadakd.losses.DKD(beta=8.0, temperature=tfadakd.temperatures.AdaptiveMaxLogit(),
    ...                          standardize=True)
    >>> dkd(teacher_logits, student_logits, labels=labels)   # (batch,)
    """

    def __init__(self, alpha=1.0, beta=8.0, temperature=4.0, standardize=False, warmup_epochs=20, **kwargs):
        super().__init__(temperature=temperature, standardize=standardize, **kwargs)
        self.alpha = check_number("alpha", alpha, minimum=0, owner="DKD")
        self.beta = check_number("beta", beta, minimum=0, owner="DKD")
        self.warmup_epochs = check_number("warmup_epochs", warmup_epochs, minimum=0, owner="DKD")

    def warmup_factor(self, epoch):
        if epoch is None or self.warmup_epochs == 0:
            return ops.convert_to_tensor(1.0, "float32")
        return ops.minimum((ops.cast(epoch, "float32") + 1.0) / self.warmup_epochs, 1.0)

    def compute(self, teacher_logits, student_logits, temperature, student_temperature, labels, epoch):
        if labels is None:
            raise ValueError("DKD needs the labels: call it as dkd(teacher_logits, student_logits, labels=y).")
        tckd, nckd = F.dkd_terms(teacher_logits, student_logits, labels, temperature, student_temperature)
        return self.warmup_factor(epoch) * (self.alpha * tckd + self.beta * nckd)

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "warmup_epochs": self.warmup_epochs,
        }


@keras.saving.register_keras_serializable(package="tfadakd")
class Correlation(DistillationLoss):
    """The logit-correlation loss: `1 - rho_i`, rho_i the Pearson correlation of the two logit vectors.

    The adaptive temperature's paper argues that at its temperature `T_i^2 KL ~ ((N-1)/N) (1 - rho_i)`
    (`docs/method.md` section 3); this loss trains on the right-hand side directly, so that a study can
    tell whether the adaptive method is a correlation loss in disguise. Pearson's correlation is invariant
    to shifting and scaling each vector, so `standardize` changes nothing (beyond rounding) and no
    temperature enters the loss: the scheme is still computed and logged (with
    `temperature="adaptive", standardize=True` the logs show the temperature the adaptive method would
    have used). To match the adaptive loss's scale, weigh it by `w_kd * (N - 1) / N` (8.91 for weight 9
    and 100 classes).

    Arguments:
        temperature: a scheme, a number or a scheme name; logged only (default 1.0).
        standardize: z-score the logits first; no effect on the value.

    Example:

    >>> loss = tfadakd.losses.Correlation()
    >>> loss(teacher_logits, student_logits)   # (batch,), 1 - rho_i, in [0, 2]
    """

    def __init__(self, temperature=1.0, standardize=False, **kwargs):
        super().__init__(temperature=temperature, standardize=standardize, **kwargs)

    def compute(self, teacher_logits, student_logits, temperature, student_temperature, labels, epoch):
        return 1.0 - F.logit_correlation(teacher_logits, student_logits)


LOSSES.register("kd", KD)
LOSSES.register("dkd", DKD)
LOSSES.register("correlation", Correlation)


def get(identifier):
    """Returns a distillation loss from a loss object, a registered name or a serialized config."""
    if isinstance(identifier, DistillationLoss):
        return identifier
    if isinstance(identifier, str):
        return LOSSES.build(identifier)
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(
        f"Cannot interpret {identifier!r} as a distillation loss: pass a tfadakd.losses object "
        f"or one of {LOSSES.names()}."
    )
