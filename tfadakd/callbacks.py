"""Keras callbacks for long distillation runs: resumable atomic checkpoints, best-student saving,
a crash-safe CSV log, and per-epoch temperature statistics.

Every file is written to a temporary name in the same folder and moved into place with `os.replace`,
so a run killed at any point never leaves a partially written file under a final name.
"""

import csv
import hashlib
import io
import json
import math
import os
import re

import keras
import numpy as np
import tensorflow as tf

from tfadakd.distiller import NonFiniteError


class CheckpointError(ValueError):
    """A resume checkpoint cannot be used (another model's, or damaged); the message names what to remove."""


# ---------------------------------------------------------------------------- atomic files
def atomic_write_text(path, text):
    """Writes `text` to `path` atomically (temporary file in the same folder, fsync, rename)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
        reason = error.strerror or str(error)
        message = f"Could not write {path} ({reason}); its previous version, if any, is unchanged."
        if error.errno is None:
            raise OSError(message) from error
        raise OSError(error.errno, message) from error
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


def _refuse_non_finite(model, what, epoch, kept):
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    bad = non_finite_variables(variables)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteError(
            f"After epoch {epoch + 1} the model holds NaN or Inf ({shown}): {what} was not written, "
            f"{kept} Training diverged: lower the learning rate (or, for a Distiller, check the teacher "
            "and consider nan_policy='skip_batch'), then rerun to resume from the last good checkpoint."
        )


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


# ---------------------------------------------------------------------------- resume
class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves the whole training state after every epoch and restores it when a run restarts.

    The state is the model's weights with the optimizer's variables (momentum, iteration count)
    and, for a `Distiller`, its epoch counter, in `epoch-{N}.weights.h5`, plus `state.json`, which
    names the last complete checkpoint and is replaced atomically only after that file is complete.
    A run killed during a write resumes from the previous epoch. `restore` builds the optimizer
    before loading, so the momentum buffers come back too; `keras.callbacks.BackupAndRestore` does
    the same since Keras 3.3 (this package needs 3.6). What differs from it: each file is written
    under a temporary name and renamed, where `BackupAndRestore` overwrites `latest.weights.h5` in
    place and then its epoch file (a kill during the write leaves a truncated file, which only its
    `double_checkpoint=True` recovers from; a kill between the two, new weights with the old epoch);
    non-finite weights are never written (below); a checkpoint of another model is refused with a
    message naming the folder; and the checkpoints are kept after training.

    Weights that contain NaN or Inf are never written: `on_epoch_end` then raises
    `tfadakd.distiller.NonFiniteError` and the last good checkpoint stays in place.

    Arguments:
        directory: folder for the checkpoints (created if missing).
        keep: how many epoch checkpoints to keep; with 2 or more, `restore` falls back to an older
            one when the newest file is damaged.

    Example:

    ```python
    resume = tfadakd.callbacks.ResumeCheckpoint("saved_models/run/checkpoints")
    initial_epoch = resume.restore(distiller)           # 0 on a fresh run
    distiller.fit(ds, epochs=240, initial_epoch=initial_epoch, callbacks=[resume])
    ```
    """

    def __init__(self, directory, keep=1):
        super().__init__()
        self.directory = os.fspath(directory)
        self.keep = max(1, int(keep))
        os.makedirs(self.directory, exist_ok=True)

    @property
    def state_path(self):
        return os.path.join(self.directory, "state.json")

    def state(self):
        """The saved state (`{"epoch": last complete 0-based epoch, "file": ...}`), or None."""
        return read_json(self.state_path)

    def restore(self, model):
        """Loads the last complete checkpoint into `model` (compiled); returns the epoch to start at.

        Leftover temporary files of a process killed while writing are removed first. If the newest
        checkpoint file is missing or damaged (truncated, corrupt), an older one kept in `files`
        (see `keep`) is used instead, with a warning.

        Raises:
            CheckpointError (a `ValueError`): if the checkpoint does not fit the model (another
                architecture) or no kept checkpoint file can be read, saying which folder to remove
                to start afresh.
        """
        remove_stale_temporaries(self.directory)
        try:
            state = self.state()
        except ValueError as error:  # not JSON: state.json is written atomically, so rather a disk fault
            raise CheckpointError(
                f"Cannot resume: {self.state_path} is damaged ({error}). Remove the folder {self.directory} "
                "to train this run again from its first epoch (or choose another run directory)."
            ) from error
        if not state:
            return 0
        if getattr(model, "optimizer", None) is not None:
            model.optimizer.build(model.trainable_variables)
        if state.get("fingerprint", _fingerprint(model)) != _fingerprint(model):
            raise CheckpointError(
                f"Cannot resume from {os.path.join(self.directory, state['file'])}: its variables differ in "
                "number or shapes from this model's. It was written by a different model or configuration; "
                f"remove {self.directory} (or choose another run directory) to start afresh."
            )
        candidates = [state["file"]] + [f for f in reversed(state.get("files", [])) if f != state["file"]]
        failures = []
        for name in candidates:
            path = os.path.join(self.directory, name)
            try:
                model.load_weights(path)
            except Exception as error:  # noqa: BLE001 - h5py raises OSError, Keras ValueError/KeyError
                failures.append(f"{path}: {type(error).__name__}: {error}")
                continue
            if failures:
                import warnings

                warnings.warn(
                    f"The newest checkpoint could not be read ({failures[0]}); resuming from the older "
                    f"{path} instead.", stacklevel=2,
                )
            return _epoch_of(name, state) + 1
        older = "and so is every older one kept" if len(candidates) > 1 else "and no older one is kept"
        raise CheckpointError(
            f"Cannot resume: the checkpoint named in {self.state_path} is missing or damaged "
            f"(truncated or corrupt), {older}. "
            + " ".join(failures)
            + f" Remove the folder {self.directory} to train this run again from its first epoch (or "
            "choose another run directory)."
        )

    def on_epoch_end(self, epoch, logs=None):
        _refuse_non_finite(
            self.model, f"the checkpoint of epoch {epoch + 1}", epoch,
            f"{self.state_path} still names the last good one.",
        )
        name = f"epoch-{epoch}.weights.h5"
        atomic_save(self.model.save_weights, os.path.join(self.directory, name))
        previous = self.state() or {}
        history = [f for f in previous.get("files", []) if f != name] + [name]
        state = {"epoch": epoch, "file": name, "files": history[-self.keep:], "fingerprint": _fingerprint(self.model)}
        atomic_write_json(self.state_path, state)
        for old in history[: -self.keep]:
            old_path = os.path.join(self.directory, old)
            if os.path.exists(old_path) and old != name:
                os.remove(old_path)


