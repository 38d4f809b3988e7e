"""One entry point for every image-classification data set the apps accept, by name.

| name | what | preprocessing (default) |
| --- | --- | --- |
| `cifar10`, `cifar100` | tfds CIFAR (`tfadakd.data.cifar`) | `cifar`: pad 4 + random crop + flip at 32 px |
| `folder:PATH` | a folder of class sub-folders (`tfadakd.data.folder`) | `imagenet` |
| any other tfds name | `imagenet2012`, `oxford_flowers102`, ... (`tfadakd.data.tfds_images`) | `imagenet` |

Preprocessing families: `cifar` (the CIFAR recipe; on other data, images are first resized to
`image_size` x `image_size`) and `imagenet` (`tfadakd.data.imagenet_preprocessing`: random resized crop +
flip for training, resize + center crop for evaluation, `image_size` default 224). Normalization: the CIFAR
statistics for CIFAR in the `cifar` family, the ImageNet statistics otherwise. `describe()` gives all of it
for a run's config.json.

Example:

```python
data = tfadakd.data.open_dataset("folder:~/data/flowers", image_size=128)
train = data.epochs("train", batch_size=64, seed=0)             # an EpochPipeline (streaming)
validation = data.evaluation("validation", batch_size=100)
model = tfadakd.models.build("imagenet_resnet18", data.num_classes, data.image_shape)
```
"""

import hashlib
import os
import re
from typing import Optional

import numpy as np
import tensorflow as tf

from tfadakd.data import cifar, folder, identity, imagenet_preprocessing, splits, tfds_images
from tfadakd.data.streaming import ExampleList, StreamingEpochPipeline

FAMILIES = ("cifar", "imagenet")
FOLDER_PREFIX = "folder:"


