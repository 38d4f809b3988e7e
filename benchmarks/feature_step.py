"""Feature-term steps against one pass of each model, and against keras.distillation's FeatureDistillation.

    python benchmarks/feature_step.py --pair=resnet32x4,resnet8x4 --repetitions=11
    python benchmarks/feature_step.py --pair=resnet32,resnet8 --repetitions=11
    python benchmarks/feature_step.py --smoke                 # tiny models, 2 repetitions: checks the script only

Prints, for real CIFAR-100 batches of 64 (held in memory) under --precision (default mixed_bfloat16), the
medians of interleaved repetitions (each round runs every variant once, in a new random order):

1. FitNet step / (student training step + teacher forward)                         target <= 1.05
2. AT step / (student training step + teacher forward)                             target <= 1.05
3. KD + FitNet step / (student training step + teacher forward)
4. ours / keras.distillation.FeatureDistillation, the same layers and MSE, where the two feature maps
   have equal shapes (no connector): teacher stage3 against a student built with the teacher's widths
   ("student_same"), so that it needs no connector                                 target <= 1.0

and whether keras.distillation runs the student twice per step (it counts the student's calls). Every
step goes through `train_on_batch`; the teacher forward through a `tf.function`.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import tfadakd

from _common import default_data_dir, interleaved_medians
from distill_step import real_batches


class CallCounter(keras.layers.Layer):
    """Identity that counts its calls (one per forward pass of the model it opens)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls", dtype="float32")

    def call(self, x):
        self.calls.assign_add(1.0)
        return x


def counted(model):
    """`model` with a call counter on its input (same layers and weights)."""
    inputs = keras.Input(model.input_shape[1:])
    counter = CallCounter(name="calls")
    return keras.Model(inputs, model(counter(inputs))), counter


def batches(n, batch_size, smoke, data_dir):
    """`n` real CIFAR-100 batches in memory (`distill_step.real_batches`), or random images for --smoke."""
    if not smoke:
        return real_batches(n, batch_size, data_dir)
    rng = np.random.default_rng(0)
    return [(tf.constant(rng.normal(size=(batch_size, 32, 32, 3)).astype("float32")),
             tf.constant(rng.integers(0, 100, batch_size))) for _ in range(n)]


def variants(teacher_name, student_name, precision):
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    teacher = tfadakd.models.build(teacher_name)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def sgd():
        return keras.optimizers.SGD(0.01, momentum=0.9)

    student = tfadakd.models.build(student_name)
    student.compile(optimizer=sgd(), loss=ce)
    forward = tf.function(lambda x: teacher(x, training=False))

    def ours(terms, student_model=None):
        d = tfadakd.Distiller(student_model or tfadakd.models.build(student_name), teacher, terms=terms,
                              student_loss_weight=1.0)
        d.compile(optimizer=sgd(), loss=ce)
        return d

    kd = tfadakd.losses.KD(temperature="adaptive", standardize=True)
    fitnet, at = ours([(tfadakd.methods.FitNet("stage2"), 100.0)]), ours([(tfadakd.methods.AT(), 1000.0)])
    both = ours([(kd, 9.0), (tfadakd.methods.FitNet("stage2"), 100.0)])
    steps = {
        "student step": lambda x, y: student.train_on_batch(x, y),
        "teacher forward": lambda x, y: forward(x).numpy(),
        "fitnet": lambda x, y: fitnet.train_on_batch(x, y),
        "at": lambda x, y: at.train_on_batch(x, y),
        "kd + fitnet": lambda x, y: both.train_on_batch(x, y),
    }
    counts = {}
    try:
        from keras.distillation import Distiller, FeatureDistillation
    except ImportError:
        Distiller = None
    if Distiller is not None:
        same = tfadakd.models.build(teacher_name)  # equal feature shapes: no connector on either side
        stage = "stage3" if "stage3" in [layer.name for layer in teacher.layers] else "stage2"
        mine = ours([(tfadakd.methods.FitNet(stage), 1.0)], same)
        theirs_student = tfadakd.models.build(teacher_name)
        # keras.distillation computes its distillation losses only while student_loss_weight < 1
        theirs = Distiller(teacher=teacher, student=theirs_student, student_loss_weight=0.5,
                           distillation_losses=FeatureDistillation(loss="mse", teacher_layer_name=stage,
                                                                   student_layer_name=stage))
        theirs.compile(optimizer=sgd(), loss=ce)
        steps["ours, same shapes"] = lambda x, y: mine.train_on_batch(x, y)
        steps["keras.distillation, same shapes"] = lambda x, y: theirs.train_on_batch(x, y)
        counted_student = tfadakd.models.build(teacher_name)  # a separate instance, run eagerly to count
        counted = Distiller(teacher=teacher, student=counted_student, student_loss_weight=0.5,
                            distillation_losses=FeatureDistillation(loss="mse", teacher_layer_name=stage,
                                                                    student_layer_name=stage))
        counts["keras.distillation"] = _student_calls_per_step(counted, counted_student)
    keras.mixed_precision.set_global_policy("float32")
    return steps, counts