def _epoch_of(name, state):
    """The 0-based epoch of the checkpoint file `name` (`epoch-{N}.weights.h5`)."""
    if name == state["file"]:
        return int(state["epoch"])
    return int(name[len("epoch-"):-len(".weights.h5")])


def _fingerprint(model):
    """A short digest of the model's variable shapes and dtypes, in order, to recognize its checkpoints.

    Names are left out: Keras numbers layer names per process (`dense_3`), so they vary between runs.
    """
    text = ";".join(f"{tuple(v.shape)}:{v.dtype}" for v in model.weights)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- best model
class SaveModel(keras.callbacks.Callback):
    """Saves a model (e.g. `distiller.student`) atomically: the best by `monitor`, and the last.

    The best value survives restarts (kept in `<best_path>.json`). A model holding NaN or Inf is not
    written: `on_epoch_end` raises `tfadakd.distiller.NonFiniteError` and the files keep their
    previous content.

    Arguments:
        model_to_save: the Keras model to write (defaults to the model being trained).
        best_path: where the best model goes, or None.
        last_path: where the model goes after every epoch, or None.
        monitor: the log to compare (`"val_accuracy"`); `mode` `"max"` or `"min"`.
    """

    def __init__(self, model_to_save=None, best_path=None, last_path=None, monitor="val_accuracy", mode="max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.model_to_save = model_to_save
        self.best_path, self.last_path = best_path, last_path
        self.monitor, self.mode = monitor, mode
        record = read_json(f"{best_path}.json", {}) if best_path else {}
        self.best = record.get("value")
        self.best_epoch = record.get("epoch")

    def _improved(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        model = self.model_to_save or self.model
        paths = " and ".join(p for p in (self.last_path, self.best_path) if p)
        _refuse_non_finite(model, paths or "the model", epoch, "the previous versions are kept.")
        if self.last_path:
            atomic_save(model.save, self.last_path)
        value = (logs or {}).get(self.monitor)
        if self.best_path and value is not None and math.isfinite(value) and self._improved(value):
            atomic_save(model.save, self.best_path)
            self.best, self.best_epoch = float(value), epoch
            atomic_write_json(f"{self.best_path}.json", {"monitor": self.monitor, "value": self.best, "epoch": epoch})


# ---------------------------------------------------------------------------- logs
class CSVLogger(keras.callbacks.Callback):
    """A per-epoch CSV log rewritten atomically after each epoch, consistent across restarts.

    On a resumed run (`initial_epoch > 0`) rows of epochs that will be trained again are dropped, so
    the file holds exactly one row per completed epoch. Columns are the union of all logged keys.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)
        self.rows = []

    def on_train_begin(self, logs=None):
        self.rows = []
        if os.path.exists(self.path):
            with open(self.path, newline="") as f:
                self.rows = list(csv.DictReader(f))

    def on_epoch_begin(self, epoch, logs=None):
        self.rows = [row for row in self.rows if int(row["epoch"]) < epoch]

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        columns = ["epoch"] + sorted({k for row in self.rows for k in row} - {"epoch"})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


class TestEvaluation(keras.callbacks.Callback):
    """Evaluates the model on held-out test data after each epoch and adds `test_<metric>` to the logs.

    The test set is only reported, never used to choose: model selection (`SaveModel`) monitors the
    validation logs (`val_accuracy`). Place it before the loggers in the callback list.

    Arguments:
        data: a dataset of `(images, labels)` batches, e.g. the test split.

    Example:

    ```python
    model.fit(train, validation_data=validation, callbacks=[TestEvaluation(test), CSVLogger("m.csv")])
    # metrics.csv then has val_accuracy (chosen on) and test_accuracy (reported) per epoch.
    ```
    """

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        results = self.model.evaluate(self.data, verbose=0, return_dict=True)
        logs.update({f"test_{name}": float(value) for name, value in results.items()})


class TemperatureMonitor(keras.callbacks.Callback):
    """Adds per-sample temperature statistics of a `Distiller` to the epoch logs.

    At the end of each epoch it runs teacher and student (inference mode) on a few fixed batches
    and records `temperature_min`, `_p05`, `_p50`, `_p95`, `_max` and `logit_correlation_eval` (mean
    per-sample Pearson correlation of teacher and student logits on those batches). Place it before
    the loggers in the callback list so they see these values.

    Arguments:
        data: a dataset of `(images, labels)` batches (e.g. the test set).
        num_batches: how many batches to use.
    """

    def __init__(self, data, num_batches=4):
        super().__init__()
        self.batches = list(data.take(num_batches)) if hasattr(data, "take") else list(data)[:num_batches]

    def on_epoch_end(self, epoch, logs=None):
        from tfadakd import functional as F

        model = self.model
        if not hasattr(model, "distillation_loss") or logs is None:
            return
        temperatures, correlations = [], []
        for batch in self.batches:
            x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
            t = tf.cast(model.teacher(x, training=False), "float32")
            s = tf.cast(model.student(x, training=False), "float32")
            _, temperature = model.distillation_loss(t, s, labels=y, epoch=model.epoch, return_temperature=True)
            temperatures.append(np.reshape(temperature.numpy(), [-1]))
            correlations.append(F.logit_correlation(t, s).numpy())
        temperatures = np.concatenate(temperatures)
        logs["temperature_min"] = float(temperatures.min())
        for q in (5, 50, 95):
            logs[f"temperature_p{q:02d}"] = float(np.percentile(temperatures, q))
        logs["temperature_max"] = float(temperatures.max())
        logs["logit_correlation_eval"] = float(np.concatenate(correlations).mean())
