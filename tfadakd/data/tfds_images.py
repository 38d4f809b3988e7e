"""Any tensorflow-datasets image-classification data set by name (`imagenet2012`, `oxford_flowers102`, ...).

A data set qualifies when its features hold an `Image` and a `ClassLabel` (its supervised keys when it
declares them). Images are read still encoded (`tfds.decode.SkipDecoding`) and decoded per example by the
pipelines, so that nothing larger than a shuffle buffer is held in memory. Data is located, downloaded or
prepared from a manual dir by tfds itself: `data_dir` ($TFDS_DATA_DIR, ~/tensorflow_datasets), `manual_dir`
(archives that need a login, e.g. ImageNet's `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar`).

Example:

```python
builder = prepared_builder("oxford_flowers102", data_dir="~/tensorflow_datasets")
image_key, label_key, classes = classification_keys(builder)
```
"""

import os

import tensorflow as tf

#: Data sets whose `test` split is unlabeled or absent: their evaluation split is `validation`.
VALIDATION_IS_TEST = ("imagenet2012", "imagenet2012_subset", "imagenet2012_real", "imagenette", "imagewang",
                      "imagenet_resized", "imagenet_a", "imagenet_r")


class NotImageClassificationError(ValueError):
    """A tfds data set whose features are not an image and a class label."""


def _feature_kinds(features):
    import tensorflow_datasets as tfds

    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    return images, labels


def classification_keys(builder):
    """Returns `(image key, label key, number of classes)` of a tfds builder's features.

    Raises:
        NotImageClassificationError: naming the data set, its features and what is accepted instead.
    """
    features = builder.info.features
    images, labels = _feature_kinds(features)
    supervised = builder.info.supervised_keys
    if isinstance(supervised, tuple) and len(supervised) == 2 and all(isinstance(k, str) for k in supervised):
        if supervised[0] in images and supervised[1] in labels:
            images, labels = [supervised[0]], [supervised[1]]
    if len(images) != 1 or len(labels) != 1:
        kinds = ", ".join(f"{k}: {type(f).__name__}" for k, f in features.items())
        raise NotImageClassificationError(
            f"--dataset={builder.name}: the tfds data set is not image classification (its features are {kinds}; "
            "one Image and one ClassLabel are needed). Pick an image-classification data set (e.g. imagenet2012, "
            "oxford_flowers102), or put the images in class sub-folders and pass --dataset=folder:<path>.")
    return images[0], labels[0], int(features[labels[0]].num_classes)


def evaluation_split(name, split_names):
    """The split the apps test on: `validation` for the ImageNet family (its test split has no labels),
    else `test` when there is one, else `validation`."""
    if name.split("/")[0] in VALIDATION_IS_TEST and "validation" in split_names:
        return "validation"
    for split in ("test", "validation"):
        if split in split_names:
            return split
    raise ValueError(f"--dataset={name} has no test or validation split (splits: {', '.join(split_names)}): nothing "
                     "to evaluate on. Use a data set with one, or an image folder (--dataset=folder:<path>).")


def builder_of(name, data_dir=None):
    """The tfds builder of `name`, refused unless it is image classification (checked before any download).

    Raises:
        ValueError: for a name tfds does not know.
        NotImageClassificationError: for a data set of another kind.
    """
    import tensorflow_datasets as tfds

    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as error:
        raise ValueError(
            f"Unknown --dataset {name!r}: not cifar10 / cifar100, not folder:<path>, and not a tfds data set "
            f"({type(error).__name__}: {str(error).splitlines()[0]}). Pass a tfds image-classification name "
            "(tfds.list_builders()) or folder:<path of class sub-folders>.") from None
    classification_keys(builder)
    return builder


def prepared_builder(name, data_dir=None, manual_dir=None, download=True):
    """`builder_of(name)` with its data prepared: found in `data_dir`, else prepared by tfds from
    `manual_dir` or a download.

    Raises:
        tfadakd.data.DataNotFoundError: when tfds cannot prepare it, with tfds' reason and the flags to set.
    """
    import tensorflow_datasets as tfds

    from tfadakd.data.cifar import DataNotFoundError

    builder = builder_of(name, data_dir)
    if builder.is_prepared():
        return builder
    where = f"data_dir={builder.data_dir}" + (f", manual_dir={manual_dir}" if manual_dir else "")
    if not download and manual_dir is None:
        raise DataNotFoundError(
            f"{name} is not prepared in {builder.data_dir} and download=False. Pass --data_dir pointing at a tfds "
            f"data dir holding it, or --manual_dir with its archives (see tfds' page of {name}).")
    config = {"manual_dir": os.path.expanduser(os.fspath(manual_dir))} if manual_dir else {}
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(**config))
    except Exception as error:  # noqa: BLE001 - tfds raises many kinds; all mean "could not prepare"
        raise DataNotFoundError(
            f"{name} could not be prepared ({where}): {type(error).__name__}: {str(error)[:500]}\nPass --data_dir "
            f"pointing at a tfds data dir that holds {name}, or --manual_dir with the archives tfds asks for (a "
            "download needs internet; ImageNet needs its archives in the manual dir).") from error
    return builder


def split_sizes(builder):
    """Split name -> examples, from the data set's info (or, for tfds' mock data, counted once)."""
    sizes = {name: int(info.num_examples) for name, info in builder.info.splits.items()}
    if sizes:
        return sizes
    counted = {}
    for split in ("train", "validation", "test"):
        try:
            counted[split] = int(builder.as_dataset(split=split).reduce(0, lambda n, _: n + 1))
        except Exception:  # noqa: BLE001 - a split that does not exist
            continue
    return counted


def records(builder, split):
    """The examples of `split` (a tfds split string) as `(encoded image bytes, int32 label)`, in file order."""
    import tensorflow_datasets as tfds

    image_key, label_key, _ = classification_keys(builder)
    ds = builder.as_dataset(split=split, decoders={image_key: tfds.decode.SkipDecoding()}, shuffle_files=False)
    return ds.map(lambda e: (e[image_key], tf.cast(e[label_key], tf.int32)), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)
