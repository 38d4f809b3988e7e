"""Relational KD (Park et al., CVPR 2019): match the distances and angles between the samples of a batch.

On the pooled features (default "pool"), for the teacher's `t` and the student's `s` alike:

    psi_D(i, j) = ||x_i - x_j|| / mu,     mu the mean distance over the pairs i != j
    psi_A(i, j, k) = <e_ij, e_ik>,        e_ij = (x_j - x_i) / ||x_j - x_i||   (0 for j = i)
    loss_i = w_d * mean_j huber(psi_D^s(i, j) - psi_D^t(i, j)) + w_a * mean_{j, k} huber(psi_A^s(i, j, k) - psi_A^t(i, j, k))

`huber` is the smooth L1 (0.5 x^2 below 1, |x| - 0.5 above). The per-sample value of sample i gathers the
relations of which i is the first member; their mean over the batch is the batch's RKD loss. The relations
are those of the batch a replica sees (under `tf.distribute`, of each replica's share). No parameters:
feature sizes may differ. Weights 25 (distance) and 50 (angle), term weight 1, as in the reference recipe.

Example:

```python
distiller = tfadakd.Distiller(student, teacher, terms=[(tfadakd.methods.RKD(), 1.0)], student_loss_weight=1.0)
```
"""

import keras
from keras import ops

from tfadakd.methods.term import Term

EPSILON = 1e-12


def _huber(x):
    absolute = ops.abs(x)
    return ops.where(absolute < 1.0, 0.5 * ops.square(x), absolute - 0.5)


def distance_relations(x):
    """(batch, batch) pairwise distances divided by their mean over the pairs of distinct samples."""
    squared = ops.sum(ops.square(x), axis=-1)
    gram = ops.matmul(x, ops.transpose(x))
    d2 = ops.expand_dims(squared, 0) + ops.expand_dims(squared, 1) - 2.0 * gram
    batch = ops.shape(x)[0]
    off_diagonal = 1.0 - ops.eye(batch, dtype=x.dtype)
    distance = ops.sqrt(ops.maximum(d2, EPSILON)) * off_diagonal
    positive = ops.cast(distance > 0, x.dtype)
    mean = ops.sum(distance) / ops.maximum(ops.sum(positive), 1.0)
    return distance / mean


def angle_relations(x):
    """(batch, batch, batch) cosines `<e_ij, e_ik>` of the angle at sample i."""
    difference = ops.expand_dims(x, 0) - ops.expand_dims(x, 1)  # [i, j] = x_j - x_i
    norm = ops.sqrt(ops.sum(ops.square(difference), axis=-1, keepdims=True))
    unit = difference / ops.maximum(norm, EPSILON)
    return ops.matmul(unit, ops.transpose(unit, (0, 2, 1)))


def _flat(x):
    return ops.reshape(x, (ops.shape(x)[0], -1))


@keras.saving.register_keras_serializable(package="tfadakd")
class RKD(Term):
    """Relational KD, distance and angle terms (see the module docstring).

    Arguments:
        feature: the layer read from both models (default "pool"); a feature map is flattened.
        student_feature: the student's layer, where its name differs.
        distance_weight, angle_weight: `w_d` (25) and `w_a` (50).
        name: the term's name in the logs (default "rkd"); it also logs `rkd_distance` and `rkd_angle`.
    """

    log_names = ("distance", "angle")

    def __init__(self, feature="pool", student_feature=None, distance_weight=25.0, angle_weight=50.0, name="rkd",
                 **kwargs):
        from tfadakd._checks import check_number

        kwargs.pop("reads", None)
        kwargs.pop("student_reads", None)
        super().__init__(reads=(feature,), student_reads=(student_feature or feature,), name=name, **kwargs)
        self.feature, self.student_feature = feature, student_feature
        self.distance_weight = check_number("distance_weight", distance_weight, minimum=0, owner="RKD")
        self.angle_weight = check_number("angle_weight", angle_weight, minimum=0, owner="RKD")

    def compute(self, teacher, student, labels, epoch):
        t, s = _flat(teacher[self.feature]), _flat(student[self.feature])
        t = ops.stop_gradient(t)
        distance = ops.mean(_huber(distance_relations(s) - distance_relations(t)), axis=-1)
        angle = ops.mean(_huber(angle_relations(s) - angle_relations(t)), axis=(1, 2))
        per_sample = self.distance_weight * distance + self.angle_weight * angle
        return per_sample, {"distance": ops.mean(distance), "angle": ops.mean(angle)}

    def get_config(self):
        config = super().get_config()
        for key in ("reads", "student_reads"):
            config.pop(key)
        config.update({"feature": self.feature, "student_feature": self.student_feature,
                       "distance_weight": self.distance_weight, "angle_weight": self.angle_weight})
        return config
