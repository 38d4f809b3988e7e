"""Input pipelines: CIFAR-10 / CIFAR-100 via tensorflow-datasets, with the standard KD augmentation.

Example:

```python
from tfadakd import data

train = data.load_cifar("cifar100", "train", batch_size=64, seed=0)
test = data.load_cifar("cifar100", "test", batch_size=256)
```
"""

from tfadakd.data.cifar import (
    DATASETS,
    IMAGE_SHAPE,
    NORMALIZATION,
    DataNotFoundError,
    augment,
    calibration_images,
    cifar_epochs,
    denormalize,
    load_cifar,
    normalize,
    num_classes,
    num_examples,
)
from tfadakd.data.epochs import AUGMENTATION_VERSION, EpochPipeline

__all__ = [
    "AUGMENTATION_VERSION",
    "DATASETS",
    "EpochPipeline",
    "IMAGE_SHAPE",
    "NORMALIZATION",
    "DataNotFoundError",
    "augment",
    "calibration_images",
    "cifar_epochs",
    "denormalize",
    "load_cifar",
    "normalize",
    "num_classes",
    "num_examples",
]
