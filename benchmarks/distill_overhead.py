"""Where our Distiller step spends the time that `keras.distillation.Distiller` does not: ablations
measured in one run (interleaved repetitions, medians).

    python benchmarks/distill_overhead.py --pair=resnet20,resnet8 --repetitions=20

Each variant is our Distiller (static T=4, raw logits, the loss `keras.distillation` computes) with one
safeguard or log taken out, so the difference to the full step is what that piece costs:

- `no correlation log`: the per-sample teacher-student logit correlation is not computed;
- `no finite checks`: teacher logits, loss and gradients are not checked for NaN/Inf;
- `no label check`: labels are not asserted to lie in [0, num_classes - 1];
- `no conditional update`: gradients are applied unconditionally (no `tf.cond` around the optimizer);
- `no status read-back`: `train_on_batch` does not read the step status back to raise;
- `all removed`: all of the above.

`--trace_dir` also writes a TensorFlow profiler trace of a few full steps (open it in TensorBoard's
Profile tab).
"""

import argparse

import keras
import tensorflow as tf

import tfadakd
from _common import default_data_dir
from distill_step import keras_distiller, measure, real_batches

PIECES = ("correlation", "finite", "labels", "cond", "readback")


def ablated(removed):
    """A Distiller subclass with the `removed` pieces (names from PIECES) taken out."""

    class Ablated(tfadakd.Distiller):
        def _distillation_terms(self, x, y, sample_weight, training, teacher_logits=None):
            total, student_logits, logs, teacher_logits = super()._distillation_terms(
                x, y, sample_weight, training, teacher_logits=teacher_logits)
            if "correlation" in removed:
                logs["logit_correlation"] = tf.zeros(())
            return total, student_logits, logs, teacher_logits

        def _check_labels(self, y):
            if "labels" in removed:
                return tf.constant(True), tf.zeros((), tf.int64), tf.zeros((), tf.int64), y
            return super()._check_labels(y)

        def _step_ok(self, teacher_logits, total, gradients, labels_ok, smallest, largest):
            if "finite" in removed:
                return labels_ok
            return super()._step_ok(teacher_logits, total, gradients, labels_ok, smallest, largest)

        def _apply_gradients_if(self, ok, gradients, trainable):
            if "cond" in removed:
                self.optimizer.apply_gradients(zip(gradients, trainable))
            else:
                super()._apply_gradients_if(ok, gradients, trainable)

        def train_on_batch(self, *args, **kwargs):
            if "readback" in removed:
                return keras.Model.train_on_batch(self, *args, **kwargs)
            return super().train_on_batch(*args, **kwargs)

    return Ablated


def build(teacher_name, student_name, jit):
    keras.utils.set_random_seed(0)
    teacher = tfadakd.models.build(teacher_name)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    settings = {"full": ()}
    settings.update({f"no {label}": (piece,) for piece, label in zip(PIECES, (
        "correlation log", "finite checks", "label check", "conditional update", "status read-back"))})
    settings["all removed"] = PIECES
    steps = {}
    for name, removed in settings.items():
        d = ablated(removed)(tfadakd.models.build(student_name), teacher, tfadakd.losses.KD(4.0), 0.1, 0.9)
        d.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=ce, jit_compile=jit)
        steps[name] = d.train_on_batch
    steps["keras.distillation"] = keras_distiller(teacher, student_name, ce, jit).train_on_batch
    return steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet20,resnet8")
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--trace_dir", default=None)
    args = parser.parse_args()
    teacher, student = args.pair.split(",")
    batches = real_batches(8, args.batch_size, args.data_dir or default_data_dir())
    steps = build(teacher, student, args.jit)
    ms = measure(steps, batches, args.repetitions)
    print(f"\n{teacher} -> {student}, batch {args.batch_size}{', XLA' if args.jit else ''}, real CIFAR-100, "
          f"median of {args.repetitions} interleaved repetitions (TF {tf.__version__}, Keras {keras.__version__})")
    for name, value in ms.items():
        print(f"  {name:24s} {value:7.1f} ms   {value - ms['full']:+6.1f} ms vs full   "
              f"{value / ms['keras.distillation']:.3f}x keras.distillation")
    if args.trace_dir:
        tf.profiler.experimental.start(args.trace_dir)
        for i in range(5):
            steps["full"](*batches[i % len(batches)])
        tf.profiler.experimental.stop()
        print(f"profiler trace: {args.trace_dir} (tensorboard --logdir {args.trace_dir}, Profile tab)")
    print(f"\ncommand: python benchmarks/distill_overhead.py --pair={args.pair} --repetitions={args.repetitions}"
          f"{' --jit' if args.jit else ''}")


if __name__ == "__main__":
    main()
