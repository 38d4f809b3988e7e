"""FitNet (Romero et al., ICLR 2015): the student's feature map, through a connector, regresses the teacher's.

    loss_i = mean_{h, w, c} (connector(s_i) - t_i)^2         one stage (default "stage2", the middle one)

The connector is sized from the two feature shapes when the `Distiller` is built (no per-pair table): a
1x1 convolution where the resolutions agree, a 3x3 convolution of stride k where the student's map is k
times larger, a k-times nearest-neighbour upsampling then a 1x1 convolution where it is k times smaller;
then batch normalization and (by default, as the reference code's regressor) a ReLU, the teacher's stage
outputs being post-activation. An identical shape needs no connector. The connector trains with the student,
is saved with the `Distiller`, and is not part of `distiller.student`. Weight 100 in the reference recipe.

Example:

```python
distiller = tfadakd.Distiller(student, teacher, terms=[(tfadakd.methods.FitNet("stage2"), 100.0)],
                              student_loss_weight=1.0)
```
"""

import keras
from keras import ops

from tfadakd.methods.term import Term


def _factor(student_size, teacher_size, what):
    """`(k, larger)`: the integer ratio of two resolutions and whether the student's is the larger."""
    if student_size == teacher_size:
        return 1, False
    big, small = max(student_size, teacher_size), min(student_size, teacher_size)
    if big % small:
        raise ValueError(what)
    return big // small, student_size > teacher_size


@keras.saving.register_keras_serializable(package="tfadakd")
class FitNet(Term):
    """Hint learning: MSE between the connector's student feature and the teacher's (see the module).

    Arguments:
        stage: the layer read from both models (default "stage2").
        student_stage: the student's layer, where its name differs.
        relu: end the connector with a ReLU (True: the teacher's features are post-activation).
        name: the term's name in the logs (default "fitnet").

    Raises:
        ValueError: when the two feature maps are not 4-D or their resolutions are not integer
            multiples of each other, naming both shapes.
    """

    log_names = ()

    def __init__(self, stage="stage2", student_stage=None, relu=True, name="fitnet", **kwargs):
        kwargs.pop("reads", None)
        kwargs.pop("student_reads", None)
        super().__init__(reads=(stage,), student_reads=(student_stage or stage,), name=name, **kwargs)
        self.stage, self.student_stage = stage, student_stage
        if not isinstance(relu, bool):
            raise ValueError(f"FitNet `relu` must be True or False, got {relu!r}.")
        self.relu = relu
        self.connector = None

    def build_for(self, teacher_shapes, student_shapes):
        t, s = tuple(teacher_shapes[self.stage]), tuple(student_shapes[self.stage])
        shapes = f"teacher {self.stage} {t}, student {self.student_reads[0]} {s}"
        if len(t) != 4 or len(s) != 4:
            raise ValueError(f"FitNet reads 4-D feature maps (batch, height, width, channels); got {shapes}. "
                             "Pass stage= a convolutional stage of both models.")
        k, student_larger = _factor(s[1], t[1], f"FitNet cannot match the resolutions of {shapes}: one must be an "
                                                f"integer multiple of the other. Choose another stage.")
        if s[1:] != t[1:]:
            layers = []
            if k > 1 and not student_larger:
                layers.append(keras.layers.UpSampling2D(k, dtype="float32"))
            kernel, stride = (3, k) if student_larger else (1, 1)
            layers += [keras.layers.Conv2D(t[3], kernel, strides=stride, padding="same", use_bias=False, dtype="float32"),
                       keras.layers.BatchNormalization(dtype="float32")]
            if self.relu:
                layers.append(keras.layers.ReLU(dtype="float32"))
            self.connector = keras.Sequential(layers, name=f"{self.name}_connector")
            self.connector.build((None,) + s[1:])
        super().build_for(teacher_shapes, student_shapes)

    def compute(self, teacher, student, labels, epoch):
        feature = student[self.stage]
        if self.connector is not None:
            feature = self.connector(feature)
        return ops.mean(ops.square(feature - teacher[self.stage]), axis=(1, 2, 3)), {}

    def get_config(self):
        config = super().get_config()
        for key in ("reads", "student_reads"):
            config.pop(key)
        config.update({"stage": self.stage, "student_stage": self.student_stage, "relu": self.relu})
        return config
