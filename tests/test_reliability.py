"""Failure modes (issue 8): every one fails fast with a message that says what to do, or recovers.

One test per row of docs/reliability.md. Library cases run in-process on tiny MLPs; the app cases run
the apps' `main` after absl's flag parsing, all in one subprocess (one TensorFlow start-up, CPU split
in two logical devices for the replica cases); bad flags run the real programs (absl fails before
TensorFlow is imported).
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfadakd
from tfadakd import callbacks as cb
from tfadakd.distiller import NonFiniteError
from tfadakd.runs import fit_run, read_metrics

REPO = Path(__file__).resolve().parents[1]
POISON = 1e4  # a first feature above TRIGGER makes a `poisoned` model output NaN
TRIGGER = 1e3


# ---------------------------------------------------------------------------- tiny models and data
def mlp(seed, classes=5, poisoned=False):
    """A tiny MLP producing logits; `poisoned`: NaN logits for examples whose first feature > TRIGGER."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    logits = keras.layers.Dense(classes)(keras.layers.Dense(8, activation="relu")(inputs))
    if poisoned:
        logits = logits + 0.0 * keras.ops.sqrt(TRIGGER - inputs[:, :1])  # sqrt(< 0) = NaN
    return keras.Model(inputs, logits)


def batches(n=48, batch=16, poison_batch=None):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 5, n)
    if poison_batch is not None:
        x[poison_batch * batch + 3, 0] = POISON
    return x, y


