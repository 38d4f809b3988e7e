"""tfadakd: knowledge distillation for Keras 3 / TensorFlow with an adaptive, tuning-free temperature.

Public API:

- `tfadakd.Distiller`: the `keras.Model` that trains a student against a frozen teacher.
- `tfadakd.losses`: distillation losses (`KD`), per-sample, with any temperature scheme.
- `tfadakd.temperatures`: temperature schemes (`Static`, `AdaptiveMaxLogit`).
- `tfadakd.optimizers`: `SGD` with PyTorch's coupled weight decay and momentum.
- `tfadakd.functional`: the math as pure functions of logits.
"""

from tfadakd import functional, losses, optimizers, temperatures
from tfadakd.distiller import Distiller

__version__ = "0.1.0"

__all__ = ["Distiller", "functional", "losses", "optimizers", "temperatures", "__version__"]
