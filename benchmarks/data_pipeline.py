"""Throughput of the tfadakd training pipelines, in images per second: CIFAR (default) and ImageNet-style JPEGs.

CIFAR: runs one warm-up epoch (which decodes the split once and fills the in-memory cache), then times a few
full epochs of the augmented, shuffled, batched training pipeline and prints the median. With
`--with_step`, also times our distillation step (`--pair`, `--precision`; by default the fastest
setting measured here, so the hardest case for the pipeline) on one batch and prints the ratio
pipeline throughput / distillation-step throughput (well above 1: the input pipeline is not the
bottleneck).

ImageNet (`--imagenet`): writes `--files` JPEGs of `--jpeg_size` (default 500x375, ImageNet's typical size)
into class folders of a temporary directory and reads them through the library's own streaming pipeline
(`tfadakd.data.open_dataset("folder:...")`: read, JPEG decode, random resized crop to `--image_size`, flip,
normalize, batch), once limited to one thread (`tf.data.Options`: a private thread pool of 1, no intra-op
parallelism: images/s per CPU core) and once as the apps run it (AUTOTUNE on every core); interleaved
with ResNet-18's training step (`imagenet_resnet18`, 1,000 classes, `--image_size`, the apps' precision
policy, `benchmarks/imagenet_step.py`) on one batch in memory. Each round runs the three in a new random
order; medians over `--repetitions` rounds. Prints the ratio pipeline images/s / training-step images/s
(target >= 1.5). The two are measured apart: in training they share the cores (on a CPU-only machine),
so the ratio is an upper bound there. The files are read from the page cache after the warm-up. A pipeline
round reads one epoch, its start included: more `--files` make that start matter less.

Usage:
  python benchmarks/data_pipeline.py                      # cifar100 train, batch 64, augmentation on
  python benchmarks/data_pipeline.py --with_step
  python benchmarks/data_pipeline.py --num_examples 10000 --repeats 5
  python benchmarks/data_pipeline.py --imagenet           # 512 JPEGs, batch 32, 224 px, 3 rounds
  python benchmarks/data_pipeline.py --imagenet --repetitions=1 --batch_size=4 --files=16 --steps=2   # smoke run

Data (CIFAR): `--data_dir`, else $TFDS_DATA_DIR, else ~/.cache/tfadakd/tfds when it exists, else tfds' default.
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import default_data_dir, interleaved_medians  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)
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
    p.add_argument("--batch_size", type=int, default=None, help="default 64 (CIFAR), 32 (--imagenet)")
    p.add_argument("--num_examples", type=int, default=None, help="first N examples only (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs after the warm-up epoch")
    p.add_argument("--no_augment", action="store_true", help="turn augmentation off")
    p.add_argument("--data_dir", default=default_data_dir())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with_step", action="store_true", help="also time a distillation step (ratio 4)")
    p.add_argument("--pair", default="resnet20,resnet8", help="teacher,student for --with_step")
    p.add_argument("--precision", default=None, help="Keras policy of the step (default: mixed_bfloat16 for "
                   "--with_step, auto for --imagenet: what the apps pick here)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 20 for --with_step, "
                   "5 per round for --imagenet)")
    p.add_argument("--imagenet", action="store_true", help="ImageNet-style JPEGs instead of CIFAR (see above)")
    p.add_argument("--files", type=int, default=512, help="--imagenet: JPEG files to generate")
    p.add_argument("--classes", type=int, default=4, help="--imagenet: class folders they are spread over")
    p.add_argument("--jpeg_size", default="500x375", help="--imagenet: width x height of the generated JPEGs")
    p.add_argument("--image_size", type=int, default=224, help="--imagenet: crop size (the models' input)")
    p.add_argument("--repetitions", type=int, default=3, help="--imagenet: interleaved rounds (medians)")
    args = p.parse_args(argv)
    if args.imagenet:
        return imagenet_main(args)
    args.batch_size = args.batch_size or 64
    args.precision = args.precision or "mixed_bfloat16"
    args.steps = args.steps or 20

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


# ------------------------------------------------------------------------------------------ --imagenet
def write_jpegs(root, files, classes, width=500, height=375, seed=0):
    """`files` JPEGs (quality 90) of `width` x `height`, spread over `classes` class folders under `root`;
    returns `root`. Smooth random content with grain, so that files and decoding cost are photo-like
    (about 30-60 KB each at 500x375), not those of pure noise.

    Example:

    >>> write_jpegs("/tmp/jpegs", files=8, classes=2)   # /tmp/jpegs/class0/0.jpg, ..., /tmp/jpegs/class1/7.jpg
    """
    rng = np.random.default_rng(seed)
    for i in range(files):
        folder = os.path.join(root, f"class{i % classes}")
        os.makedirs(folder, exist_ok=True)
        coarse = rng.uniform(0, 255, (height // 24 + 2, width // 24 + 2, 3)).astype("float32")
        image = tf.image.resize(coarse, [height, width], method="bicubic") + rng.normal(0, 6, (height, width, 3))
        encoded = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality=90)
        tf.io.write_file(os.path.join(folder, f"{i}.jpg"), encoded)
    return root


def one_thread(ds):
    """`ds` computed by one thread: a private thread pool of 1 and no intra-op parallelism."""
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def pipeline_epoch(pipeline, threads_limited):
    """A function that reads the next epoch of `pipeline` (optionally on one thread) and returns its image count."""
    epochs = iter(range(1, 1_000_000))

    def run():
        epoch = next(epochs)  # a fresh epoch every time: new crops, as in training
        ds = pipeline.dataset(epoch, epoch + 1)
        ds = one_thread(ds) if threads_limited else ds
        return sum(int(images.shape[0]) for images, _ in ds)

    return run


def interleaved_rates(variants, repetitions, seed=0):
    """`{name: median images/s}` over `repetitions` rounds; `variants` maps a name to a function that does
    some work and returns how many images it processed; each round runs them in a new random order."""
    def rate(fn):
        start = time.perf_counter()
        images = fn()
        return images / (time.perf_counter() - start)

    return interleaved_medians(variants, repetitions, rate, seed)


def imagenet_main(args):
    import imagenet_step

    batch_size, steps = args.batch_size or 32, args.steps or 5
    width, height = (int(v) for v in args.jpeg_size.lower().split("x"))
    policy = imagenet_step.policy_of(args.precision or "auto")
    print(imagenet_step.machine_line(policy))
    with tempfile.TemporaryDirectory(prefix="tfadakd_jpegs_") as root:
        write_jpegs(root, args.files, args.classes, width, height, args.seed)
        size_kb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs) / args.files / 1024
        source = data.open_dataset(f"folder:{root}", image_size=args.image_size, verify_images=False)
        pipeline = source.epochs("train", batch_size=batch_size, seed=args.seed, drop_remainder=True)
        train = imagenet_step.step_functions("imagenet_resnet18", batch_size, args.image_size, policy)["train"]

        def train_steps():
            for _ in range(steps):
                train()
            return steps * batch_size

        variants = {"pipeline, 1 thread": pipeline_epoch(pipeline, True),
                    "pipeline, all threads (AUTOTUNE)": pipeline_epoch(pipeline, False),
                    "ResNet-18 training step": train_steps}
        for run in variants.values():  # warm-up: traces, page cache
            run()
        rates = interleaved_rates(variants, args.repetitions, args.seed)
    print(f"\n{args.files} JPEGs of {width}x{height} ({size_kb:.0f} KB on average), {pipeline.num_examples} in the "
          f"training split; random resized crop + flip to {args.image_size} px, batch {batch_size}; medians of "
          f"{args.repetitions} interleaved rounds (a pipeline round: one epoch; a step round: {steps} steps)")
    for name, rate in rates.items():
        print(f"{name:34s} {rate:10.1f} images/s   {imagenet_step.hours_per_epoch(rate):8.2f} h per ImageNet epoch")
    cores = os.cpu_count()
    step = rates["ResNet-18 training step"]
    print(f"pipeline per CPU core: {rates['pipeline, 1 thread']:.1f} images/s (1 thread); all threads / cores: "
          f"{rates['pipeline, all threads (AUTOTUNE)'] / cores:.1f} images/s per core on {cores}")
    print(f"pipeline (all threads) / ResNet-18 training step: {rates['pipeline, all threads (AUTOTUNE)'] / step:.2f}x"
          "   (target >= 1.5; measured apart, in training on a CPU they share the cores)")
    print(f"pipeline cores (at the 1-thread rate) that feed one training step's rate: {step / rates['pipeline, 1 thread']:.2f}")
    print(f"command: {' '.join(shlex.quote(a) for a in [os.path.relpath(sys.executable)] + sys.argv)}")
    return rates


if __name__ == "__main__":
    main()