def dataset(x, y, batch=16):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def distiller(jit=False, nan_policy="raise", teacher=None, student=None):
    model = tfadakd.Distiller(student or mlp(1), teacher or mlp(0), nan_policy=nan_policy)
    model.compile(optimizer=tfadakd.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"], jit_compile=jit)
    return model


def cnn(size=8, classes=10, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


# ---------------------------------------------------------------------------- bad data
def test_wrong_image_size_is_refused_naming_both_shapes():
    model = tfadakd.Distiller(cnn(), cnn(seed=1))
    model.compile(optimizer="sgd")
    images = np.zeros((8, 10, 10, 3), "float32")
    data = tf.data.Dataset.from_tensor_slices((images, np.zeros(8, "int32"))).batch(4)
    with pytest.raises(ValueError, match=r"shape \(None, 10, 10, 3\).*expects inputs of shape \(None, 8, 8, 3\)"):
        model.fit(data, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\(None, 10, 10, 3\)"):
        model.evaluate(data, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 0


def test_integer_images_are_refused_with_a_hint_to_normalize():
    model = tfadakd.Distiller(cnn(), cnn(seed=1))
    model.compile(optimizer="sgd")
    images = np.zeros((8, 8, 8, 3), "uint8")
    with pytest.raises(ValueError, match=r"uint8 inputs.*float.*normalize.*tfadakd\.data\.load_cifar"):
        model.fit(images, np.zeros(8, "int32"), batch_size=4, epochs=1, verbose=0)


class Snapshots(keras.callbacks.Callback):
    """Records the student's weights after every batch that reaches the callbacks."""

    def __init__(self, student):
        super().__init__()
        self.student, self.weights = student, []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([w.copy() for w in self.student.get_weights()])


def assert_weights_equal(weights, student):
    for u, v in zip(weights, student.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_labels_out_of_range_stop_the_step_naming_the_valid_range():
    model = distiller()
    snapshots = Snapshots(model.student)
    for applied, bad in enumerate((5, -1), start=1):  # too large, then negative
        x, y = batches()
        y[20] = bad  # in the second batch
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"must be integers in \[0, 4\]") as info:
            model.fit(dataset(x, y), epochs=1, verbose=0, callbacks=[snapshots])
        assert f"[{bad}]" in str(info.value)
        # each time the first batch only: no update from the bad one
        assert int(model.optimizer.iterations.numpy()) == applied and len(snapshots.weights) == applied
        assert_weights_equal(snapshots.weights[-1], model.student)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 4\]"):
        model.evaluate(dataset(x, y), verbose=0)


def test_under_xla_a_bad_batch_is_not_applied_and_fit_raises_after_it():
    """XLA compiles assertions out: the step records the problem, `fit` raises right after the batch."""
    model = distiller(jit=True, teacher=mlp(0, poisoned=True))
    snapshots = Snapshots(model.student)
    x, y = batches(poison_batch=1)
    with pytest.raises(NonFiniteError, match=r"Non-finite teacher logits.*batch 2 of epoch 1.*not applied"):
        model.fit(dataset(x, y), epochs=1, verbose=0, callbacks=[snapshots])
    assert int(model.optimizer.iterations.numpy()) == 1 and len(snapshots.weights) == 1
    assert_weights_equal(snapshots.weights[0], model.student)
    x, y = batches()
    y[20] = 7
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 4\].*batch 2 of epoch 1 has labels from 0 to 7"):
        model.fit(dataset(x, y), epochs=1, verbose=0, callbacks=[snapshots])
    assert int(model.optimizer.iterations.numpy()) == 2 and len(snapshots.weights) == 2
    assert_weights_equal(snapshots.weights[1], model.student)


def test_nan_teacher_logits_raise_before_any_weight_update():
    x, y = batches(poison_batch=1)
    model = distiller(teacher=mlp(0, poisoned=True))
    snapshots = Snapshots(model.student)
    with pytest.raises(NonFiniteError, match=r"Non-finite teacher logits.*batch 2 of epoch 1.*not applied"):
        model.fit(dataset(x, y), epochs=1, verbose=0, callbacks=[snapshots])
    assert int(model.optimizer.iterations.numpy()) == 1
    assert len(snapshots.weights) == 1  # the guard raised before any other callback saw batch 2
    assert_weights_equal(snapshots.weights[0], model.student)
    with pytest.raises(NonFiniteError, match="skip_batch"):
        model.train_on_batch(x[16:32], y[16:32])
    assert int(model.optimizer.iterations.numpy()) == 1
    assert_weights_equal(snapshots.weights[0], model.student)
    model.train_on_batch(x[:16], y[:16])  # the error was cleared: training can go on
    assert int(model.optimizer.iterations.numpy()) == 2


def test_skip_batch_skips_and_counts_nan_teacher_batches():
    x, y = batches(poison_batch=1)
    model = distiller(nan_policy="skip_batch", teacher=mlp(0, poisoned=True))
    snapshots = Snapshots(model.student)
    history = model.fit(dataset(x, y), epochs=2, verbose=0, callbacks=[snapshots]).history
    assert history["skipped_batches"] == [1.0, 1.0]  # counted per epoch
    assert int(model.optimizer.iterations.numpy()) == 4  # 2 of 3 batches per epoch
    assert all(np.isfinite(v).all() for v in history.values())
    for epoch in range(2):  # batch 2 changed nothing; batches 1 and 3 trained
        first, second, third = snapshots.weights[3 * epoch: 3 * epoch + 3]
        for u, v in zip(first, second):
            np.testing.assert_array_equal(u, v)
        assert not np.array_equal(second[0], third[0])


def test_diverged_student_loss_follows_the_same_policy():
    x, y = batches(poison_batch=2)
    model = distiller(student=mlp(1, poisoned=True))  # finite teacher, NaN student logits on batch 3
    with pytest.raises(NonFiniteError, match=r"Non-finite training loss.*batch 3 of epoch 1"):
        model.fit(dataset(x, y), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert not cb.non_finite_variables(model.student.weights + model.optimizer.variables)


def test_nan_policy_is_validated_and_saved_in_the_config():
    with pytest.raises(ValueError, match="nan_policy must be one of 'raise', 'skip_batch', got 'ignore'"):
        tfadakd.Distiller(mlp(1), mlp(0), nan_policy="ignore")
    model = tfadakd.Distiller(mlp(1), mlp(0), nan_policy="skip_batch")
    assert model.get_config()["nan_policy"] == "skip_batch"
    assert tfadakd.Distiller.from_config(model.get_config()).nan_policy == "skip_batch"
    assert tfadakd.Distiller(mlp(1), mlp(0)).nan_policy == "raise"


# ---------------------------------------------------------------------------- runs and checkpoints
def make(nan_policy="raise"):
    return distiller(nan_policy=nan_policy)


def run(model, run_dir, epochs, **kwargs):
    x, y = batches()
    kwargs.setdefault("model_to_save", model.student if isinstance(model, tfadakd.Distiller) else model)
    return fit_run(model, dataset(x, y), dataset(x, y), run_dir, epochs=epochs, verbose=0,
                   temperature_batches=0, **kwargs)


def run_files(run_dir):
    names = ["student_best.keras", "student_final.keras", "metrics.csv", "checkpoints/state.json"]
    names += [f"checkpoints/{n}" for n in os.listdir(run_dir / "checkpoints") if n.endswith(".h5")]
    return {n: (run_dir / n).read_bytes() for n in names}


class Poison(keras.callbacks.Callback):
    """Writes NaN into the student at the end of epoch `at` (before the savers see it)."""

    def __init__(self, student, at):
        super().__init__()
        self.student, self.at = student, at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            kernel = self.student.layers[-1].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


class AtEpochBegin(keras.callbacks.Callback):
    def __init__(self, epoch, fn):
        super().__init__()
        self.epoch, self.fn = epoch, fn

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.fn()


def test_nan_weights_are_never_written_over_good_checkpoints(tmp_path):
    model = make()
    before = {}
    record = AtEpochBegin(1, lambda: before.update(run_files(tmp_path)))  # the good files of epoch 1
    with pytest.raises(NonFiniteError, match=r"After epoch 2 .*NaN or Inf .*was not written.*kept"):
        run(model, tmp_path, epochs=2, callbacks=[record, Poison(model.student, at=1)])
    assert run_files(tmp_path) == before  # models, log and checkpoint untouched
    assert cb.ResumeCheckpoint(tmp_path / "checkpoints").restore(make()) == 1
    resume = cb.ResumeCheckpoint(tmp_path / "direct")  # the callback alone refuses too
    resume.set_model(model)
    with pytest.raises(NonFiniteError, match="still names the last good one"):
        resume.on_epoch_end(0)
    assert not os.listdir(tmp_path / "direct")


def test_diverging_plain_model_stops_at_the_batch_before_writing(tmp_path):
    x, y = batches()
    x[20, 1] = np.nan
    # A linear model: a fused MatMul+ReLU kernel (oneDNN, on some CPUs) maps NaN to 0, which keeps the
    # loss finite while the weights turn NaN (then the epoch-end weight check stops the run instead).
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(NonFiniteError, match=r"training loss became nan at batch 2 of epoch 1.*Nothing was written"):
        fit_run(model, dataset(x, y), dataset(x, y), tmp_path, epochs=1, verbose=0)
    assert not (tmp_path / "checkpoints" / "state.json").exists()
    assert not (tmp_path / "student_final.keras").exists()


def test_disk_full_while_saving_keeps_the_previous_files_valid(tmp_path, monkeypatch):
    x, _ = batches()
    good = {}

    def disk_full_after_epoch_1(original):
        def write(path, *args, **kwargs):
            if not good:  # epoch 1: the disk still has room
                return original(path, *args, **kwargs)
            original(path, *args, **kwargs)
            with open(path, "r+b") as f:  # half the file made it to disk
                f.truncate(os.path.getsize(path) // 2)
            raise OSError(errno.ENOSPC, "No space left on device")

        return write

    class HalfWritten:  # a file on a disk that fills up halfway through the write
        def __init__(self, path, mode):
            self.file = open(path, mode)

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        if good and "checkpoints" in str(path) and "w" in mode:
            return HalfWritten(path, mode)
        return open(path, mode, *args, **kwargs)

    for writer in ("save", "checkpoint"):  # SaveModel's student files, then ResumeCheckpoint's
        model = make()
        if writer == "save":
            model.student.save = disk_full_after_epoch_1(model.student.save)
        else:  # the checkpoint's bytes go through tfadakd.files' own writes
            monkeypatch.setattr(tfadakd.files, "open", open_on_a_full_disk, raising=False)
        record = AtEpochBegin(1, lambda: good or good.update(run_files(tmp_path)))
        with pytest.raises(OSError, match=r"Could not write .*\(No space left on device\); its previous") as info:
            run(model, tmp_path, epochs=2, callbacks=[record])
        monkeypatch.undo()
        assert info.value.errno == errno.ENOSPC
        after = run_files(tmp_path)
        unchanged = ["checkpoints/state.json", "checkpoints/epoch-0.weights.h5"]
        if writer == "save":  # (when the checkpoint write fails, the student files are already new)
            unchanged += ["student_best.keras", "student_final.keras"]
        for name in unchanged:
            assert after[name] == good[name], name
        assert not list(tmp_path.glob("**/*.tmp-*"))
        restored = make()  # disk space freed: the run resumes from epoch 1's checkpoint
        assert cb.ResumeCheckpoint(tmp_path / "checkpoints").restore(restored) == 1
        if writer == "save":  # the best model (of epoch 1) still loads and predicts like the checkpoint
            best = keras.models.load_model(tmp_path / "student_best.keras")
            np.testing.assert_allclose(best.predict(x, verbose=0), restored.student.predict(x, verbose=0), rtol=1e-6)


def truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def test_truncated_resume_checkpoint_names_the_folder_to_remove(tmp_path):
    run(make(), tmp_path, epochs=1, keep_checkpoints=1)
    truncate(tmp_path / "checkpoints" / "epoch-0.weights.h5")
    with pytest.raises(cb.CheckpointError, match=r"missing or damaged.*Remove the folder .*checkpoints"):
        run(make(), tmp_path, epochs=2)
    (tmp_path / "checkpoints" / "state.json").write_text("{trunc")
    with pytest.raises(cb.CheckpointError, match=r"state.json is damaged.*Remove the folder"):
        run(make(), tmp_path, epochs=2)


def test_damaged_newest_checkpoint_falls_back_to_the_older_one(tmp_path):
    snapshots = []

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.student.get_weights())

    run(make(), tmp_path, epochs=2, callbacks=[Keep()])
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch-0.weights.h5", "epoch-1.weights.h5", "state.json"]
    truncate(tmp_path / "checkpoints" / "epoch-1.weights.h5")
    restored = make()
    with pytest.warns(UserWarning, match="resuming from the older .*epoch-0.weights.h5"):
        assert cb.ResumeCheckpoint(tmp_path / "checkpoints").restore(restored) == 1
    assert_weights_equal(snapshots[0], restored.student)


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing catches it."""


def test_kill_during_a_checkpoint_write_resumes_from_the_previous_epoch(tmp_path, monkeypatch):
    save = cb.ResumeCheckpoint.on_epoch_end

    def die_while_writing_epoch_1(self, epoch, logs=None):
        if epoch < 1:
            return save(self, epoch, logs)
        # What kill -9 leaves: half of the new checkpoint under its temporary name (no cleanup ran),
        # state.json still naming epoch 0, metrics.csv and student_final.keras already at epoch 1.
        complete = (tmp_path / "checkpoints" / "epoch-0.weights.h5").read_bytes()
        (tmp_path / "checkpoints" / "epoch-1.tmp-999999.weights.h5").write_bytes(complete[: len(complete) // 2])
        (tmp_path / "student_final.tmp-999999.keras").write_bytes(b"PK\x03\x04 half a zip")
        raise Killed()

    monkeypatch.setattr(cb.ResumeCheckpoint, "on_epoch_end", die_while_writing_epoch_1)
    with pytest.raises(Killed):
        run(make(), tmp_path, epochs=2)
    monkeypatch.undo()
    assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["epoch"] == 0
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1]

    results = run(make(), tmp_path, epochs=2)
    assert results["resumed_from_epoch"] == 1 and results["epochs"] == 2  # epoch 1 trained again
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1]
    assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["epoch"] == 1
    assert not list(tmp_path.glob("**/*.tmp-*"))


# ---------------------------------------------------------------------------- unsafe files
def lambda_teacher(size=8, classes=10):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Lambda(lambda t: t * 0.5)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same")(x))
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


def test_saved_distiller_with_a_lambda_teacher_needs_explicit_unsafe_loading(tmp_path):
    path = tmp_path / "distiller.keras"
    tfadakd.Distiller(cnn(), lambda_teacher()).save(path)
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.models.load_model(path)
    assert isinstance(keras.models.load_model(path, safe_mode=False), tfadakd.Distiller)


def test_library_and_apps_never_turn_safe_mode_off_implicitly():
    allowed = {("apps/distill.py", "safe_mode=not unsafe")}
    found = set()
    for path in sorted((REPO / "tfadakd").rglob("*.py")) + sorted((REPO / "apps").glob("*.py")):
        for line in path.read_text().splitlines():
            for needle in ("safe_mode", "enable_unsafe_deserialization"):
                if needle in line and not line.lstrip().startswith("#"):
                    found.add((str(path.relative_to(REPO)), line.strip()))
    assert {(p, l) for p, l in found if not any(p == a and s in l for a, s in allowed)} == set()
    assert any(p == "apps/distill.py" for p, _ in found)


# ---------------------------------------------------------------------------- the apps
TINY = ["--dataset=cifar10", "--train_examples=64", "--test_examples=64", "--batch_size=64", "--verbose=0",
        "--lr_milestones=1", "--epochs=1", "--teacher=resnet8", "--student=resnet8"]

DRIVER = textwrap.dedent(
    """
    # Runs the apps' main() after absl's flag parsing, case after case, in one process: what
    # `python apps/<app>.py <args>` does, without paying TensorFlow's start-up for every case.
    import contextlib, io, json, sys, time, traceback
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    import common, distill, train_teacher
    from absl import flags
    results = []


    def mirrored_nan():
        # nan_policy under MirroredStrategy (2 logical CPUs) against one device: a poisoned example in
        # the second replica's half of batch 2.
        import keras, numpy as np, tfadakd

        keras.mixed_precision.set_global_policy("float32")  # the apps run before may have set bf16

        def mlp(seed, poisoned=False):
            keras.utils.set_random_seed(seed)
            inputs = keras.Input((6,))
            logits = keras.layers.Dense(5)(keras.layers.Dense(8, activation="relu")(inputs))
            if poisoned:
                logits = logits + 0.0 * keras.ops.sqrt(1e3 - inputs[:, :1])
            return keras.Model(inputs, logits)

        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(48, 6)).astype("float32"), rng.integers(0, 5, 48)
        x[27, 0] = 1e4
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)
        out = {}
        for name, strategy in (("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
                               ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
            for policy in ("skip_batch", "raise") if name == "mirrored" else ("skip_batch",):
                with strategy.scope():
                    model = tfadakd.Distiller(mlp(1), mlp(0, poisoned=True), nan_policy=policy)
                    model.compile(optimizer=tfadakd.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
                try:
                    logs = model.fit(data, epochs=2, verbose=0, shuffle=False).history
                except tfadakd.distiller.NonFiniteError as error:
                    logs = {"error": str(error)}
                out[f"{name}-{policy}"] = {"logs": logs, "iterations": int(model.optimizer.iterations.numpy()),
                                           "weights": [w.tolist() for w in model.student.get_weights()]}
        return out


    for step in json.load(sys.stdin):  # timings go to the real stderr, shown if the fixture fails
        start = time.perf_counter()
        if step[0] == "mirrored_nan":
            results.append(mirrored_nan())
            print(f"{step[0]}: {time.perf_counter() - start:.1f} s", file=sys.__stderr__)
            continue
        if step[0] == "truncate":
            data = open(step[1], "rb").read()
            open(step[1], "wb").write(data[: len(data) // 2])
            continue
        app, args = step
        sys.argv = [app]  # common.Config.from_flags() reads the app's flags by module name
        flags.FLAGS.unparse_flags()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                argv = common.parse_flags([app + ".py", *args])
                {"distill": distill, "train_teacher": train_teacher}[app].main(argv)
                code = 0
            except SystemExit as exit:
                code = exit.code
            except BaseException:
                traceback.print_exc()
                code = "uncaught exception"
        results.append({"code": code, "stderr": err.getvalue(), "stdout": out.getvalue()})
        print(f"{app} {args[:2]}: {time.perf_counter() - start:.1f} s", file=sys.__stderr__)
    print("RESULTS" + json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def apps(tfds_data_dir, tmp_path_factory):
    """Builds the bad inputs, runs every app case in one subprocess; returns (results by name, root)."""
    root = tmp_path_factory.mktemp("apps")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    plain = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs)))
    plain.save(root / "teacher.keras")
    shutil.copy(root / "teacher.keras", root / "truncated.keras")
    truncate(root / "truncated.keras")
    lambda_teacher(size=32).save(root / "lambda.keras")
    (root / "blocker").write_text("a file where a folder should be")
    partial = root / "partial" / "cifar10" / "3.0.2"
    partial.mkdir(parents=True)
    for name in ("dataset_info.json", "features.json", "label.labels.txt"):
        shutil.copy(Path(tfds_data_dir) / "cifar10" / "3.0.2" / name, partial)
    out = f"--output_dir={root / 'out'}"
    cases = {
        "truncated_teacher": ("distill", [f"--teacher_path={root / 'truncated.keras'}", out, *TINY]),
        "lambda_teacher": ("distill", [f"--teacher_path={root / 'lambda.keras'}", out, *TINY]),
        "lambda_teacher_unsafe": ("distill", [f"--teacher_path={root / 'lambda.keras'}", "--unsafe_teacher",
                                              "--nan_policy=skip_batch", "--run_name=unsafe", out, *TINY]),
        "truncate": ("truncate", str(root / "out" / "cifar10" / "unsafe" / "checkpoints" / "epoch-0.weights.h5")),
        "damaged_resume": ("distill", [f"--teacher_path={root / 'lambda.keras'}", "--unsafe_teacher",
                                       "--nan_policy=skip_batch", "--run_name=unsafe", out, *TINY[:-3],
                                       "--epochs=2", "--teacher=resnet8", "--student=resnet8"]),
        "unwritable_distill": ("distill", [f"--teacher_path={root / 'teacher.keras'}",
                                           f"--output_dir={root / 'blocker' / 'out'}", *TINY]),
        "unwritable_teacher": ("train_teacher", ["--model=resnet8", f"--output_dir={root / 'blocker' / 'out'}", *TINY]),
        "replicas": ("distill", [f"--teacher_path={root / 'teacher.keras'}", out, "--strategy=mirrored",
                                 "--num_devices=2", *TINY, "--batch_size=63"]),
        "too_small": ("distill", [f"--teacher_path={root / 'teacher.keras'}", out, "--strategy=mirrored",
                                  "--num_devices=2", *TINY, "--train_examples=32", "--run_name=too_small"]),
        "both_weights_zero": ("distill", ["--student_loss_weight=0", "--distillation_loss_weight=0", out, *TINY]),
        "run_name_escape": ("distill", ["--run_name=../../escaped", out, *TINY]),
        "cache_is_a_file": ("distill", [f"--teacher_cache={root / 'blocker'}", out, *TINY]),
        "partial_data": ("distill", [f"--teacher_path={root / 'teacher.keras'}", out,
                                     f"--data_dir={root / 'partial'}", *TINY]),
        "unknown_teacher": ("distill", ["--teacher=resnet9", out, *TINY[:-2]]),
        "unknown_model": ("train_teacher", ["--model=wrn", out, *TINY[:-2]]),
        "mirrored_nan": ("mirrored_nan",),
    }
    steps = [list(step) for step in cases.values()]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFDS_DATA_DIR=tfds_data_dir)
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(REPO / "apps")], input=json.dumps(steps),
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULTS"))
    results = iter(json.loads(line[len("RESULTS"):]))
    return {name: next(results) for name, step in cases.items() if step[0] != "truncate"}, root


def assert_clean_exit(result, *needles):
    assert result["code"] == 2, result
    assert "Traceback" not in result["stderr"], result["stderr"][-3000:]
    for needle in needles:
        assert needle in result["stderr"], f"{needle!r} not in:\n{result['stderr'][-3000:]}"


def test_app_truncated_teacher_file_exits_2(apps):
    results, root = apps
    assert_clean_exit(results["truncated_teacher"], "ERROR: Cannot load the teacher", str(root / "truncated.keras"),
                      "not a readable .keras archive: it is truncated or damaged")
    assert "File not found" not in results["truncated_teacher"]["stderr"]


def test_app_refuses_a_lambda_teacher_unless_unsafe_teacher(apps):
    results, root = apps
    assert_clean_exit(results["lambda_teacher"], "Cannot load the teacher", "Lambda", "--unsafe_teacher")
    unsafe = results["lambda_teacher_unsafe"]
    assert unsafe["code"] == 0, unsafe["stderr"][-3000:]
    run = root / "out" / "cifar10" / "unsafe"
    assert json.loads((run / "config.json").read_text())["nan_policy"] == "skip_batch"
    assert "skipped_batches" in (run / "metrics.csv").read_text().splitlines()[0].split(",")


def test_app_damaged_resume_checkpoint_names_the_folder_to_remove(apps):
    results, root = apps
    folder = root / "out" / "cifar10" / "unsafe" / "checkpoints"
    assert_clean_exit(results["damaged_resume"], "missing or damaged", f"Remove the folder {folder}")


def test_app_unwritable_output_directory_exits_2(apps):
    results, root = apps
    for name in ("unwritable_distill", "unwritable_teacher"):
        assert_clean_exit(results[name], "is not writable", str(root / "blocker" / "out"), "--output_dir")


def test_app_training_data_smaller_than_one_global_batch_exits_2_with_the_counts(apps):
    results, root = apps
    assert_clean_exit(results["too_small"], "32 examples make no batch of 64", "--train_examples=32",
                      "--batch_size=64")
    assert not (root / "out" / "cifar10" / "too_small").exists()


def test_app_batch_size_not_divisible_by_replicas_exits_2(apps):
    results, _ = apps
    assert_clean_exit(results["replicas"], "global batch size 63", "number of replicas (2)", "--batch_size=63")


def test_app_refuses_a_run_name_outside_the_output_dir_and_a_cache_that_is_a_file(apps):
    results, root = apps
    assert_clean_exit(results["run_name_escape"], "--run_name=../../escaped would write outside --output_dir")
    assert not (root / "escaped").exists() and not (root.parent / "escaped").exists()
    assert_clean_exit(results["cache_is_a_file"], f"--teacher_cache={root / 'blocker'} is a file: the cache is a folder")


def test_app_both_loss_weights_zero_exits_2(apps):
    results, _ = apps
    assert_clean_exit(results["both_weights_zero"], "--student_loss_weight and --distillation_loss_weight")


def test_app_unknown_teacher_or_model_name_lists_the_valid_ones(apps):
    results, _ = apps
    assert_clean_exit(results["unknown_teacher"], "Unknown --teacher 'resnet9'. Valid names: ", "resnet32x4")
    assert_clean_exit(results["unknown_model"], "Unknown --model 'wrn'", "wrn_40_2")


def test_partial_tfds_data_dir_error_names_the_missing_file(tfds_data_dir, tmp_path):
    """load_cifar refuses a prepared data set whose data files are missing, naming folder and files."""
    partial = tmp_path / "cifar10" / "3.0.2"
    partial.mkdir(parents=True)
    for name in ("dataset_info.json", "features.json", "label.labels.txt"):
        shutil.copy(Path(tfds_data_dir) / "cifar10" / "3.0.2" / name, partial)
    with pytest.raises(tfadakd.data.DataNotFoundError) as info:
        tfadakd.data.load_cifar("cifar10", "test", data_dir=tmp_path, download=False, num_examples=8)
    assert f"in {partial} is incomplete" in str(info.value) and "cifar10-test.tfrecord" in str(info.value)


def test_app_partial_tfds_data_dir_names_the_folder_and_remedies(apps):
    results, root = apps
    folder = root / "partial" / "cifar10" / "3.0.2"
    assert_clean_exit(results["partial_data"], f"in {folder} is incomplete", "cifar10-train.tfrecord",
                      f"Remove {folder}", "--manual_dir", "--data_dir")


def test_nan_policy_under_mirrored_strategy_matches_one_device(apps):
    results, _ = apps
    runs = results["mirrored_nan"]
    one, mirrored = runs["one-skip_batch"], runs["mirrored-skip_batch"]
    assert mirrored["logs"]["skipped_batches"] == [1.0, 1.0] and mirrored["iterations"] == 4
    for key, values in one["logs"].items():
        np.testing.assert_allclose(mirrored["logs"][key], values, rtol=1e-5, err_msg=key)
    for a, b in zip(one["weights"], mirrored["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    raised = runs["mirrored-raise"]
    assert "Non-finite teacher logits" in raised["logs"]["error"] and "batch 2 of epoch 1" in raised["logs"]["error"]
    assert raised["iterations"] == 1


def run_program(app, *args):
    return subprocess.run([sys.executable, str(REPO / "apps" / app), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_app_unknown_flag_in_a_flag_file_names_flag_and_file(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--epochs=2\n--no_such_option=3\n")
    for app in ("distill.py", "train_teacher.py"):
        proc = run_program(app, f"--flagfile={flagfile}", "--output_dir=/nonexistent-never-written")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "Unknown command line flag 'no_such_option'" in proc.stderr and str(flagfile) in proc.stderr


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--student_loss_weight=-1", "flag --student_loss_weight=-1: -1.0 is not a non-negative number"),
        ("--distillation_loss_weight=-0.5", "flag --distillation_loss_weight=-0.5: -0.5 is not a non-negative"),
        ("--batch_size=0", "flag --batch_size=0: 0 is not a positive integer"),
        ("--teacher_epochs=-2", "flag --teacher_epochs=-2: -2 is not a positive integer"),
        ("--nan_policy=ignore", "flag --nan_policy=ignore: value should be one of <raise|skip_batch>"),
    ],
)
def test_app_out_of_range_flags_exit_2_naming_the_flag(flag, message):
    proc = run_program("distill.py", flag, "--output_dir=/nonexistent-never-written")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr[-2000:]
