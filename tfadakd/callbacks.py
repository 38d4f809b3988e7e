"""Keras callbacks for long distillation runs: resumable atomic checkpoints (`ResumeCheckpoint`, from
`tfadakd.checkpoints`), a graceful stop on SIGTERM / SIGINT (`GracefulStop`), best-student saving, a crash-safe CSV log, test-set reporting, and per-epoch
temperature statistics.

Every file is written to a temporary name in the same folder and moved into place with `os.replace`
(`tfadakd.files`), so a run killed at any point never leaves a partially written file under a final name.
"""

import csv
import io
import math
import os

import keras
import numpy as np
import tensorflow as tf

from tfadakd.checkpoints import CheckpointError, ResumeCheckpoint  # noqa: F401 - public here too (compatibility)
from tfadakd.graceful_stop import GracefulStop, TrainingInterrupted  # noqa: F401 - public here too (compatibility)
# Kept for compatibility: the file helpers are public here too (`tfadakd.callbacks.read_json`, ...), as before
# they moved to tfadakd.files; the rest of the library imports them from tfadakd.files.
from tfadakd.files import (  # noqa: F401 - kept for compatibility, as before they moved to tfadakd.files
    atomic_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    non_finite_variables,
    read_json,
    refuse_non_finite,
    remove_stale_temporaries,
    save_model,
)


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
        refuse_non_finite(model, paths or "the model", epoch, "the previous versions are kept.",
                          nan_policy=getattr(self.model, "nan_policy", None))
        if self.last_path:
            save_model(model, self.last_path)
        value = (logs or {}).get(self.monitor)
        if self.best_path and value is not None and math.isfinite(value) and self._improved(value):
            save_model(model, self.best_path)
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
        if getattr(model, "distillation_loss", None) is None or logs is None:  # no logit term: no temperature
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
