"""Shared by the benchmark scripts."""

import os


def default_data_dir():
    """`$TFDS_DATA_DIR`, else `~/.cache/tfadakd/tfds` when it exists (where `make data` prepares CIFAR),
    else None (tfds' default)."""
    if os.environ.get("TFDS_DATA_DIR"):
        return os.environ["TFDS_DATA_DIR"]
    cache = os.path.expanduser("~/.cache/tfadakd/tfds")
    return cache if os.path.isdir(cache) else None
