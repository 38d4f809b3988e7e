"""A folder of class sub-folders as an image-classification data set (`folder:PATH`).

    PATH/<class>/<image>               classes = the sorted sub-folder names, labels 0, 1, ...
    PATH/train/<class>/..., PATH/val/<class>/...    (or validation/): separate splits, used as given

Without `train/` + `val/`, a deterministic validation split is held out of every class: the images whose
SHA-1 of `<class>/<file name>` ranks first, `validation_fraction` of each class (at least one). It never
depends on a seed, the machine or the listing order, and adding an image to a class moves at most the
images whose rank it passes. The images of a split are listed in one class-mixed order (again by the
SHA-1 of the relative path), so that slices such as `train[:1000]` or `train[-500:]` mix the classes.

Only the list of `(path, label)` is held in memory; images are read and decoded per example by the
pipelines (`tfadakd.data.open_dataset`). Accepted files: .jpg, .jpeg, .png, .gif (first frame), .bmp.

Example:

```python
listing = list_folder("~/data/flowers")
listing.classes                          # ['daisy', 'rose', 'tulip']
paths, labels = listing.splits["train"]
```
"""

import hashlib
import os
from typing import Dict, List, Sequence, Tuple

import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
#: Split folder names that make PATH a data set with separate splits (train + one of the others).
VALIDATION_FOLDERS = ("val", "validation")
#: Folders with at most this many images are decoded once in full when opened (`verify_images=None`).
VERIFY_LIMIT = 20_000


class ImageFolderError(ValueError):
    """An image folder that cannot serve as a data set (empty, a class without images, unreadable files)."""


class FolderListing:
    """What `list_folder` found: `classes` (sorted names), `splits` (name -> (paths, labels)), `root`
    and `separate_validation` (True when PATH had train/ and val/ folders)."""

    def __init__(self, root, classes, splits, separate_validation):
        self.root, self.classes, self.splits = root, classes, splits
        self.separate_validation = separate_validation

    def sizes(self) -> Dict[str, int]:
        return {name: len(paths) for name, (paths, _) in self.splits.items()}


def _digest(relative: str) -> str:
    return hashlib.sha1(relative.encode("utf-8")).hexdigest()


def _entries(folder, keep):
    """The sorted names of `folder`'s visible entries for which `keep(entry)` holds.

    Raises:
        ImageFolderError: naming the entry, for a name that is not valid UTF-8 (TensorFlow reads paths as
            UTF-8) or an entry whose type cannot be read (a symbolic-link loop, a permission error).
    """
    names = []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        path = os.path.join(folder, entry.name)
        try:
            entry.name.encode("utf-8")
        except UnicodeEncodeError:
            raise ImageFolderError(
                f"{os.fsencode(path)!r}: the file name is not valid UTF-8, which TensorFlow needs to read it. "
                "Rename the file (e.g. `convmv -f latin1 -t utf8 --notest -r <folder>`).") from None
        try:
            wanted = keep(entry)
        except OSError as error:
            raise ImageFolderError(
                f"{path}: cannot tell what it is ({error.strerror or error}): a symbolic link that loops or points "
                "where it may not be read. Remove it or fix its target.") from None
        if wanted:
            names.append(entry.name)
    return sorted(names)


def _class_folders(root) -> List[str]:
    return _entries(root, lambda e: e.is_dir())


def _images_of(folder) -> List[str]:
    return _entries(folder, lambda e: e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())


def _scan(root, spec) -> Tuple[List[str], Dict[str, List[str]]]:
    """Classes and each class's image file names under `root`; refuses an empty folder or an empty class."""
    classes = _class_folders(root)
    if not classes:
        raise ImageFolderError(
            f"--dataset={spec}: {root} holds no class sub-folders. Put each class's images in a sub-folder named "
            f"after the class ({root}/<class>/<image>.jpg), or train/ and val/ folders of such sub-folders.")
    images = {name: _images_of(os.path.join(root, name)) for name in classes}
    empty = [name for name in classes if not images[name]]
    if empty:
        splits = [name for name in ("train", "test", "val", "validation") if name in classes]
        hint = (f" {root} looks like a folder of splits ({', '.join(splits)}): tfadakd reads train/ with val/ (or "
                "validation/) as the validation split; rename the held-out folder to val/ (the test split of a "
                "folder is its validation split)." if "train" in splits and len(splits) > 1 else "")
        raise ImageFolderError(
            f"--dataset={spec}: the class folder {os.path.join(root, empty[0])} holds no image "
            f"({len(empty)} empty class folder(s): {', '.join(empty[:5])}). Add images "
            f"({', '.join(IMAGE_EXTENSIONS)}) or remove the folder.{hint}")
    return classes, images


def _mixed_order(root, classes, images, label_of) -> Tuple[List[str], List[int]]:
    """All images of `images` (class -> names), in the class-mixed order of their relative paths' SHA-1."""
    entries = [(_digest(f"{c}/{n}"), os.path.join(root, c, n), label_of[c]) for c in classes for n in images[c]]
    entries.sort()
    return [path for _, path, _ in entries], [label for _, _, label in entries]