def _student_calls_per_step(distiller, student):
    """How many times one `train_on_batch` of `distiller` runs `student`'s layers: counted by wrapping the
    student's first layer's `call` (traced once per Python call in eager mode)."""
    first = next(layer for layer in student.layers if layer.weights)
    calls = []
    original = first.call

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    first.call = counting
    try:
        distiller.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(True),
                          run_eagerly=True)
        x = tf.zeros((2,) + tuple(student.input_shape[1:]))
        distiller.train_on_batch(x, tf.zeros((2,), tf.int64))
    finally:
        first.call = original
    return len(calls)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet32x4,resnet8x4", help="teacher,student zoo names")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--repetitions", type=int, default=11)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="resnet8 -> resnet8, batch 4, 2 repetitions, random "
                                                            "images: checks the script, its numbers mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.pair, args.batch_size, args.repetitions = "resnet8,resnet8", 4, 2
    teacher, student = args.pair.split(",")
    data = batches(4, args.batch_size, args.smoke, default_data_dir())
    steps, counts = variants(teacher, student, args.precision)
    for step in steps.values():  # warm-up: tracing
        for x, y in data[:2]:
            step(x, y)
    cursor = {"i": 0}

    def measure(step):
        x, y = data[cursor["i"] % len(data)]
        cursor["i"] += 1
        start = time.perf_counter()
        step(x, y)
        return 1000 * (time.perf_counter() - start)

    ms = interleaved_medians(steps, args.repetitions, measure)
    one_pass = ms["student step"] + ms["teacher forward"]
    print(f"\n{teacher} -> {student}, batch {args.batch_size}, {args.precision}, median of {args.repetitions} "
          f"interleaved repetitions, TF {tf.__version__}, Keras {keras.__version__}")
    print("step times (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()))
    print(f"  1. FitNet / (student step + teacher forward)      = {ms['fitnet'] / one_pass:.3f}   (target <= 1.05)")
    print(f"  2. AT / (student step + teacher forward)          = {ms['at'] / one_pass:.3f}   (target <= 1.05)")
    print(f"  3. KD + FitNet / (student step + teacher forward) = {ms['kd + fitnet'] / one_pass:.3f}")
    if "keras.distillation, same shapes" in ms:
        print(f"  4. ours / keras.distillation FeatureDistillation = "
              f"{ms['ours, same shapes'] / ms['keras.distillation, same shapes']:.3f}   (target <= 1.0); "
              f"keras.distillation runs the student {counts['keras.distillation']} time(s) per step")
    print(f"\ncommand: python benchmarks/feature_step.py --pair={args.pair} --precision={args.precision} "
          f"--repetitions={args.repetitions}{' --smoke' if args.smoke else ''}")


if __name__ == "__main__":
    main()
