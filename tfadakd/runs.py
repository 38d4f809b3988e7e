"""Run directories: training that writes its logs, models and results, and resumes after a crash.

`fit_run` is what the apps call; `distiller.fit()` users can call it too:

```python
results = tfadakd.runs.fit_run(
    distiller, train_ds, test_ds, run_dir="saved_models/cifar100/my_run", epochs=240,
    model_to_save=distiller.student)
print(results["best_top1"])
```

A run directory holds:

| file | what |
| --- | --- |
| `config.json` | the exact configuration (the apps write their flags here) |
| `metrics.csv` | one row per completed epoch: losses, accuracies (`val_*` on the validation data, `test_*` on the test data when given), temperature mean and percentiles, logit correlation, epoch time |
| `tensorboard/` | TensorBoard logs |
| `student_best.keras`, `student_final.keras` | the saved model, best by validation top-1 (`val_accuracy`) and the last |
| `checkpoints/` | the resumable state (weights, optimizer, epoch) of the last two completed epochs (`keep_checkpoints=2`: a damaged newest file falls back to the one before), and `state.json` naming the newest |
| `results.json` | best and last top-1 / top-5, epochs, wall time (written when the run completes) |
| `environment.json` | a list with one record per start or resume of the training: the epoch it started at, the code (version, path, git commit) and the machine (CPU model and flags, cores, accelerators, precision policy); see `tfadakd.provenance` |

Rerunning the same command after the process was killed continues from the last completed epoch.
"""

import csv
import json
import math
import os
import signal
import time

import keras

from tfadakd import _compat
from tfadakd import callbacks as callbacks_lib
from tfadakd import files
from tfadakd import provenance
from tfadakd.checkpoints import ResumeCheckpoint
from tfadakd.data.epochs import EpochPipeline
from tfadakd.graceful_stop import GracefulStop, TrainingInterrupted  # noqa: F401 - raised through fit_run

CONFIG = "config.json"
METRICS = "metrics.csv"
RESULTS = "results.json"
ENVIRONMENT = "environment.json"
BEST = "student_best.keras"
FINAL = "student_final.keras"


class _EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to the epoch logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class _StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops the run at the first batch whose logged loss is NaN or Inf, before anything is written.

    Unlike `keras.callbacks.TerminateOnNaN`, which lets the epoch end (and the checkpoints be
    written, the cut epoch counted as complete), it raises `NonFiniteError`.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if (logs or {}).get("skipped_batches", 0) >= batch + 1:
            return  # nan_policy="skip_batch" and no batch of the epoch applied yet: the loss is NaN by design
        if loss is not None and not math.isfinite(loss):
            from tfadakd.step_guard import NonFiniteError

            raise NonFiniteError(
                f"The training loss became {loss} at batch {batch + 1} of epoch {self._epoch + 1}: the "
                f"model diverged, or the data holds NaN/Inf. Nothing was written for this epoch; "
                f"{os.path.join(self.run_dir, 'checkpoints')} keeps the last complete one. Lower the "
                "learning rate (or check the data), then rerun to resume."
            )

    def on_epoch_end(self, epoch, logs=None):
        skipped, steps = (logs or {}).get("skipped_batches", 0), (self.params or {}).get("steps")
        if steps and skipped >= steps:
            from tfadakd.step_guard import NonFiniteError

            raise NonFiniteError(
                f"All {int(skipped)} batches of epoch {epoch + 1} were skipped (nan_policy='skip_batch'): nothing was "
                "trained. The teacher's logits, the loss or the gradients were NaN or Inf on every batch: check the "
                "data for NaN / Inf values and the teacher's outputs. Nothing was written for this epoch."
            )


def ensure_writable(directory):
    """Creates `directory` and checks that files can be written in it.

    Raises:
        PermissionError: naming the directory and what to do, before any training starts.
    """
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise PermissionError(
            f"The output directory {directory!r} is not writable ({error.strerror or error}). Choose "
            "another one (flag --output_dir) or fix its permissions."
        ) from error
    return directory