def _hold_out(classes, images, fraction, spec):
    """Splits each class's images into (train, validation) by the SHA-1 rank of `<class>/<name>`."""
    if not 0 < fraction < 1:
        raise ImageFolderError(f"validation_fraction must be in (0, 1), got {fraction!r}.")
    train, validation = {}, {}
    for name in classes:
        files = images[name]
        if len(files) < 2:
            raise ImageFolderError(
                f"--dataset={spec}: class {name!r} has {len(files)} image, too few for a validation split "
                f"(validation_fraction={fraction}: at least one validation and one training image per class). Add "
                "images, or provide train/ and val/ folders.")
        held = min(len(files) - 1, max(1, round(fraction * len(files))))
        ranked = sorted(files, key=lambda n, c=name: _digest(f"{c}/{n}"))
        validation[name] = sorted(ranked[:held])
        train[name] = sorted(ranked[held:])
    return train, validation


def list_folder(path, validation_fraction: float = 0.1, spec: str = None) -> FolderListing:
    """Lists an image folder's classes and splits `train` and `validation` (see the module docstring).

    Arguments:
        path: the folder (`~` expanded).
        validation_fraction: the share of each class held out as `validation` when PATH has no
            train/ + val/ folders.
        spec: how the user named the data set, for messages (default `folder:<path>`).

    Returns:
        A `FolderListing`.

    Raises:
        ImageFolderError: no such folder, no class sub-folder, a class folder without images, a
            class too small for the split, or validation classes unknown to train/.

    Example:

    ```python
    paths, labels = list_folder("~/data/flowers").splits["validation"]
    ```
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(path)))
    spec = spec or f"folder:{path}"
    if not os.path.isdir(root):
        raise ImageFolderError(f"--dataset={spec}: {root} is not a folder. Pass folder:<path of a folder of class "
                               "sub-folders>.")
    subfolders = _class_folders(root)
    validation_name = next((v for v in VALIDATION_FOLDERS if v in subfolders), None)
    if "train" in subfolders and validation_name:
        train_root, validation_root = os.path.join(root, "train"), os.path.join(root, validation_name)
        classes, train = _scan(train_root, spec)
        validation_classes, validation = _scan(validation_root, spec)
        unknown = sorted(set(validation_classes) - set(classes))
        if unknown:
            raise ImageFolderError(
                f"--dataset={spec}: {validation_root} has classes that {train_root} lacks: {', '.join(unknown[:5])}. "
                "The validation classes must be training classes (same sub-folder names).")
        label_of = {name: i for i, name in enumerate(classes)}
        splits = {"train": _mixed_order(train_root, classes, train, label_of),
                  "validation": _mixed_order(validation_root, validation_classes, validation, label_of)}
        return FolderListing(root, classes, splits, separate_validation=True)
    classes, images = _scan(root, spec)
    label_of = {name: i for i, name in enumerate(classes)}
    train, validation = _hold_out(classes, images, validation_fraction, spec)
    splits = {"train": _mixed_order(root, classes, train, label_of),
              "validation": _mixed_order(root, classes, validation, label_of)}
    return FolderListing(root, classes, splits, separate_validation=False)


def decode(contents):
    """Decodes a JPEG / PNG / GIF (first frame) / BMP file's bytes to a uint8 `(H, W, 3)` tensor.

    Example:

    >>> decode(tf.io.encode_png(tf.zeros((4, 5, 3), tf.uint8))).shape
    TensorShape([4, 5, 3])
    """
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return tf.ensure_shape(image, (None, None, 3))


def unreadable_images(paths: Sequence[str]) -> List[str]:
    """The files of `paths` that cannot be read or decoded as images, in the order given.

    Decodes every file once (in parallel); a corrupt or truncated file, or one that is not an image,
    is reported by name.

    Example:

    >>> unreadable_images([])
    []
    """
    paths = list(paths)
    if not paths:
        return []
    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: (p, tf.shape(decode(tf.io.read_file(p)))), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.ignore_errors()
    readable = {p.decode("utf-8") for p, _ in ds.as_numpy_iterator()}
    return [p for p in paths if p not in readable]


def check_readable(listing: FolderListing, spec: str, verify_images=None):
    """Decodes every image of `listing` (when `verify_images`, or when None and there are at most
    `VERIFY_LIMIT` images); raises `ImageFolderError` naming the first unreadable file."""
    paths = [p for split_paths, _ in listing.splits.values() for p in split_paths]
    if verify_images is None:
        verify_images = len(paths) <= VERIFY_LIMIT
    if not verify_images:
        return
    bad = unreadable_images(paths)
    if bad:
        raise ImageFolderError(
            f"--dataset={spec}: {len(bad)} file(s) cannot be decoded as images, e.g. {bad[0]}"
            + (f" (also {', '.join(os.path.basename(b) for b in bad[1:4])})" if len(bad) > 1 else "")
            + ". Remove or replace them (or re-encode them as JPEG / PNG).")
