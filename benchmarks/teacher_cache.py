"""What the teacher-logit cache saves, measured in one run (interleaved repetitions, medians).

    python benchmarks/teacher_cache.py --pair=resnet32x4,resnet8x4 --repetitions=8
    python benchmarks/teacher_cache.py --pair=resnet32,resnet8 --sweep_runs=6 --sweep_examples=2560

Prints:

1. cached-teacher distillation step / student training step (cross-entropy alone)   target <= 1.05
2. live-teacher distillation step / student training step (what the cache removes)
3. a sweep of --sweep_runs runs from one teacher, --sweep_epochs epochs each on a --sweep_examples slice
   of real CIFAR-100 through `tfadakd.runs.fit_run`: wall time with one shared cache (its build
   included) / without                                                             target <= 0.6

Steps 1-2 use real CIFAR-100 batches of 64 held in memory and Keras' `train_on_batch`; the variants
cycle in a new random order each repetition. The sweep runs alternate cached / live per run.
"""

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import tfadakd
from tfadakd.teacher_cache import TeacherCache
from _common import default_data_dir


def sgd():
    return tfadakd.optimizers.SGD(0.01, momentum=0.9)


def step_ratios(teacher_name, student_name, repetitions, batches, data_dir):
    keras.utils.set_random_seed(0)
    teacher = tfadakd.models.build(teacher_name)
    ds = tfadakd.data.load_cifar("cifar100", "train", batch_size=64, num_examples=batches * 64, seed=0,
                                 data_dir=data_dir)
    data = [(tf.constant(x), tf.constant(y)) for x, y in ds]
    forward = tf.function(lambda x: tf.cast(teacher(x, training=False), tf.float32))
    cached = [({"images": x, "teacher_logits": forward(x)}, y) for x, y in data]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    student = tfadakd.models.build(student_name)
    student.compile(optimizer=sgd(), loss=ce)
    live, cache = (tfadakd.Distiller(tfadakd.models.build(student_name), teacher) for _ in range(2))
    for model in (live, cache):
        model.compile(optimizer=sgd(), loss=ce)
    variants = {"student": (student, data), "live": (live, data), "cached": (cache, cached)}
    for model, batches_ in variants.values():  # trace
        model.train_on_batch(*batches_[0])
    times = {name: [] for name in variants}
    for _ in range(repetitions):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            model, batches_ = variants[name]
            start = time.perf_counter()
            for x, y in batches_:
                model.train_on_batch(x, y)
            times[name].append((time.perf_counter() - start) / len(batches_))
    return {name: statistics.median(t) for name, t in times.items()}


def sweep_ratio(teacher_name, student_name, runs, epochs, examples, data_dir):
    keras.utils.set_random_seed(0)
    teacher = tfadakd.models.build(teacher_name)
    validation = tfadakd.data.load_cifar("cifar100", "train[-640:]", batch_size=64, data_dir=data_dir,
                                         augment=False, shuffle=False)
    root = tempfile.mkdtemp(prefix="tfadakd-cache-bench-")
    pipeline = tfadakd.data.cifar_epochs("cifar100", "train[:-640]", batch_size=64, seed=0, data_seed=0,
                                         num_examples=examples, data_dir=data_dir)
    walls = {"live": 0.0, "cached": 0.0}
    try:
        start = time.perf_counter()
        cache = TeacherCache(os.path.join(root, "cache")).build(teacher, pipeline, epochs, verbose=0)
        walls["cached"] += time.perf_counter() - start
        build_seconds = walls["cached"]
        for run in range(runs):
            for mode in ("live", "cached") if run % 2 == 0 else ("cached", "live"):
                keras.utils.set_random_seed(run)
                model = tfadakd.Distiller(tfadakd.models.build(student_name), teacher)
                model.compile(optimizer=sgd(), metrics=["accuracy"])
                train = tfadakd.data.cifar_epochs("cifar100", "train[:-640]", batch_size=64, seed=run, data_seed=0,
                                                  num_examples=examples, data_dir=data_dir)
                train = cache.attach(train) if mode == "cached" else train
                start = time.perf_counter()
                tfadakd.runs.fit_run(model, train, validation, os.path.join(root, f"{mode}{run}"), epochs,
                                     verbose=0, temperature_batches=0)
                walls[mode] += time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return walls, build_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet32x4,resnet8x4")
    parser.add_argument("--precision", default="auto", help="Keras policy, or auto (tfadakd.precision.default_policy)")
    parser.add_argument("--repetitions", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--sweep_runs", type=int, default=6)
    parser.add_argument("--sweep_epochs", type=int, default=2)
    parser.add_argument("--sweep_examples", type=int, default=2560)
    args = parser.parse_args()
    teacher, student = args.pair.split(",")
    policy = tfadakd.precision.resolve_policy(args.precision)
    keras.mixed_precision.set_global_policy(policy)
    data_dir = default_data_dir()
    print(f"{teacher} -> {student}, {policy}, CPU flags: {', '.join(sorted(tfadakd.precision.cpu_flags() & {'amx_bf16', 'avx512_bf16'})) or 'no bf16'}")
    steps = step_ratios(teacher, student, args.repetitions, args.batches, data_dir)
    print(f"median step: student alone {1000 * steps['student']:.0f} ms, distillation with the live teacher "
          f"{1000 * steps['live']:.0f} ms, with cached logits {1000 * steps['cached']:.0f} ms")
    print(f"1. cached-teacher step / student step: {steps['cached'] / steps['student']:.3f}  (target <= 1.05)")
    print(f"2. live-teacher step / student step:   {steps['live'] / steps['student']:.3f}")
    if args.sweep_runs:
        walls, build = sweep_ratio(teacher, student, args.sweep_runs, args.sweep_epochs, args.sweep_examples, data_dir)
        print(f"sweep of {args.sweep_runs} runs x {args.sweep_epochs} epochs x {args.sweep_examples} images: "
              f"live {walls['live']:.0f} s, cached {walls['cached']:.0f} s (cache build {build:.0f} s included)")
        print(f"3. sweep wall time with the cache / without: {walls['cached'] / walls['live']:.3f}  (target <= 0.6)")


if __name__ == "__main__":
    main()
