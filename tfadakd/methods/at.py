"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017): match the spatial attention maps of several stages.

    a(f) = q / ||q||_2,   q = mean_c f^2 over the channels, flattened over (height, width)
    loss_i = sum_stages mean_{h, w} (a(s_i) - a(t_i))^2

No parameters: the channel counts may differ. Where the resolutions differ by a power of 2, the larger
feature map is average-pooled to the smaller one first. Weight 1000 in the reference recipe.

Example:

```python
term = tfadakd.methods.AT(("stage1", "stage2", "stage3"))
distiller = tfadakd.Distiller(student, teacher, terms=[(term, 1000.0)], student_loss_weight=1.0)
```
"""

import keras
from keras import ops

from tfadakd.methods.term import Term


def attention_map(feature, epsilon=1e-12):
    """The L2-normalized spatial map of the channel mean of `feature ** 2`: (batch, h, w, c) -> (batch, h * w)."""
    q = ops.mean(ops.square(feature), axis=-1)
    q = ops.reshape(q, (ops.shape(q)[0], -1))
    return q / ops.maximum(ops.sqrt(ops.sum(ops.square(q), axis=-1, keepdims=True)), epsilon)


@keras.saving.register_keras_serializable(package="tfadakd")
class AT(Term):
    """Attention transfer over `stages` (see the module docstring).

    Arguments:
        stages: the layers read from both models (default the three stages of the CIFAR ResNets).
        student_stages: the student's layers, where their names differ.
        name: the term's name in the logs (default "at").

    Raises:
        ValueError: when a pair of feature maps is not 4-D or their resolutions differ by other than a
            power of 2, naming both shapes.
    """

    def __init__(self, stages=("stage1", "stage2", "stage3"), student_stages=None, name="at", **kwargs):
        kwargs.pop("reads", None)
        kwargs.pop("student_reads", None)
        stages = (stages,) if isinstance(stages, str) else tuple(stages)
        super().__init__(reads=stages, student_reads=student_stages, name=name, **kwargs)
        self.pooling = {}

    def build_for(self, teacher_shapes, student_shapes):
        for name in self.reads:
            t, s = tuple(teacher_shapes[name]), tuple(student_shapes[name])
            shapes = f"teacher {name} {t}, student {s}"
            if len(t) != 4 or len(s) != 4:
                raise ValueError(f"AT reads 4-D feature maps (batch, height, width, channels); got {shapes}.")
            big, small = max(s[1], t[1]), min(s[1], t[1])
            factor = big // small
            if big % small or factor & (factor - 1) or s[2] * t[1] != t[2] * s[1]:
                raise ValueError(f"AT cannot match the resolutions of {shapes}: they must differ by a power of 2.")
            self.pooling[name] = (factor, "student" if s[1] > t[1] else "teacher") if factor > 1 else None
        super().build_for(teacher_shapes, student_shapes)

    def compute(self, teacher, student, labels, epoch):
        total = 0.0
        for name in self.reads:
            t, s = teacher[name], student[name]
            pooling = self.pooling.get(name)
            if pooling is not None:
                factor, which = pooling
                if which == "student":
                    s = ops.average_pool(s, factor, strides=factor)
                else:
                    t = ops.average_pool(t, factor, strides=factor)
            total = total + ops.mean(ops.square(attention_map(s) - attention_map(t)), axis=-1)
        return total, {}

    def get_config(self):
        config = super().get_config()
        config["stages"] = config.pop("reads")
        config["student_stages"] = config.pop("student_reads")
        return config
