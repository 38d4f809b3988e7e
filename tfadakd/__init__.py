"""tfadakd: knowledge distillation for Keras 3 / TensorFlow with an adaptive, tuning-free temperature.

`tfadakd.functional`, `tfadakd.losses`, `tfadakd.methods`, `tfadakd.temperatures` and `tfadakd.keras_distillation` are
written with `keras.ops` and run on every Keras 3 backend (JAX and PyTorch included, without TensorFlow
installed); the rest needs TensorFlow. On the TensorFlow backend `import tfadakd` imports everything; on
another backend the TensorFlow-only submodules are imported when first used (`tfadakd.data`, ...).

Public API:

- `tfadakd.Distiller`: the `keras.Model` that trains a student against a frozen teacher.
- `tfadakd.losses`: logit distillation losses (`KD`, `DKD`, `Correlation`), per-sample, with any temperature
  scheme.
- `tfadakd.methods`: distillation terms that read named layers (`FitNet`, `AT`, `RKD`, `LogitTerm`), for
  `Distiller(terms=[(term, weight), ...])`.
- `tfadakd.temperatures`: temperature schemes (`Static`, `AdaptiveMaxLogit`, `Standardized`, `NormKD`,
  `Learnable`).
- `tfadakd.models`: the CIFAR model zoo (`build`, `names`, `feature_extractor`, `flops`).
- `tfadakd.data`: tfds CIFAR pipelines (`load_cifar`, `cifar_epochs`, `calibration_images`).
- `tfadakd.optimizers`: `SGD` with PyTorch's coupled weight decay and momentum, `step_decay`.
- `tfadakd.runs`: `fit_run`, training into a resumable run directory.
- `tfadakd.teacher_cache`: `TeacherCache`, the teacher's logits computed once per epoch and reused.
- `tfadakd.inference`: `inference_copy`, a frozen teacher with its weights in bfloat16 (opt-in).
- `tfadakd.callbacks`: the callbacks `fit_run` uses (verified atomic checkpoints, graceful stop on SIGTERM /
  SIGINT, CSV log, temperature statistics).
- `tfadakd.distribute`: `get_strategy` by name.
- `tfadakd.precision`: `default_policy`, the fastest correct Keras precision policy for the machine.
- `tfadakd.provenance`: `describe`, the code and machine a run trained on (each run's `environment.json`).
- `tfadakd.export`: TFLite / LiteRT and SavedModel export and evaluation.
- `tfadakd.functional`: the math as pure functions of logits.
- `tfadakd.keras_distillation`: every tfadakd loss as a `keras.distillation.DistillationLoss` (`Logits`).
"""

import importlib as _importlib

import keras as _keras

# The backend-agnostic core (keras.ops only): importable on every Keras 3 backend, TensorFlow not needed.
from tfadakd import functional, keras_distillation, losses, methods, temperatures

#: The TensorFlow-only submodules (tf.data, tf.distribute, TFLite, the fused batch norm ...).
_TENSORFLOW_SUBMODULES = (
    "callbacks",
    "data",
    "distribute",
    "export",
    "inference",
    "models",
    "optimizers",
    "precision",
    "provenance",
    "runs",
    "teacher_cache",
)

if _keras.backend.backend() == "tensorflow":
    # As before: everything is imported with the package, so that every registered Keras class
    # (the Distiller, the models' layers, ...) is known to `keras.models.load_model` after `import tfadakd`.
    from tfadakd import (  # noqa: E402
        callbacks, data, distribute, export, inference, models, optimizers, precision, provenance, runs,
        teacher_cache)
    from tfadakd.distiller import Distiller  # noqa: E402


def __getattr__(name):
    """PEP 562: on another backend, the TensorFlow-only parts are imported on first use only."""
    if name in _TENSORFLOW_SUBMODULES:
        return _importlib.import_module(f"tfadakd.{name}")
    if name == "Distiller":
        return _importlib.import_module("tfadakd.distiller").Distiller
    raise AttributeError(f"module 'tfadakd' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Distiller",
    "callbacks",
    "data",
    "distribute",
    "export",
    "functional",
    "inference",
    "keras_distillation",
    "losses",
    "methods",
    "models",
    "optimizers",
    "precision",
    "provenance",
    "runs",
    "teacher_cache",
    "temperatures",
    "__version__",
]
