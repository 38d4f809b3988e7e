"""Throughput of the tfadakd CIFAR training pipeline, in images per second.

Runs one warm-up epoch (which decodes the split once and fills the in-memory cache), then times a few
full epochs of the augmented, shuffled, batched training pipeline and prints the median. With
`--with_step`, also times a training step of a small Keras CNN on one batch and prints the ratio
pipeline throughput / step throughput (well above 1 means the input pipeline is not the bottleneck).

Usage:
  python benchmarks/data_pipeline.py                      # cifar100 train, batch 64, augmentation on
  python benchmarks/data_pipeline.py --with_step
  python benchmarks/data_pipeline.py --num_examples 10000 --repeats 5

Data: `--data_dir`, else $TFDS_DATA_DIR, else ~/.cache/tfadakd/tfds when it exists, else tfds' default.
"""

import argparse
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import default_data_dir  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)
from tfadakd import data  # noqa: E402


def time_epoch(ds):
    start = time.perf_counter()
    count = 0
    for images, _ in ds:
        count += int(images.shape[0])
    return count, time.perf_counter() - start


def small_cnn(num_classes):
    import keras

    inputs = keras.Input(data.IMAGE_SHAPE)
    x = inputs
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(num_classes)(x))
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def step_throughput(name, images, labels, steps):
    model = small_cnn(data.num_classes(name))
    for _ in range(3):  # trace + warm up
        model.train_on_batch(images, labels)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - start)
    step = statistics.median(times)
    return images.shape[0] / step, step, model.count_params()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="cifar100", choices=list(data.DATASETS))
    p.add_argument("--split", default="train")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--num_examples", type=int, default=None, help="first N examples only (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs after the warm-up epoch")
    p.add_argument("--no_augment", action="store_true", help="turn augmentation off")
    p.add_argument("--data_dir", default=default_data_dir())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with_step", action="store_true", help="also time a small Keras CNN's training step")
    p.add_argument("--steps", type=int, default=20, help="timed training steps for --with_step")
    args = p.parse_args(argv)

    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable)] + sys.argv)
    ds = data.load_cifar(args.name, args.split, batch_size=args.batch_size, data_dir=args.data_dir,
                         augment=not args.no_augment, seed=args.seed, num_examples=args.num_examples)
    count, warm = time_epoch(ds)
    print(f"warm-up epoch (decode + fill cache): {count} images in {warm:.1f} s ({count / warm:,.0f} images/s)")
    rates = []
    for i in range(args.repeats):
        count, seconds = time_epoch(ds)
        rates.append(count / seconds)
        print(f"epoch {i + 1}: {count} images in {seconds:.2f} s ({rates[-1]:,.0f} images/s)")
    pipeline = statistics.median(rates)
    print(f"pipeline throughput: {pipeline:,.0f} images/s (median of {args.repeats} epochs; {args.name} "
          f"{args.split}, batch {args.batch_size}, augment={not args.no_augment}, "
          f"{os.cpu_count()} CPUs, tf {tf.__version__})")

    if args.with_step:
        images, labels = next(iter(ds))
        rate, step, params = step_throughput(args.name, images, labels, args.steps)
        print(f"student step (small CNN, {params:,} params, batch {args.batch_size}): {step * 1000:.1f} ms "
              f"median of {args.steps} = {rate:,.0f} images/s")
        print(f"pipeline / step throughput: {pipeline / rate:.1f}x")
    print(f"command: {command}")
    return pipeline


if __name__ == "__main__":
    main()
