"""Step-time ratios of the Distiller, measured in one run with interleaved repetitions (medians).

    python benchmarks/distill_step.py --pair=resnet32x4,resnet8x4 --repetitions=15
    python benchmarks/distill_step.py --pair=resnet20,resnet8 --precisions=float32,mixed_bfloat16 --jit

Prints, for real CIFAR-100 batches of 64 (held in memory, so the input pipeline is not timed):

1. distillation step / (student-only training step + teacher forward)      target <= 1.05
2. adaptive-temperature step / static-temperature step                      target <= 1.03
3. our Distiller step / keras.distillation.Distiller step (correct KLDivergence loss)   target <= 1.0
5. each precision / XLA setting against plain float32 (our adaptive step)

Every step goes through Keras' `train_on_batch` (the teacher forward through a `tf.function`), so
the Python overhead is the same for all; repetitions cycle through the variants in a new random order
each time, so that background load and cache effects hit them alike.
"""

import argparse
import random
import statistics
import time

import keras
import tensorflow as tf

import tfadakd


def real_batches(n_batches, batch_size, data_dir):
    ds = tfadakd.data.load_cifar("cifar100", "train", batch_size=batch_size, num_examples=n_batches * batch_size,
                                 seed=0, data_dir=data_dir)
    return [(tf.constant(x), tf.constant(y)) for x, y in ds]


def keras_distiller(teacher, student_name, loss, jit):
    """`keras.distillation.Distiller` at T=4 with the correct `KLDivergence` loss (softmax and T^2),
    compiled like ours; None on a Keras without `keras.distillation`."""
    try:
        from keras.distillation import Distiller, LogitsDistillation
    except ImportError:
        return None
    theirs = Distiller(teacher=teacher, student=tfadakd.models.build(student_name),
                       distillation_losses=LogitsDistillation(temperature=4.0, loss=keras.losses.KLDivergence()),
                       student_loss_weight=0.1)
    theirs.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss, jit_compile=jit)
    return theirs


def build_variants(teacher_name, student_name, precision, jit):
    """name -> callable running one step on a batch."""
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    teacher = tfadakd.models.build(teacher_name)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def sgd():
        return keras.optimizers.SGD(0.01, momentum=0.9)

    student = tfadakd.models.build(student_name)
    student.compile(optimizer=sgd(), loss=ce, jit_compile=jit)
    forward = tf.function(lambda x: teacher(x, training=False), jit_compile=jit)

    def distiller(temperature):
        d = tfadakd.Distiller(tfadakd.models.build(student_name), teacher,
                              tfadakd.losses.KD(temperature, standardize=temperature == "adaptive"), 0.1, 9.0)
        d.compile(optimizer=sgd(), loss=ce, jit_compile=jit)
        return d

    adaptive, static = distiller("adaptive"), distiller(4.0)
    theirs = keras_distiller(teacher, student_name, ce, jit)
    variants = {
        "student step": lambda x, y: student.train_on_batch(x, y),
        "teacher forward": lambda x, y: forward(x).numpy(),
        "distill adaptive": lambda x, y: adaptive.train_on_batch(x, y),
        "distill static T=4": lambda x, y: static.train_on_batch(x, y),
    }
    if theirs is not None:
        variants["keras.distillation T=4"] = lambda x, y: theirs.train_on_batch(x, y)
    keras.mixed_precision.set_global_policy("float32")
    return variants


def measure(variants, batches, repetitions, warmup=3):
    times = {name: [] for name in variants}
    for name, step in variants.items():
        for i in range(warmup):
            step(*batches[i % len(batches)])
    order = list(variants)
    shuffle = random.Random(0).shuffle
    for rep in range(repetitions):
        shuffle(order)  # no variant always runs right after the same other one
        for name in order:
            step = variants[name]
            x, y = batches[rep % len(batches)]
            start = time.perf_counter()
            step(x, y)
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet32x4,resnet8x4", help="teacher,student zoo names")
    parser.add_argument("--precisions", default="float32", help="comma list: float32, mixed_bfloat16, mixed_float16")
    parser.add_argument("--jit", action="store_true", help="also measure jit_compile=True (XLA)")
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    teacher, student = args.pair.split(",")
    batches = real_batches(8, args.batch_size, args.data_dir)

    settings = [(p, False) for p in args.precisions.split(",")] + ([("float32", True)] if args.jit else [])
    results = {}
    for precision, jit in settings:
        label = precision + (" + XLA" if jit else "")
        results[label] = measure(build_variants(teacher, student, precision, jit), batches, args.repetitions)

    print(f"\n{teacher} -> {student}, batch {args.batch_size}, real CIFAR-100 batches, median of "
          f"{args.repetitions} interleaved repetitions, TF {tf.__version__}, Keras {keras.__version__}")
    for label, ms in results.items():
        print(f"\n[{label}] step times (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()))
        print(f"  1. distill / (student step + teacher forward) = "
              f"{ms['distill adaptive'] / (ms['student step'] + ms['teacher forward']):.3f}   (target <= 1.05)")
        print(f"  2. adaptive / static temperature step          = {ms['distill adaptive'] / ms['distill static T=4']:.3f}   (target <= 1.03)")
        if "keras.distillation T=4" in ms:
            print(f"  3. ours (static T=4) / keras.distillation T=4  = {ms['distill static T=4'] / ms['keras.distillation T=4']:.3f}   (target <= 1.0)")
    base = results.get("float32")
    if base:
        for label, ms in results.items():
            if label != "float32":
                print(f"  5. {label} / float32, distill adaptive step = {ms['distill adaptive'] / base['distill adaptive']:.3f}")
    print(f"\ncommand: python benchmarks/distill_step.py --pair={args.pair} --precisions={args.precisions}"
          f"{' --jit' if args.jit else ''} --repetitions={args.repetitions}")


if __name__ == "__main__":
    main()
