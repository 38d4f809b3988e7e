"""Shared by the benchmark scripts."""

import os
import random
import statistics


def default_data_dir():
    """`$TFDS_DATA_DIR`, else `~/.cache/tfadakd/tfds` when it exists (where `make data` prepares CIFAR),
    else None (tfds' default)."""
    if os.environ.get("TFDS_DATA_DIR"):
        return os.environ["TFDS_DATA_DIR"]
    cache = os.path.expanduser("~/.cache/tfadakd/tfds")
    return cache if os.path.isdir(cache) else None


def interleaved_medians(variants, repetitions, measure, seed=0):
    """`{name: median of measure(fn)}` over `repetitions` rounds; `variants` maps a name to a function,
    and each round measures every one of them once, in a new random order (a slower moment of the machine
    then hits all of them)."""
    shuffle = random.Random(seed).shuffle
    values = {name: [] for name in variants}
    for _ in range(repetitions):
        order = list(variants)
        shuffle(order)
        for name in order:
            values[name].append(measure(variants[name]))
    return {name: statistics.median(v) for name, v in values.items()}
