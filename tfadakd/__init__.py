"""tfadakd: knowledge distillation for Keras 3 / TensorFlow with an adaptive, tuning-free temperature.

Public API:

- `tfadakd.Distiller`: the `keras.Model` that trains a student against a frozen teacher.
- `tfadakd.losses`: distillation losses (`KD`, `DKD`), per-sample, with any temperature scheme.
- `tfadakd.temperatures`: temperature schemes (`Static`, `AdaptiveMaxLogit`, `Standardized`, `NormKD`,
  `Learnable`).
- `tfadakd.models`: the CIFAR model zoo (`build`, `names`, `feature_extractor`, `flops`).
- `tfadakd.data`: tfds CIFAR pipelines (`load_cifar`, `calibration_images`).
- `tfadakd.optimizers`: `SGD` with PyTorch's coupled weight decay and momentum, `step_decay`.
- `tfadakd.runs`: `fit_run`, training into a resumable run directory.
- `tfadakd.callbacks`: the callbacks `fit_run` uses (atomic checkpoints, CSV log, temperature statistics).
- `tfadakd.distribute`: `get_strategy` by name.
- `tfadakd.precision`: `default_policy`, the fastest correct Keras precision policy for the machine.
- `tfadakd.export`: TFLite / LiteRT and SavedModel export and evaluation.
- `tfadakd.functional`: the math as pure functions of logits.
"""

from tfadakd import (
    callbacks,
    data,
    distribute,
    export,
    functional,
    losses,
    models,
    optimizers,
    precision,
    runs,
    temperatures,
)
from tfadakd.distiller import Distiller

__version__ = "0.1.0"

__all__ = [
    "Distiller",
    "callbacks",
    "data",
    "distribute",
    "export",
    "functional",
    "losses",
    "models",
    "optimizers",
    "precision",
    "runs",
    "temperatures",
    "__version__",
]