def kind_of(name) -> str:
    """`"cifar"`, `"folder"` or `"tfds"` for a data set name (no data is read).

    Example:

    >>> kind_of("cifar100"), kind_of("folder:/data/pets"), kind_of("imagenet2012")
    ('cifar', 'folder', 'tfds')
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Invalid dataset {name!r}: pass cifar10, cifar100, a tfds image-classification name "
                         "(imagenet2012, oxford_flowers102, ...) or folder:<path>.")
    if name.startswith(FOLDER_PREFIX):
        if not name[len(FOLDER_PREFIX):].strip():
            raise ValueError(f"Invalid dataset {name!r}: folder: needs a path, e.g. folder:/data/flowers.")
        return "folder"
    return "cifar" if name in cifar.DATASETS else "tfds"


def directory_name(name) -> str:
    """A file-system-safe name for `name` (run directories `<output_dir>/<this>/<run>`): the data set's
    name, or `folder_<basename>_<8 hex digits>` for `folder:PATH`, the digits from the folder's absolute
    path, so that two folders of the same name (and their teachers) never share a directory.

    Example:

    >>> directory_name("folder:/data/my flowers/"), directory_name("imagenet_resized/32x32")
    ('folder_my_flowers_a690882c', 'imagenet_resized_32x32')
    """
    if kind_of(name) == "folder":
        path = os.path.normpath(os.path.abspath(os.path.expanduser(name[len(FOLDER_PREFIX):])))
        base = os.path.basename(path) or "root"
        name = f"folder_{base}_{hashlib.sha256(path.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "data"


def default_family(name) -> str:
    """The preprocessing family the data calls for: `cifar` for CIFAR, `imagenet` for everything else."""
    return "cifar" if kind_of(name) == "cifar" else "imagenet"


class ImageDataset:
    """An image-classification data set with its preprocessing (module docstring); see `open_dataset`."""

    def __init__(self, name, *, data_dir=None, manual_dir=None, download=True, preprocessing=None,
                 image_size=None, validation_fraction=0.1, verify_images=None):
        self.name = name
        self.kind = kind_of(name)
        self.family = preprocessing or default_family(name)
        if self.family not in FAMILIES:
            raise ValueError(f"Unknown preprocessing {self.family!r} for --dataset={name}: expected one of "
                             f"{', '.join(FAMILIES)}.")
        self._cifar_native = self.kind == "cifar" and self.family == "cifar"
        if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 8):
            raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}.")
        if self._cifar_native and image_size not in (None, 32):
            raise ValueError(f"--image_size={image_size} with CIFAR-style preprocessing of {name}: CIFAR is 32 px. "
                             "Leave --image_size out, or pass --preprocessing=imagenet to resize.")
        self.image_size = int(image_size or (32 if self.family == "cifar" else 224))
        self.data_dir, self.manual_dir, self.download = data_dir, manual_dir, download
        self.mean, self.std = (cifar.NORMALIZATION[name] if self.family == "cifar" and self.kind == "cifar"
                               else (imagenet_preprocessing.MEAN, imagenet_preprocessing.STD))
        self.source = self._open(validation_fraction, verify_images)

    # ------------------------------------------------------------------ opening
    def _open(self, validation_fraction, verify_images):
        if self.kind == "folder":
            listing = folder.list_folder(self.name[len(FOLDER_PREFIX):], validation_fraction, spec=self.name)
            folder.check_readable(listing, self.name, verify_images)
            self.num_classes, self.split_sizes = len(listing.classes), listing.sizes()
            self.evaluation_split = "validation"
            self.path = listing.root
            return listing
        self.path = None
        if self.kind == "cifar":
            builder = cifar.prepared_builder(self.name, self.data_dir, self.manual_dir, self.download)
            self.num_classes = cifar.num_classes(self.name)
        else:
            builder = tfds_images.prepared_builder(self.name, self.data_dir, self.manual_dir, self.download)
            self.num_classes = tfds_images.classification_keys(builder)[2]
        self.split_sizes = tfds_images.split_sizes(builder)
        self.evaluation_split = tfds_images.evaluation_split(self.name, list(self.split_sizes))
        return builder

    # ------------------------------------------------------------------ metadata
    @property
    def image_shape(self):
        """The models' input shape, `(image_size, image_size, 3)`."""
        return (self.image_size, self.image_size, 3)

    def num_examples(self, split: str) -> int:
        """Examples in `split` (a split name or slice, e.g. `"train[:1000]"`)."""
        _, start, stop = splits.resolve(split, self.split_sizes)
        return stop - start

    def describe(self) -> dict:
        """What a run's config.json records: data set, its path, preprocessing family, image size,
        normalization statistics, classes and split sizes."""
        return {"dataset": self.name, "path": self.path, "kind": self.kind, "preprocessing": self.family,
                "image_size": self.image_size, "normalization": {"mean": list(self.mean), "std": list(self.std)},
                "num_classes": self.num_classes, "splits": dict(self.split_sizes)}

    # ------------------------------------------------------------------ views
    def _normalize(self, images):
        return imagenet_preprocessing.normalize(images, self.mean, self.std)

    def train_view(self, image, seed):
        """The training view of one decoded image from its stateless seed, normalized."""
        size = self.image_size
        if self.family == "imagenet":
            return self._normalize(imagenet_preprocessing.train_view(image, seed, size))
        resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)
        return self._normalize(cifar.augment(resized, seed))

    def eval_view(self, image):
        """The evaluation view of one decoded image, normalized."""
        size = self.image_size
        if self.family == "imagenet":
            return self._normalize(imagenet_preprocessing.eval_view(image, size))
        return self._normalize(tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True))

    def _view(self, encoded, seed, index):
        image = folder.decode(encoded)
        return self.eval_view(image) if seed is None else self.train_view(image, seed)

    def _source(self, split, num_examples=None):
        """`(ExampleList or dataset, count, absolute split)` of a split slice, capped at `num_examples`."""
        base, start, stop = splits.resolve(split, self.split_sizes)
        count = stop - start if num_examples is None else min(stop - start, int(num_examples))
        absolute = f"{base}[{start}:{start + count}]"
        if count <= 0:
            raise ValueError(f"--dataset={self.name}: the split {split!r} holds no example ({base} has "
                             f"{self.split_sizes[base]}); ask for fewer examples or another slice.")
        if self.kind == "folder":
            paths, labels = self.source.splits[base]
            return ExampleList(paths[start:start + count], labels[start:start + count]), count, absolute
        return tfds_images.records(self.source, absolute).take(count), count, absolute

    # ------------------------------------------------------------------ pipelines
    def epochs(self, split="train", *, batch_size=64, seed=0, data_seed=None, num_examples=None,
               drop_remainder=False, augment=True, shuffle_buffer=10_000):
        """The training pipeline of `split` as a `tfadakd.data.EpochPipeline`: epoch `e` is the same batches
        in every process; example `i`'s view depends only on `(data_seed, e, i)` (teacher-logit caches)."""
        if self._cifar_native:
            return cifar.cifar_epochs(self.name, split, batch_size=batch_size, seed=seed, data_seed=data_seed,
                                      data_dir=self.data_dir, manual_dir=self.manual_dir, download=self.download,
                                      num_examples=num_examples, drop_remainder=drop_remainder, augment=augment)
        source, count, absolute = self._source(split, num_examples)
        description = {"dataset": self.name, "split": absolute, "preprocessing": self.family,
                       "image_size": self.image_size}
        if self.path:
            description["path"] = self.path
        if self.kind == "folder":  # what the files are, not only where: a changed folder is never reused
            base, start, _ = splits.resolve(split, self.split_sizes)
            paths, labels = self.source.splits[base]
            description["examples"] = identity.folder_fingerprint(
                self.source.root, paths[start:start + count], labels[start:start + count], self.source.classes)
        else:
            description["version"] = str(self.source.version)
        return StreamingEpochPipeline(source, count, batch_size, self._view, augment=augment, seed=seed,
                                      data_seed=data_seed, drop_remainder=drop_remainder, description=description,
                                      shuffle_buffer=shuffle_buffer)

    def evaluation(self, split=None, *, batch_size=100, num_examples=None) -> tf.data.Dataset:
        """Batches `(images, labels)` of `split` (default: the evaluation split) in the evaluation view,
        in a fixed order, prefetched."""
        split = split or self.evaluation_split
        if self._cifar_native:
            return cifar.load_cifar(self.name, split, batch_size=batch_size, data_dir=self.data_dir,
                                    manual_dir=self.manual_dir, download=self.download, num_examples=num_examples,
                                    augment=False, shuffle=False)
        source, _, _ = self._source(split, num_examples)
        if isinstance(source, ExampleList):
            records = tf.data.Dataset.from_tensor_slices((source.items, source.labels)).map(
                lambda path, label: (source.read(path), label), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            records = source
        ds = records.map(lambda encoded, label: (self.eval_view(folder.decode(encoded)), label),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)

    def calibration_images(self, n: int = 300) -> np.ndarray:
        """The first `n` training images in the evaluation view, normalized: representative data for int8
        export (CIFAR: `tfadakd.data.calibration_images`)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}.")
        if self._cifar_native:
            return cifar.calibration_images(self.name, int(n), self.data_dir, manual_dir=self.manual_dir,
                                            download=self.download)
        n = min(int(n), self.split_sizes["train"])
        return np.concatenate([x for x, _ in self.evaluation("train", batch_size=n, num_examples=n)
                               .as_numpy_iterator()])


def open_dataset(name, *, data_dir=None, manual_dir=None, download=True, preprocessing: Optional[str] = None,
                 image_size: Optional[int] = None, validation_fraction: float = 0.1, verify_images=None):
    """Opens an image-classification data set by name (module docstring) with its preprocessing.

    Arguments:
        name: `cifar10`, `cifar100`, a tfds image-classification name, or `folder:PATH`.
        data_dir, manual_dir, download: where tfds finds or prepares the data (as `load_cifar`).
        preprocessing: `cifar` or `imagenet`; None chooses from the data (CIFAR -> cifar, else imagenet).
        image_size: the models' input height and width; None: 32 for `cifar`, 224 for `imagenet`.
        validation_fraction: share of each class of a folder held out as `validation` when it has no
            train/ + val/ folders.
        verify_images: decode every image of a folder once now (default: when it holds at most 20,000).

    Returns:
        An `ImageDataset`: `.epochs(split, ...)` (training `EpochPipeline`), `.evaluation(split, ...)`,
        `.calibration_images(n)`, `.num_classes`, `.image_shape`, `.evaluation_split`, `.describe()`.

    Raises:
        ValueError: an unknown name or family, a tfds data set that is not image classification
            (`NotImageClassificationError`), a folder that cannot serve (`ImageFolderError`: empty, a
            class without images, unreadable images, too few images to split).
        DataNotFoundError: tfds data that is neither prepared nor obtainable.

    Example:

    ```python
    data = open_dataset("imagenet2012", manual_dir="~/imagenet")   # ILSVRC2012_img_{train,val}.tar there
    train = data.epochs("train", batch_size=256, seed=0)
    ```
    """
    return ImageDataset(name, data_dir=data_dir, manual_dir=manual_dir, download=download,
                        preprocessing=preprocessing, image_size=image_size,
                        validation_fraction=validation_fraction, verify_images=verify_images)
