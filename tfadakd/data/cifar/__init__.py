"""CIFAR-10 / CIFAR-100 input pipelines on tensorflow-datasets.

The pipeline follows the standard CIFAR knowledge-distillation recipe (`docs/method.md` section 5), i.e. what
`torchvision`'s `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(mean, std)`
does: the 4-pixel padding is zeros in pixel space, applied before normalization.

One module per concept, every public name also here as `tfadakd.data.cifar.<name>` (and the ones in
`__all__` as `tfadakd.data.<name>`):

- `tfadakd.data.cifar.metadata`: `DATASETS`, `NORMALIZATION`, `IMAGE_SHAPE`, `num_classes`, `num_examples`.
- `tfadakd.data.cifar.prepare`: `prepared_builder` (tfds data found, prepared from the official archive or
  downloaded, after a bounded connectivity probe) and `DataNotFoundError`.
- `tfadakd.data.cifar.preprocessing`: `normalize`, `denormalize`, `augment`, `index_augmentation`.
- `tfadakd.data.cifar.pipelines`: `load_cifar`, `cifar_epochs`.
- `tfadakd.data.cifar.calibration`: `calibration_images` for int8 quantization.

This package never reads command-line flags: apps pass `data_dir` / `manual_dir` / `download` explicitly.

Example:

```python
from tfadakd.data import cifar

train = cifar.load_cifar("cifar100", "train", batch_size=64, seed=0)
test = cifar.load_cifar("cifar100", "test", batch_size=256)
images = cifar.calibration_images("cifar100", n=300)
```
"""

from tfadakd.data.cifar.calibration import calibration_images
from tfadakd.data.cifar.metadata import DATASETS, IMAGE_SHAPE, NORMALIZATION, num_classes, num_examples
from tfadakd.data.cifar.pipelines import cifar_epochs, load_cifar
from tfadakd.data.cifar.prepare import DataNotFoundError, prepared_builder
from tfadakd.data.cifar.preprocessing import augment, denormalize, index_augmentation, normalize

__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "DataNotFoundError",
    "IMAGE_SHAPE",
    "augment",
    "calibration_images",
    "cifar_epochs",
    "denormalize",
    "load_cifar",
    "normalize",
    "num_classes",
    "num_examples",
    "prepared_builder",
]
