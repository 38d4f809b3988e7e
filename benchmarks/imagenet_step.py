"""ImageNet ResNet-18 / -34 step times on this machine, and the hours one ImageNet epoch would take.

    python benchmarks/imagenet_step.py                                   # batch 32, 224 px, 5 repetitions
    python benchmarks/imagenet_step.py --batch_size=64 --repetitions=9
    python benchmarks/imagenet_step.py --quick                           # a smoke run: batch 2, 1 repetition

For each model (`tfadakd.models` `imagenet_resnet18`, `imagenet_resnet34`, 1,000 classes) it times an
inference forward pass and a training step (`train_on_batch`: cross-entropy, the recipe's SGD with momentum
0.9 and weight decay 1e-4) on one batch of random images held in memory, under the precision policy the apps
pick (`tfadakd.precision.default_policy()`, or `--precision`). The variants run in a new random order in
every repetition (interleaved, so a slower moment of the machine hits all of them); medians are printed
with images/s and the hours per ImageNet epoch (1,281,167 training images) for:

- each model's training step and forward pass;
- a distillation epoch of the recipe (ResNet-34 teacher forward + ResNet-18 student training step), an
  estimate from the two (the Distiller's own step adds its loss, measured on CIFAR in docs/performance.md).

The input pipeline is not part of these times (benchmarks/data_pipeline.py --imagenet measures it).
"""

import argparse
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tfadakd  # noqa: E402
from _common import interleaved_medians  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)

IMAGENET_TRAIN_IMAGES = 1_281_167


def policy_of(name):
    """The Keras policy for `--precision` (`auto`: what the apps pick on this machine)."""
    return tfadakd.precision.resolve_policy(name)


def random_batch(batch_size, image_size, num_classes=1000, seed=0):
    """One batch of normalized-looking random images and labels, as tensors.

    >>> x, y = random_batch(2, 64); x.shape, y.shape
    (TensorShape([2, 64, 64, 3]), TensorShape([2]))
    """
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch_size, image_size, image_size, 3)).astype("float32")
    return tf.constant(images), tf.constant(rng.integers(0, num_classes, batch_size), tf.int32)


def step_functions(name, batch_size, image_size, policy):
    """`{"train": f, "forward": f}` for zoo model `name`: each call runs one step on one fixed batch.

    The policy is set globally before the model is built (as the apps do); each function is traced
    (called once) before it is returned.

    Example:

    >>> steps = step_functions("imagenet_resnet18", 8, 224, "float32")
    >>> steps["train"]()                    # one training step on the batch
    """
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = tfadakd.models.build(name, num_classes=1000, input_shape=(image_size, image_size, 3))
    model.compile(optimizer=tfadakd.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = random_batch(batch_size, image_size)
    forward = tf.function(lambda x: model(x, training=False))
    steps = {"train": lambda: model.train_on_batch(images, labels),
             "forward": lambda: forward(images).numpy()}  # .numpy(): wait for the result
    for step in steps.values():
        step()
    return steps


def time_call(fn, calls):
    """Median seconds of `calls` calls of `fn`."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(variants, repetitions, calls, seed=0):
    """`{name: median seconds}` over `repetitions` rounds; each round runs every variant `calls` times, in a
    new random order."""
    return interleaved_medians(variants, repetitions, lambda fn: time_call(fn, calls), seed)


def hours_per_epoch(images_per_second, images=IMAGENET_TRAIN_IMAGES):
    """Hours to process `images` at `images_per_second`.

    >>> round(hours_per_epoch(1281.167), 3)
    0.278
    """
    return images / images_per_second / 3600


def machine_line(policy):
    """Cores, bf16 CPU flags, accelerators and versions, for the printed header."""
    bf16 = sorted(tfadakd.precision.cpu_flags() & set(tfadakd.precision.BFLOAT16_CPU_FLAGS)) or ["no bf16"]
    gpus = len(tf.config.list_physical_devices("GPU"))
    return (f"{os.cpu_count()} CPUs (CPU flags: {', '.join(bf16)}), {gpus} GPU(s), policy {policy}, "
            f"tf {tf.__version__}, keras {keras.__version__}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="imagenet_resnet18,imagenet_resnet34")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--repetitions", type=int, default=5, help="interleaved rounds (medians over them)")
    p.add_argument("--calls", type=int, default=3, help="timed calls of each variant per round")
    p.add_argument("--precision", default="auto", help="auto (the apps' choice), float32, mixed_bfloat16, ...")
    p.add_argument("--quick", action="store_true", help="smoke run (batch 2, 1 repetition, 1 call): checks the script, its numbers mean nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.repetitions, args.calls = 2, 1, 1
    policy = policy_of(args.precision)
    print(machine_line(policy))
    variants = {}
    for name in args.models.split(","):
        for kind, fn in step_functions(name, args.batch_size, args.image_size, policy).items():
            variants[f"{name} {kind}"] = fn
    medians = interleaved(variants, args.repetitions, args.calls)
    print(f"\nbatch {args.batch_size}, {args.image_size} px, medians of {args.repetitions} rounds x {args.calls} calls")
    print(f"{'variant':34s} {'ms/step':>10s} {'images/s':>10s} {'h/ImageNet epoch':>17s}")
    for name, seconds in medians.items():
        rate = args.batch_size / seconds
        print(f"{name:34s} {seconds * 1000:10.1f} {rate:10.1f} {hours_per_epoch(rate):17.1f}")
    teacher, student = "imagenet_resnet34 forward", "imagenet_resnet18 train"
    if teacher in medians and student in medians:
        seconds = medians[teacher] + medians[student]
        print(f"{'KD estimate (34 forward + 18 train)':34s} {seconds * 1000:10.1f} {args.batch_size / seconds:10.1f} "
              f"{hours_per_epoch(args.batch_size / seconds):17.1f}")
    print(f"command: {' '.join(shlex.quote(a) for a in [os.path.relpath(sys.executable)] + sys.argv)}")
    return medians


if __name__ == "__main__":
    main()
