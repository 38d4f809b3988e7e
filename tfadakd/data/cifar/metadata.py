"""What CIFAR-10 / CIFAR-100 are, without reading any data: names, classes, split sizes, image shape and
the channel statistics the pipelines normalize with.

Example:

```python
from tfadakd.data import cifar

cifar.num_classes("cifar100"), cifar.num_examples("cifar10", "train[:10%]")   # (100, 5000)
mean, std = cifar.NORMALIZATION["cifar100"]
```
"""

from __future__ import annotations

from typing import Dict, Tuple

from tfadakd.data import splits

IMAGE_SHAPE = (32, 32, 3)

#: Per-dataset channel mean and std of the training images in [0, 1] (`docs/method.md` section 5).
NORMALIZATION: Dict[str, Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}

_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
_SPLIT_SIZES = {"train": 50000, "test": 10000}
#: The dataset names accepted everywhere in `tfadakd.data.cifar`.
DATASETS = tuple(sorted(_NUM_CLASSES))


def check_name(name) -> str:
    """`name` itself if it is one of `DATASETS`, else a ValueError naming the accepted ones."""
    if name not in _NUM_CLASSES:
        raise ValueError(f"Unknown dataset name {name!r}: expected one of {list(DATASETS)}.")
    return name


def split_info(split) -> Tuple[str, int, int]:
    """Parses a tfds split string limited to one of train/test: returns (base split, start, stop)."""
    return splits.resolve(split, _SPLIT_SIZES)


def num_classes(name: str = "cifar100") -> int:
    """Returns the number of classes of a CIFAR dataset (fine labels for CIFAR-100).

    Arguments:
        name: `"cifar10"` or `"cifar100"`.

    Returns:
        10 or 100.

    Raises:
        ValueError: for any other name.

    Example:

    >>> num_classes("cifar100")
    100
    """
    return _NUM_CLASSES[check_name(name)]


def num_examples(name: str = "cifar100", split: str = "train") -> int:
    """Returns the number of examples of a split; needs no data on disk.

    Arguments:
        name: `"cifar10"` or `"cifar100"`.
        split: `"train"` (50,000), `"test"` (10,000), or a tfds slice of one of them (`"train[:1000]"`,
            `"test[-10%:]"`).

    Returns:
        The example count, as an int.

    Raises:
        ValueError: for an unknown name or an invalid split.

    Example:

    >>> num_examples("cifar10", "train[:10%]")
    5000
    """
    check_name(name)
    _, start, stop = split_info(split)
    return stop - start
