"""The contract of a distillation term: what it reads from each model, and per-sample values plus logs.

A term is a Keras layer (so that its connectors train and save with the `Distiller`). It names the layers
it reads (`reads`: the same names in both models; `student_reads` when the student's differ), is built
once with the shapes of those features (`build_for`, where connectors are sized: no per-pair table), and
is called on two dicts of features:

    term(teacher_features, student_features, labels=None, epoch=None) -> (per_sample (batch,), logs)

`logs` maps the names of `log_names` to scalars (a logit term logs its temperature). The `Distiller`
extracts every feature any of its terms reads in one forward pass of each model, weights each term, and
logs `<term.name>_loss` and the term's logs. `"logits"` always means the model's output.

Example:

```python
class L1(Term):
    def compute(self, teacher, student, labels, epoch):
        return ops.mean(ops.abs(teacher["pool"] - student["pool"]), axis=-1), {}

distiller = tfadakd.Distiller(student, teacher, terms=[(L1(reads=("pool",), name="l1"), 1.0)])
```
"""

import keras
from keras import ops


#: The name under which a term reads a model's output (its logits), whatever the output layer is called.
LOGITS = "logits"


class Term(keras.layers.Layer):
    """Base class of the distillation terms (see the module docstring).

    Subclasses implement `compute(teacher_features, student_features, labels, epoch)` returning
    `(per_sample, logs)` on float32 features, and may override `build_for` to create connectors.

    Arguments:
        reads: the layer names read from both models (the teacher's, and the student's unless
            `student_reads` is given); `"logits"` is the model's output.
        student_reads: the student's layer names, in the same order, where they differ.
        name: the term's name in the logs (`<name>_loss`).
    """

    #: Names of the values `compute` returns in its logs dict.
    log_names = ()

    def __init__(self, reads=(LOGITS,), student_reads=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.reads = tuple(reads)
        self.student_reads = tuple(student_reads) if student_reads is not None else self.reads
        if not self.reads or len(self.student_reads) != len(self.reads):
            raise ValueError(
                f"{type(self).__name__}: `reads` must name at least one layer, and `student_reads` as many as "
                f"`reads`; got reads={self.reads}, student_reads={self.student_reads}.")

    @property
    def reads_features(self):
        """Whether the term reads anything but the logits (then a teacher-logit cache cannot serve it)."""
        return any(name != LOGITS for name in self.reads + self.student_reads)

    def build_for(self, teacher_shapes, student_shapes):
        """Creates what depends on the feature shapes (connectors). Both arguments map the teacher's layer
        names (`reads`) to shapes, batch dimension first. Called once, by the `Distiller` or at the first
        call; subclasses that override it call `super().build_for(...)` last."""
        self.built = True

    def build(self, *args, **kwargs):  # Keras' own build hook: everything happens in build_for
        pass

    def __call__(self, teacher_features, student_features, labels=None, epoch=None, **kwargs):
        teacher = {n: ops.cast(teacher_features[n], "float32") for n in self.reads}
        student = {t: ops.cast(student_features[s], "float32") for t, s in zip(self.reads, self.student_reads)}
        if not self.built:  # called directly, not through a Distiller: size the connectors from these features
            self.build_for({n: tuple(v.shape) for n, v in teacher.items()},
                           {n: tuple(v.shape) for n, v in student.items()})
        return super().__call__(teacher, student, labels=labels, epoch=epoch, **kwargs)

    def call(self, teacher, student, labels=None, epoch=None):
        per_sample, logs = self.compute(teacher, student, labels, epoch)
        return per_sample, dict(logs)

    def compute(self, teacher, student, labels, epoch):
        """`(per_sample (batch,), {log name: scalar})` from float32 features keyed by the teacher's names."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update({"reads": list(self.reads), "student_reads": list(self.student_reads)})
        return config


@keras.saving.register_keras_serializable(package="tfadakd")
class LogitTerm(Term):
    """A logit loss of `tfadakd.losses` (KD, DKD, correlation, ...) as a term: it reads the logits and logs
    the batch's mean temperature (the `Distiller` logs the logit correlation itself, whatever the terms).

    Arguments:
        loss: a `tfadakd.losses.DistillationLoss`, a registered name or a serialized config.
        name: the term's name in the logs (default: the loss's registered name, e.g. "kd").

    Example:

    >>> term = LogitTerm(tfadakd.losses.KD(temperature="adaptive", standardize=True))
    """

    log_names = ("temperature",)

    def __init__(self, loss="kd", name=None, **kwargs):
        from tfadakd import losses as losses_lib

        kwargs.pop("reads", None)
        kwargs.pop("student_reads", None)
        loss = losses_lib.get(loss)
        super().__init__(reads=(LOGITS,), name=name or _registered_name(loss), **kwargs)
        self.loss = loss

    def compute(self, teacher, student, labels, epoch):
        per_sample, temperature = self.loss(teacher[LOGITS], student[LOGITS], labels=labels, epoch=epoch,
                                            return_temperature=True)
        return per_sample, {"temperature": ops.mean(temperature)}

    def get_config(self):
        config = super().get_config()
        for key in ("reads", "student_reads"):
            config.pop(key)
        config["loss"] = keras.saving.serialize_keras_object(self.loss)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)


def _registered_name(loss):
    from tfadakd import losses as losses_lib

    for name in losses_lib.LOSSES.names():
        if type(loss) is losses_lib.LOSSES.get(name):
            return name
    return type(loss).__name__.lower()
