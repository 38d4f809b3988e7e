"""Run directories: resume equals an uninterrupted run, files are written atomically, logs are consistent."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfadakd
from tfadakd import callbacks as cb
from tfadakd.runs import fit_run, read_metrics


def mlp(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Dense(8, activation="relu")(inputs)))


def datasets():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(48, 6)).astype("float32"), rng.integers(0, 5, 48)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    return ds, ds


def make_distiller():
    distiller = tfadakd.Distiller(mlp(1), mlp(0))
    distiller.compile(optimizer=tfadakd.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    return distiller


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    train, test = datasets()
    straight = make_distiller()
    fit_run(straight, train, test, tmp_path / "straight", epochs=3, model_to_save=straight.student, verbose=0)

    first = make_distiller()
    fit_run(first, train, test, tmp_path / "cut", epochs=2, model_to_save=first.student, verbose=0)
    resumed = make_distiller()  # a new process would build fresh models
    results = fit_run(resumed, train, test, tmp_path / "cut", epochs=3, model_to_save=resumed.student, verbose=0)

    assert results["resumed_from_epoch"] == 2 and results["epochs"] == 3
    assert int(resumed.optimizer.iterations.numpy()) == 9 and float(resumed.epoch.numpy()) == 2.0
    for a, b in zip(straight.student.get_weights(), resumed.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    rows_straight, rows_cut = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "cut")
    assert [r["epoch"] for r in rows_cut] == [0, 1, 2]
    np.testing.assert_allclose([r["loss"] for r in rows_cut], [r["loss"] for r in rows_straight], rtol=1e-6)
    files = lambda d: sorted(f for f in os.listdir(d) if f != "tensorboard")  # noqa: E731
    assert files(tmp_path / "cut") == files(tmp_path / "straight")
    assert {"config.json"} - set(files(tmp_path / "cut"))  # no config given: none written
    for name in ("metrics.csv", "results.json", "student_best.keras", "student_final.keras", "checkpoints"):
        assert name in files(tmp_path / "cut")


def test_finished_run_is_not_trained_again(tmp_path):
    train, test = datasets()
    model = make_distiller()
    first = fit_run(model, train, test, tmp_path, epochs=1, verbose=0)
    again = make_distiller()
    second = fit_run(again, train, test, tmp_path, epochs=1, verbose=0)
    assert second["best_top1"] == first["best_top1"] and second["resumed_from_epoch"] == 1
    assert int(again.optimizer.iterations.numpy()) == 3  # restored, not retrained
    assert len(read_metrics(tmp_path)) == 1


def test_checkpoint_of_another_model_is_refused_with_the_folder_to_remove(tmp_path):
    train, test = datasets()
    fit_run(make_distiller(), train, test, tmp_path, epochs=1, verbose=0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    bigger = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Dense(32)(inputs)))
    other = tfadakd.Distiller(bigger, mlp(0))
    other.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="differ in number or shapes.*remove .*checkpoints"):
        fit_run(other, train, test, tmp_path, epochs=2, verbose=0)


def test_atomic_save_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("previous")

    def failing_writer(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        cb.atomic_save(failing_writer, path)
    assert path.read_text() == "previous"
    assert os.listdir(tmp_path) == ["model.keras"]  # no temporary file left behind


def test_unwritable_output_directory_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable.*--output_dir"):
        fit_run(make_distiller(), *datasets(), run_dir=blocker / "run", epochs=1, verbose=0)


def test_csv_logger_keeps_one_row_per_epoch_across_restarts(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = cb.CSVLogger(path)
    logger.on_train_begin()
    for epoch in range(3):
        logger.on_epoch_begin(epoch)
        logger.on_epoch_end(epoch, {"loss": float(epoch)})
    restarted = cb.CSVLogger(path)  # killed during epoch 2's checkpoint: epoch 2 is trained again
    restarted.on_train_begin()
    restarted.on_epoch_begin(2)
    restarted.on_epoch_end(2, {"loss": 20.0, "extra": 1.0})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["loss"]) for r in rows] == [("0", "0.0"), ("1", "1.0"), ("2", "20.0")]
    assert rows[0]["extra"] == "" and rows[2]["extra"] == "1.0"


def test_save_model_keeps_the_best_across_restarts(tmp_path):
    model = mlp(0)
    best = str(tmp_path / "best.keras")
    saver = cb.SaveModel(model, best_path=best, monitor="val_accuracy")
    saver.set_model(model)
    saver.on_epoch_end(0, {"val_accuracy": 0.5})
    saver.on_epoch_end(1, {"val_accuracy": 0.4})
    restarted = cb.SaveModel(model, best_path=best, monitor="val_accuracy")
    assert (restarted.best, restarted.best_epoch) == (0.5, 0)
    restarted.on_epoch_end(2, {"val_accuracy": float("nan")})
    assert restarted.best == 0.5
    restarted.on_epoch_end(3, {"val_accuracy": 0.7})
    assert cb.read_json(best + ".json")["epoch"] == 3


def test_temperature_monitor_reports_the_losses_own_temperatures(tmp_path):
    train, test = datasets()
    distiller = make_distiller()
    rows = []

    class Capture(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rows.append(dict(logs))

    distiller.fit(train, epochs=1, verbose=0, callbacks=[cb.TemperatureMonitor(test, 3), Capture()])
    x = np.concatenate([b[0].numpy() for b in test])
    t, s = distiller.teacher.predict(x, verbose=0), distiller.student.predict(x, verbose=0)
    _, temperature = distiller.distillation_loss(t, s, return_temperature=True)
    temperature = temperature.numpy().ravel()
    np.testing.assert_allclose(rows[0]["temperature_p50"], np.percentile(temperature, 50), rtol=1e-5)
    np.testing.assert_allclose(rows[0]["temperature_max"], temperature.max(), rtol=1e-5)
    assert rows[0]["temperature_min"] <= rows[0]["temperature_p05"] <= rows[0]["temperature_p95"]


def test_validation_chooses_the_epoch_and_the_test_set_is_only_reported(tmp_path):
    train, _ = datasets()
    rng = np.random.default_rng(1)
    x_test, y_test = rng.normal(size=(32, 6)).astype("float32"), rng.integers(0, 5, 32)
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(16)
    distiller = make_distiller()
    results = fit_run(distiller, train, train.take(1), tmp_path, epochs=4, model_to_save=distiller.student,
                      verbose=0, test_data=test, temperature_batches=0)

    rows = read_metrics(tmp_path)
    val, test_acc = [r["val_accuracy"] for r in rows], [r["test_accuracy"] for r in rows]
    chosen = int(np.argmax(val))  # the first epoch with the best validation accuracy
    assert results["best_epoch"] == chosen and results["best_top1"] == pytest.approx(100 * val[chosen])
    assert results["test_top1_selected"] == pytest.approx(100 * test_acc[chosen])
    assert results["test_top1_last"] == pytest.approx(100 * test_acc[-1])
    # The last row's test accuracy is the final student's, computed here independently.
    predictions = np.argmax(distiller.student.predict(x_test, verbose=0), axis=-1)
    assert test_acc[-1] == pytest.approx(np.mean(predictions == y_test))
    assert "test_loss" in rows[0] and val != test_acc
    saved = cb.read_json(tmp_path / "student_best.keras.json")
    assert saved["epoch"] == chosen and saved["monitor"] == "val_accuracy"


def test_without_test_data_no_test_columns_are_reported(tmp_path):
    train, test = datasets()
    distiller = make_distiller()
    results = fit_run(distiller, train, test, tmp_path, epochs=1, model_to_save=distiller.student, verbose=0)
    assert not any(k.startswith("test_") for k in results)
    assert not any(k.startswith("test_") for k in read_metrics(tmp_path)[0])


def test_a_rerun_with_other_settings_is_refused_and_nothing_is_overwritten(tmp_path):
    train, test = datasets()
    config = {"learning_rate": 0.1, "epochs": 2, "verbose": 0, "milestones": [1]}
    fit_run(make_distiller(), train, test, tmp_path, epochs=2, verbose=0, config=config)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    changed = dict(config, learning_rate=0.9)
    with pytest.raises(tfadakd.runs.RunConflictError, match=r"learning_rate: 0.1 -> 0.9.*Nothing was trained"):
        fit_run(make_distiller(), train, test, tmp_path, epochs=2, verbose=0, config=changed)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    # More epochs (or another verbosity) continue the same run.
    results = fit_run(make_distiller(), train, test, tmp_path, epochs=3, verbose=0, config=dict(config, epochs=3))
    assert results["epochs"] == 3 and results["resumed_from_epoch"] == 2


def test_one_process_per_run_directory(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "f.write('process 4242'); f.flush(); print('locked', flush=True); time.sleep(60)"), str(tmp_path / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        train, test = datasets()
        with pytest.raises(tfadakd.runs.RunConflictError, match="in use by process 4242: one process per run"):
            fit_run(make_distiller(), train, test, tmp_path, epochs=1, verbose=0)
        assert not (tmp_path / "metrics.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    fit_run(make_distiller(), train, test, tmp_path, epochs=1, verbose=0)  # released with its process
    assert (tmp_path / "results.json").exists()


def test_a_finished_run_rebuilds_a_missing_results_json(tmp_path):
    train, test = datasets()
    fit_run(make_distiller(), train, test, tmp_path, epochs=2, verbose=0)
    original = cb.read_json(tmp_path / "results.json")
    os.remove(tmp_path / "results.json")
    results = fit_run(make_distiller(), train, test, tmp_path, epochs=2, verbose=0)
    assert cb.read_json(tmp_path / "results.json")["best_top1"] == original["best_top1"]
    assert results["epochs"] == 2


def test_empty_training_data_is_refused_before_training(tmp_path):
    _, test = datasets()
    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 6), "float32"), np.zeros((0,), "int64"))).batch(16)
    with pytest.raises(ValueError, match="yields no batch"):
        fit_run(make_distiller(), empty, test, tmp_path, epochs=2, verbose=0)
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "metrics.csv").exists()
