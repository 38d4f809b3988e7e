"""What the lean inference teacher (`tfadakd.inference.inference_copy`) saves, in one run (medians).

    python benchmarks/lean_teacher.py --repetitions=7
    python benchmarks/lean_teacher.py --pairs=resnet32x4,resnet8x4 --repetitions=15

Prints, for real CIFAR-100 batches of 64 held in memory, under the precision policy (default: the
apps' `auto`, `tfadakd.precision.default_policy`, mixed_bfloat16 on a CPU with bf16 instructions):

1. teacher forward: lean copy / original (the original casts its float32 weights to bf16 every call)
2. live-teacher distillation step (`tfadakd.Distiller`, default adaptive KD, `train_on_batch`):
   with the lean copy as the teacher / with the original

The variants of a pair cycle in a new random order each repetition; each repetition times
--batches batches per variant.
"""

import argparse
import random
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

import tfadakd
from tfadakd.inference import inference_copy
from _common import default_data_dir


def real_batches(n_batches, data_dir):
    ds = tfadakd.data.load_cifar("cifar100", "train", batch_size=64, num_examples=n_batches * 64, seed=0,
                                 data_dir=data_dir)
    return [(tf.constant(x), tf.constant(y)) for x, y in ds]


def pair_variants(teacher_name, student_name):
    """name -> callable(x, y) running one forward or step; the lean and original teachers checked equal."""
    keras.utils.set_random_seed(0)
    teacher = tfadakd.models.build(teacher_name)
    lean = inference_copy(teacher)
    original_forward = tf.function(lambda x: tf.cast(teacher(x, training=False), tf.float32))
    lean_forward = tf.function(lambda x: lean(x, training=False))

    def distiller(model):
        keras.utils.set_random_seed(1)  # the same student for both
        d = tfadakd.Distiller(tfadakd.models.build(student_name), model)
        d.compile(optimizer=tfadakd.optimizers.SGD(0.01, momentum=0.9))
        return d

    live, live_lean = distiller(teacher), distiller(lean)
    return {
        "forward original": lambda x, y: original_forward(x).numpy(),
        "forward lean": lambda x, y: lean_forward(x).numpy(),
        "step original": lambda x, y: live.train_on_batch(x, y),
        "step lean": lambda x, y: live_lean.train_on_batch(x, y),
    }, (original_forward, lean_forward)


def measure(variants, data, repetitions):
    for run in variants.values():  # trace
        run(*data[0])
    times = {name: [] for name in variants}
    for _ in range(repetitions):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            for x, y in data:
                variants[name](x, y)
            times[name].append((time.perf_counter() - start) / len(data))
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="resnet32x4,resnet8x4;resnet32,resnet8",
                        help="teacher,student pairs separated by ';'")
    parser.add_argument("--precision", default="auto", help="Keras policy, or auto (tfadakd.precision.default_policy)")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    policy = tfadakd.precision.resolve_policy(args.precision)
    keras.mixed_precision.set_global_policy(policy)
    flags = sorted(tfadakd.precision.cpu_flags() & {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f"})
    print(f"{policy}, batch 64, {args.repetitions} repetitions x {args.batches} batches, "
          f"CPU flags: {', '.join(flags) or 'none of amx/avx512'}, TF {tf.__version__}, Keras {keras.__version__}")
    data = real_batches(args.batches, default_data_dir())
    for pair in args.pairs.split(";"):
        teacher_name, student_name = pair.split(",")
        variants, (original_forward, lean_forward) = pair_variants(teacher_name, student_name)
        difference = float(np.max(np.abs(original_forward(data[0][0]).numpy() - lean_forward(data[0][0]).numpy())))
        t = measure(variants, data, args.repetitions)
        print(f"{teacher_name} -> {student_name}: teacher forward original {1000 * t['forward original']:.1f} ms, "
              f"lean {1000 * t['forward lean']:.1f} ms; distillation step original {1000 * t['step original']:.1f} ms, "
              f"lean {1000 * t['step lean']:.1f} ms; max |logit difference| {difference:.3g}")
        print(f"  1. teacher forward lean / original:     {t['forward lean'] / t['forward original']:.3f}")
        print(f"  2. distillation step lean / original:   {t['step lean'] / t['step original']:.3f}  (kept if <= 0.98)")


if __name__ == "__main__":
    main()