def read_metrics(run_dir):
    """The rows of `metrics.csv` as a list of dicts of floats (empty if there is none)."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v != "" else None for k, v in row.items()} for row in csv.DictReader(f)]


def summarize(run_dir, top1="val_accuracy", top5="val_top5"):
    """Best and last top-1 / top-5 (in %), epochs and wall time from a run's `metrics.csv`.

    `best_*` / `last_*` are of the validation data (`top1` / `top5` columns) and `best_epoch` (0-based, like
    metrics.csv's `epoch` column) is the
    epoch chosen on it. When the run also logged the test set (`test_accuracy`, see `fit_run`'s
    `test_data`), `test_top1_selected` / `test_top5_selected` are the test accuracies at `best_epoch`
    and `test_top1_last` / `test_top5_last` at the last epoch: the numbers to report.
    """
    rows = read_metrics(run_dir)
    if not rows:
        return {"epochs": 0}

    def column(name):
        return [row.get(name) for row in rows if row.get(name) is not None]

    result = {"epochs": len(rows), "wall_time_seconds": sum(column("epoch_seconds"))}
    for key, name in (("top1", top1), ("top5", top5)):
        values = column(name)
        if values:
            result[f"best_{key}"] = 100.0 * max(values)
            result[f"last_{key}"] = 100.0 * values[-1]
    if top1 in rows[0] and column(top1):
        selected = max(rows, key=lambda r: r.get(top1) or -1)  # the first epoch reaching the maximum
        result["best_epoch"] = int(selected["epoch"])
        for key, name in (("top1", "test_accuracy"), ("top5", "test_top5")):
            if selected.get(name) is not None:
                result[f"test_{key}_selected"] = 100.0 * selected[name]
            if rows[-1].get(name) is not None:
                result[f"test_{key}_last"] = 100.0 * rows[-1][name]
    return result


class RunConflictError(ValueError):
    """The run directory belongs to a run started with other settings, or another process trains in it."""


#: Settings a rerun may change and still resume the run: they do not change what is trained.
RESUMABLE_CHANGES = ("epochs", "verbose")


def comparable(config):
    """`config` as it reads back from JSON (tuples as lists, NumPy numbers as Python ones)."""
    return json.loads(json.dumps(config, sort_keys=True, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _check_same_run(run_dir, config, may_change):
    """Refuses to go on in a run directory whose config.json differs from `config` beyond `may_change`."""
    old = files.read_json(os.path.join(run_dir, CONFIG))
    if config is None or not isinstance(old, dict):
        return
    new = comparable(config)
    differing = sorted(k for k in set(old) | set(new) if k not in may_change and old.get(k) != new.get(k))
    if differing:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differing)
        raise RunConflictError(
            f"{run_dir} holds a run started with other settings ({changes}). Nothing was trained or "
            "overwritten. Start a new run in another directory (apps: --run_name or --output_dir), or rerun "
            "with the run's own settings (its config.json) to resume it."
        )


class _RunLock:
    """An OS-level lock on `<run_dir>/.lock` held while a process trains there (released on exit or crash)."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, ".lock")

    def __enter__(self):
        import fcntl

        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            owner = self.file.read().strip() or "another process"
            self.file.close()
            raise RunConflictError(
                f"{os.path.dirname(self.path)} is in use by {owner}: one process per run directory. Wait for it "
                "to finish (or stop it), or train in another directory (apps: --run_name or --output_dir)."
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        self.file.close()  # closing releases the lock


def record_environment(run_dir, initial_epoch, initial_step=0):
    """Appends this start's `tfadakd.provenance.describe()` record, with the epoch (and batch) it starts
    at, to `<run_dir>/environment.json`; returns the list written. A file that is not a JSON list (edited by
    hand) is kept beside it as `environment.json.unreadable` and a new list is started."""
    path = os.path.join(run_dir, ENVIRONMENT)
    try:
        records = files.read_json(path, default=[])
    except ValueError:
        records = None
    if not isinstance(records, list):
        os.replace(path, path + ".unreadable")
        records = []
    records.append({"initial_epoch": int(initial_epoch), "initial_step": int(initial_step or 0),
                    **provenance.describe()})
    files.atomic_write_json(path, records)
    return records


def _known_empty(data):
    """True for a tf.data dataset that is known to hold no element."""
    cardinality = getattr(data, "cardinality", None)
    try:
        return cardinality is not None and int(cardinality()) == 0
    except (TypeError, ValueError):
        return False


def fit_run(
    model,
    train_data,
    validation_data,
    run_dir,
    epochs,
    model_to_save=None,
    callbacks=(),
    verbose=1,
    config=None,
    temperature_batches=4,
    steps_per_epoch=None,
    keep_checkpoints=2,
    test_data=None,
    may_change=RESUMABLE_CHANGES,
    stop_signals=(signal.SIGTERM, signal.SIGINT),
):
    """Trains `model` into `run_dir`, resuming from the last completed epoch if the run was cut short.

    Arguments:
        model: a compiled `keras.Model` (a `tfadakd.Distiller` or a plain model, e.g. a teacher).
        train_data, validation_data: datasets of `(x, y)` batches; `train_data` may also be a
            `tfadakd.data.EpochPipeline`, whose epochs a resumed run continues exactly (epoch `k` is
            the same batches in every process). `validation_data` chooses the best
            epoch (`student_best.keras`, `best_epoch`): pass a split held out of the training data,
            not the test set, when the test accuracy is to be reported.
        run_dir: the run directory (see the module docstring); created if missing.
        epochs: the total number of epochs of the run (not the number still to train).
        model_to_save: the model written to `student_best.keras` / `student_final.keras`
            (e.g. `distiller.student`); defaults to `model`.
        callbacks: more Keras callbacks.
        verbose: Keras' `fit` verbosity.
        config: a JSON-serializable dict written to `config.json` (the exact settings of the run).
        temperature_batches: validation batches used for per-epoch temperature statistics of a
            `Distiller` (0 disables them).
        steps_per_epoch: passed to `fit` (an `EpochPipeline` brings its own).
        keep_checkpoints: how many epoch checkpoints `checkpoints/` keeps; with 2 (the default) a
            damaged newest checkpoint falls back to the one before.
        test_data: optional test batches, evaluated after every epoch (`test_*` columns) and never
            used to choose; `results.json` then reports `test_top1_selected` (at the epoch chosen on
            `validation_data`) and `test_top1_last`.
        may_change: keys of `config` a rerun may change and still continue the run (default: `epochs`,
            `verbose`); any other difference from the run's `config.json` is refused.
        stop_signals: signals that stop the run gracefully (default SIGTERM, what schedulers send before
            preemption, and SIGINT, Ctrl-C): at the next batch boundary a checkpoint is written and
            `tfadakd.graceful_stop.TrainingInterrupted` is raised; rerunning resumes there. Mid-epoch
            (no finished batch lost) when `train_data` is an `EpochPipeline` on one worker; otherwise
            the run stops at once and resumes at the start of the current epoch. `()` turns it off.

    Returns:
        The results dict also written to `results.json`.

    Raises:
        PermissionError: if `run_dir` is not writable.
        ValueError: if `epochs` is not positive.
        tfadakd.callbacks.CheckpointError: (a `ValueError`) if the checkpoint in `run_dir` belongs to
            another model or cannot be read; the message names the folder to remove.
        tfadakd.distiller.NonFiniteError: if the training loss or the weights become NaN or Inf (or a
            `Distiller` with `nan_policy="raise"` meets a non-finite batch); nothing non-finite is
            written, and rerunning resumes from the last good epoch.
        OSError: if a file cannot be written (e.g. disk full); the previous files stay intact.
        RunConflictError: (a `ValueError`) if `run_dir` holds a run started with another `config`, or
            another process trains in it; nothing is written.
        TrainingInterrupted: on one of `stop_signals`, after the checkpoint is written.
    """
    if int(epochs) <= 0:
        raise ValueError(f"epochs must be positive, got {epochs!r}.")
    run_dir = ensure_writable(run_dir)
    with _RunLock(run_dir):
        _check_same_run(run_dir, config, may_change)
        return _fit_run_locked(model, train_data, validation_data, run_dir, epochs, model_to_save, callbacks,
                               verbose, config, temperature_batches, steps_per_epoch, keep_checkpoints, test_data,
                               stop_signals)


def _fit_run_locked(model, train_data, validation_data, run_dir, epochs, model_to_save, callbacks, verbose, config,
                    temperature_batches, steps_per_epoch, keep_checkpoints, test_data, stop_signals):
    files.remove_stale_temporaries(run_dir)  # left by a process killed while writing
    resume = ResumeCheckpoint(os.path.join(run_dir, "checkpoints"), keep=keep_checkpoints)
    initial_epoch = resume.restore(model)
    if config is not None:
        files.atomic_write_json(os.path.join(run_dir, CONFIG), config)
    if initial_epoch >= epochs:
        results = files.read_json(os.path.join(run_dir, RESULTS))
        if results is None:  # finished, but results.json went missing (killed before it, or deleted)
            results = summarize(run_dir)
            files.atomic_write_json(os.path.join(run_dir, RESULTS), results)
        results["resumed_from_epoch"] = initial_epoch
        return results
    if (initial_epoch or resume.initial_step) and verbose:
        after = f" after its batch {resume.initial_step}" if resume.initial_step else ""
        print(f"Resuming {run_dir} at epoch {initial_epoch + 1}{after} of {epochs}.")

    run_callbacks = [_StopOnNonFiniteLoss(run_dir), _EpochTimer()]
    if temperature_batches and hasattr(model, "distillation_loss") and validation_data is not None:
        run_callbacks.append(callbacks_lib.TemperatureMonitor(validation_data, temperature_batches))
    if test_data is not None:
        run_callbacks.append(callbacks_lib.TestEvaluation(test_data))
    run_callbacks += list(callbacks)
    run_callbacks += [
        callbacks_lib.SaveModel(
            model_to_save or model,
            best_path=os.path.join(run_dir, BEST),
            last_path=os.path.join(run_dir, FINAL),
            monitor="val_accuracy",
        ),
        callbacks_lib.CSVLogger(os.path.join(run_dir, METRICS)),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")),
        resume,  # after the writers: an epoch counts as complete only once everything above is written
    ]
    named = isinstance(train_data, EpochPipeline)
    stop = None
    if stop_signals:  # last: stops after the epoch's files, or mid-epoch with its own checkpoint
        mid_epoch = named and not _compat.in_multi_worker_mode(model.distribute_strategy)
        stop = GracefulStop(resume, stop_signals, step_offset=resume.initial_step, mid_epoch=mid_epoch)
        run_callbacks.append(stop)
    if not named and _known_empty(train_data):
        raise ValueError(
            "The training data yields no batch (an empty dataset): nothing would be trained. Check the data "
            "slice and the batch size (with drop_remainder, fewer examples than one batch give none)."
        )
    record_environment(run_dir, initial_epoch, resume.initial_step)  # a start that trains, not one refused above
    fit = dict(validation_data=validation_data, callbacks=run_callbacks, verbose=verbose,
               shuffle=False)  # the tf.data pipelines shuffle themselves
    try:
        if not named:
            model.fit(train_data, epochs=int(epochs), initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                      **fit)
        else:  # named epochs: start exactly where the run stopped, mid-epoch included
            steps, start, skip = train_data.steps_per_epoch, initial_epoch, resume.initial_step
            if skip:  # the rest of the epoch the run stopped in, then the following epochs
                model.fit(train_data.dataset(start, start + 1, skip_steps=skip), epochs=start + 1,
                          initial_epoch=start, steps_per_epoch=steps - skip, **fit)
                start += 1
                if stop is not None:
                    stop.step_offset = 0
            if start < int(epochs):
                model.fit(train_data.dataset(start, int(epochs)), epochs=int(epochs), initial_epoch=start,
                          steps_per_epoch=steps, **fit)
    finally:
        if stop is not None:
            stop.on_train_end()  # the previous signal handlers are back, whatever stopped the fit
    results = summarize(run_dir)
    results["resumed_from_epoch"] = initial_epoch
    files.atomic_write_json(os.path.join(run_dir, RESULTS), results)
    return results
