"""Distillation terms: what a `tfadakd.Distiller` adds to the student's loss, each reading named layers.

| term | reads | what |
| --- | --- | --- |
| `LogitTerm(loss)` | logits | any `tfadakd.losses` loss (KD, DKD, correlation) with its temperature scheme |
| `FitNet(stage="stage2")` | one stage | MSE through a connector sized from the two shapes |
| `AT(stages=("stage1", "stage2", "stage3"))` | several stages | attention transfer |
| `RKD(feature="pool")` | pooled features | distance and angle relations between samples |

`METHODS` registers the feature terms by name (`fitnet`, `at`, `rkd`); the contract is in
`tfadakd.methods.term`.

Example:

```python
distiller = tfadakd.Distiller(student, teacher, terms=[
    (tfadakd.methods.LogitTerm(tfadakd.losses.KD(temperature="adaptive", standardize=True)), 9.0),
    (tfadakd.methods.FitNet("stage2"), 100.0)], student_loss_weight=0.1)
```
"""

import keras

from tfadakd.methods.at import AT
from tfadakd.methods.fitnet import FitNet
from tfadakd.methods.rkd import RKD
from tfadakd.methods.term import LOGITS, LogitTerm, Term
from tfadakd.registry import Registry

#: Feature terms by name, for apps and flag files.
METHODS = Registry("distillation term")
METHODS.register("fitnet", FitNet)
METHODS.register("at", AT)
METHODS.register("rkd", RKD)

__all__ = ["AT", "FitNet", "LOGITS", "LogitTerm", "METHODS", "RKD", "Term", "get"]


def get(identifier):
    """A term from a term, a registered feature-term name, a logit-loss name or object (wrapped in a
    `LogitTerm`), or a serialized config.

    Raises:
        ValueError: naming the value and the valid names.
    """
    from tfadakd import losses as losses_lib

    if isinstance(identifier, Term):
        return identifier
    if isinstance(identifier, losses_lib.DistillationLoss):
        return LogitTerm(identifier)
    if isinstance(identifier, str):
        if identifier in METHODS:
            return METHODS.build(identifier)
        if identifier in losses_lib.LOSSES:
            return LogitTerm(identifier)
        raise ValueError(f"Unknown distillation term {identifier!r}. Valid names: "
                         f"{', '.join(sorted(METHODS.names() + losses_lib.LOSSES.names()))}.")
    if isinstance(identifier, dict):
        return get(keras.saving.deserialize_keras_object(identifier))
    raise ValueError(f"Cannot interpret {identifier!r} as a distillation term: pass a tfadakd.methods term, a "
                     "tfadakd.losses loss or a registered name.")
