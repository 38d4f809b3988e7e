"""Throughput of the tfadakd CIFAR training pipeline, in images per second.

Runs one warm-up epoch (which decodes the split once and fills the in-memory cache), then times a few
full epochs of the augmented, shuffled, batched training pipeline and prints the median. With
`--with_step`, also times our distillation step (`--pair`, `--precision`; by default the fastest
setting measured here, so the hardest case for the pipeline) on one batch and prints the ratio
pipeline throughput / distillation-step throughput (well above 1: the input pipeline is not the
bottleneck).

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


def step_throughput(pair, precision, images, labels, steps):
    """Images/s of our adaptive distillation step (benchmarks/distill_step.py) on one batch."""
    from distill_step import build_variants

    teacher, student = pair.split(",")
    step_fn = build_variants(teacher, student, precision, jit=False)["distill adaptive"]
    for _ in range(3):  # trace + warm up
        step_fn(images, labels)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step_fn(images, labels)
        times.append(time.perf_counter() - start)
    step = statistics.median(times)
    return images.shape[0] / step, step


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
    p.add_argument("--with_step", action="store_true", help="also time a distillation step (ratio 4)")
    p.add_argument("--pair", default="resnet20,resnet8", help="teacher,student for --with_step")
    p.add_argument("--precision", default="mixed_bfloat16", help="Keras policy for --with_step")
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
        rate, step = step_throughput(args.pair, args.precision, images, labels, args.steps)
        print(f"distillation step ({args.pair}, adaptive, {args.precision}, batch {args.batch_size}): "
              f"{step * 1000:.1f} ms median of {args.steps} = {rate:,.0f} images/s")
        print(f"pipeline / distillation-step throughput: {pipeline / rate:.1f}x   (target >= 3)")
    print(f"command: {command}")
    return pipeline


if __name__ == "__main__":
    main()
