"""Input pipelines: CIFAR-10 / CIFAR-100 with the standard KD augmentation, any tfds image-classification
data set, and folders of class sub-folders (`open_dataset`), with CIFAR- or ImageNet-style preprocessing.

Example:

```python
from tfadakd import data

train = data.load_cifar("cifar100", "train", batch_size=64, seed=0)
test = data.load_cifar("cifar100", "test", batch_size=256)
flowers = data.open_dataset("folder:~/data/flowers", image_size=128)    # or "imagenet2012", ...
pipeline = flowers.epochs("train", batch_size=64, seed=0)
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
from tfadakd.data.folder import ImageFolderError
from tfadakd.data.sources import ImageDataset, directory_name, kind_of, open_dataset
from tfadakd.data.streaming import StreamingEpochPipeline
from tfadakd.data.tfds_images import NotImageClassificationError

__all__ = [
    "AUGMENTATION_VERSION",
    "DATASETS",
    "EpochPipeline",
    "IMAGE_SHAPE",
    "ImageDataset",
    "ImageFolderError",
    "NORMALIZATION",
    "DataNotFoundError",
    "augment",
    "calibration_images",
    "cifar_epochs",
    "denormalize",
    "directory_name",
    "kind_of",
    "load_cifar",
    "normalize",
    "NotImageClassificationError",
    "num_classes",
    "num_examples",
    "open_dataset",
    "StreamingEpochPipeline",
]
