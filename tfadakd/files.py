"""Files that never lie: atomic writes (temporary name, fsync, rename), SHA-256 digests, and the guard
that keeps NaN / Inf weights out of every file a run writes.

A process killed at any moment leaves each file either complete with its new content or unchanged;
an `OSError` while writing (a full disk, a read-only folder) names the file and leaves the old one.

Example:

```python
from tfadakd import files

files.atomic_write_json("run/results.json", {"top1": 71.2})
files.save_model(model, "run/student.keras")       # atomic, loads without tfadakd
digest = files.file_sha256("run/student.keras")
```
"""

import hashlib
import json
import os
import re

import keras
import numpy as np


def atomic_write_text(path, text):
    """Writes `text` to `path` atomically (temporary file in the same folder, fsync, rename)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path, data):
    """Writes the bytes `data` to `path` atomically (temporary file in the same folder, fsync, rename).

    On an `OSError` (e.g. disk full) `path` keeps its previous content, the temporary file is removed,
    and the error (same `errno`) names `path`.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise _naming(error, path) from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _naming(error, path):
    """`error` again (same errno), saying which file could not be written and that the old one is intact."""
    reason = error.strerror or str(error)
    message = f"Could not write {path} ({reason}); its previous version, if any, is unchanged."
    return OSError(message) if error.errno is None else OSError(error.errno, message)


def file_sha256(path):
    """The SHA-256 hex digest of a file's bytes, read in blocks.

    >>> file_sha256("saved_models/cifar100/resnet32/teacher.keras")
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_json(path, value):
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    raise TypeError(f"Cannot serialize {type(value).__name__} to JSON.")


def save_model(model, path):
    """Writes `model` to the `.keras` file `path` atomically, without its compile state, so that the
    file loads with plain `keras.models.load_model` where tfadakd is not installed.

    A compiled model's file names its optimizer (tfadakd's `SGD`, which plain Keras cannot find) and
    holds its slots; runs resume from checkpoints, never from these files, so they leave both out.
    The zoo's batch-norm layers are written as Keras' own (`tfadakd.models.FusedBatchNormalization`).

    Example:

    >>> save_model(student, "run/student_best.keras")
    """
    from tfadakd import _compat

    with _compat.uncompiled(model):
        atomic_save(model.save, path)


def atomic_save(save_fn, path):
    """Calls `save_fn(tmp_path)` and renames the result to `path`; `path` keeps its old content on error.

    An `OSError` of the writer (e.g. disk full, `errno.ENOSPC`) is re-raised with the same `errno` and
    a message naming `path` and saying that its previous version is unchanged.

    Example:

    >>> atomic_save(model.save, "student.keras")
    """
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    if path.endswith(".weights.h5"):
        root, ext = path[: -len(".weights.h5")], ".weights.h5"
    tmp = f"{root}.tmp-{os.getpid()}{ext}"  # keep the extension: Keras chooses the format by it
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    except OSError as error:  # e.g. disk full: say which file, and that the old one is intact
        raise _naming(error, path) from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_stale_temporaries(directory):
    """Deletes the `*.tmp-<pid>*` files that a killed process left in `directory` (not recursive).

    `atomic_save` and `atomic_write_text` never leave them behind unless the process dies during a
    write (e.g. `kill -9`); the complete files they were replacing are untouched. Files of the
    current process are kept.

    Arguments:
        directory: the folder to clean (a missing folder is fine).

    Returns:
        The names of the files removed.
    """
    directory = os.fspath(directory)
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        match = _TEMPORARY.search(name)
        if match and int(match.group(1)) != os.getpid() and os.path.isfile(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))
            removed.append(name)
    return removed


_TEMPORARY = re.compile(r"\.tmp-(\d+)(\.|$)")


def non_finite_variables(variables):
    """Names (paths) of the floating-point variables in `variables` that contain NaN or Inf.

    Arguments:
        variables: Keras or TensorFlow variables (e.g. `model.weights + optimizer.variables`).

    Returns:
        A list of variable paths, empty if every value is finite.
    """
    names = []
    for variable in variables:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            names.append(getattr(variable, "path", None) or getattr(variable, "name", "?"))
    return names


def refuse_non_finite(model, what, epoch, kept, nan_policy=None):
    """Raises `NonFiniteError` if `model` (or its optimizer) holds NaN or Inf, saying `what` was not written.

    `nan_policy`: the training `Distiller`'s (default: `model`'s own, if any), to tailor the advice.
    """
    nan_policy = nan_policy or getattr(model, "nan_policy", None)
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    bad = non_finite_variables(variables)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        from tfadakd.step_guard import NonFiniteError

        if nan_policy == "skip_batch":  # the non-finite batches were skipped already: advise the rest
            advice = ("Batches with NaN/Inf were already skipped (nan_policy='skip_batch'), so the finite ones "
                      "diverged, or NaN inputs reached the batch-norm statistics: lower the learning rate and "
                      "check the data")
        else:
            advice = ("Training diverged: lower the learning rate (or, for a Distiller, check the teacher and "
                      "consider nan_policy='skip_batch')")
        raise NonFiniteError(
            f"After epoch {epoch + 1} the model holds NaN or Inf ({shown}): {what} was not written, "
            f"{kept} {advice}, then rerun to resume from the last good checkpoint."
        )


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


