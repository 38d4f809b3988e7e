"""Resume checkpoints that never lie (issue 18): verified by SHA-256, a damaged state refused, leftovers
removed, and a stop signal that keeps every finished batch.

Tiny MLPs on 48 examples (3 batches of 16) through `tfadakd.runs.fit_run`, in-process; the signals are
real (`os.kill` on this process), sent from inside a training batch.
"""

import json
import os
import shutil
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfadakd
from tfadakd import callbacks as cb
from tfadakd.checkpoints import checkpoint_name, position_of
from tfadakd.distiller import NonFiniteError
from tfadakd.runs import fit_run, read_metrics
from test_reliability import assert_weights_equal, batches, dataset, distiller, make, mlp, run


def state_of(run_dir):
    return json.loads((run_dir / "checkpoints" / "state.json").read_text())


def snapshots_of(model):
    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            kept.append(model.student.get_weights())

    kept = []
    return kept, Keep()


# ---------------------------------------------------------------------------- verified checkpoints
def test_checkpoint_names_and_positions_round_trip():
    assert checkpoint_name(3) == "epoch-3.weights.h5" and position_of("epoch-3.weights.h5") == (4, 0)
    assert checkpoint_name(3, 7) == "epoch-3-step-7.weights.h5" and position_of("epoch-3-step-7.weights.h5") == (3, 7)
    with pytest.raises(ValueError, match="not a checkpoint file name"):
        position_of("epoch-3.keras")


def test_state_records_each_kept_checkpoints_sha256(tmp_path):
    run(make(), tmp_path, epochs=3)
    state = state_of(tmp_path)
    assert state["files"] == ["epoch-1.weights.h5", "epoch-2.weights.h5"] and state["step"] == 0
    for name in state["files"]:
        assert state["sha256"][name] == cb.file_sha256(tmp_path / "checkpoints" / name), name
    assert set(state["sha256"]) == set(state["files"])  # the pruned epoch-0 digest went with its file


def test_a_checkpoint_changed_after_it_was_written_is_never_loaded(tmp_path):
    model = make()
    snapshots, keep = snapshots_of(model)
    run(model, tmp_path, epochs=2, callbacks=[keep])
    folder = tmp_path / "checkpoints"
    # Another valid weights file in its place (e.g. overwritten in place): it would load without complaint.
    shutil.copy(folder / "epoch-0.weights.h5", folder / "epoch-1.weights.h5")
    restored = make()
    with pytest.warns(UserWarning, match=r"epoch-1.weights.h5: its SHA-256 is .* state.json recorded .*resuming "
                                         r"from the older .*epoch-0.weights.h5"):
        assert cb.ResumeCheckpoint(folder).restore(restored) == 1
    assert_weights_equal(snapshots[0], restored.student)

    state = state_of(tmp_path)  # with no older one kept, the run is refused naming the folder
    state["files"] = ["epoch-1.weights.h5"]
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(cb.CheckpointError, match=r"changed since it was written.*SHA-256.*Remove the folder"):
        cb.ResumeCheckpoint(folder).restore(make())


@pytest.mark.parametrize("content, reason", [
    ({"epoch": 0}, r"no checkpoint file named: 'file' is None"),
    ({}, r"no checkpoint file named"),
    ([1, 2], r"a JSON list, not an object"),
    ({"epoch": "0", "file": "epoch-0.weights.h5"}, r"'epoch' is '0', not an integer"),
    ({"epoch": 0, "file": "../x.weights.h5"}, r"no checkpoint file named: 'file' is '../x.weights.h5'"),
])
def test_a_state_json_that_cannot_be_ours_is_refused_not_restarted(tmp_path, content, reason):
    run(make(), tmp_path, epochs=1)
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps(content))
    with pytest.raises(cb.CheckpointError, match=rf"state.json is damaged \({reason}.*Remove the folder"):
        run(make(), tmp_path, epochs=2)
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0]  # nothing trained over the old run


def test_a_pruned_checkpoint_left_by_a_kill_is_removed_on_resume(tmp_path):
    run(make(), tmp_path, epochs=3)
    folder = tmp_path / "checkpoints"
    leftover = folder / "epoch-0.weights.h5"  # killed after state.json named epochs 1-2, before the prune
    shutil.copy(folder / "epoch-1.weights.h5", leftover)
    assert cb.ResumeCheckpoint(folder, keep=2).restore(make()) == 3
    assert sorted(os.listdir(folder)) == ["epoch-1.weights.h5", "epoch-2.weights.h5", "state.json"]


# ---------------------------------------------------------------------------- skip_batch metrics
def test_skip_batch_metrics_leave_the_skipped_batch_out():
    x, y = batches(poison_batch=1)
    model = tfadakd.Distiller(mlp(1), mlp(0, poisoned=True), nan_policy="skip_batch")
    model.compile(optimizer=tfadakd.optimizers.SGD(0.0), metrics=["accuracy"])  # lr 0: the student stays fixed
    logs = model.fit(dataset(x, y), epochs=1, verbose=0).history
    predictions = model.student.predict(x, verbose=0).argmax(-1)
    applied = np.r_[0:16, 32:48]  # batches 0 and 2
    assert logs["skipped_batches"] == [1.0]
    assert logs["accuracy"][0] == pytest.approx(np.mean(predictions[applied] == y[applied]), abs=1e-6)
    assert logs["accuracy"][0] != pytest.approx(np.mean(predictions == y), abs=1e-6)  # the test can tell


def test_an_epoch_with_every_batch_skipped_is_reported_not_logged_as_perfect(tmp_path):
    x, y = batches()
    x[:, 0] = 1e4  # every example makes the teacher output NaN
    model = tfadakd.Distiller(mlp(1), mlp(0, poisoned=True), nan_policy="skip_batch")
    model.compile(optimizer=tfadakd.optimizers.SGD(0.1), metrics=["accuracy"])
    logs = model.fit(dataset(x, y), epochs=1, verbose=0).history
    assert logs["skipped_batches"] == [3.0]
    assert np.isnan(logs["loss"][0]) and np.isnan(logs["accuracy"][0]) and np.isnan(logs["distillation_loss"][0])

    with pytest.raises(NonFiniteError, match=r"All 3 batches of epoch 1 were skipped \(nan_policy='skip_batch'\): "
                                             r"nothing was trained"):
        fit_run(model, dataset(x, y), dataset(x, y), tmp_path, epochs=1, verbose=0, temperature_batches=0)
    assert not (tmp_path / "checkpoints" / "state.json").exists() and not (tmp_path / "metrics.csv").exists()


# ---------------------------------------------------------------------------- stop signals
def pipeline(x, y):
    examples = tf.data.Dataset.from_tensor_slices((x, y))
    return tfadakd.data.EpochPipeline(examples, len(x), batch_size=16, seed=3)


class SignalAt(keras.callbacks.Callback):
    """Sends `signum` to this process at the end of batch `batch` (0-based) of epoch `epoch`."""

    def __init__(self, epoch, batch, signum=signal.SIGTERM):
        super().__init__()
        self.epoch, self.batch, self.signum = epoch, batch, signum

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.signum)


def fit_pipeline(model, run_dir, epochs=3, callbacks=()):
    x, y = batches()
    return fit_run(model, pipeline(x, y), dataset(x, y), run_dir, epochs=epochs, verbose=0, temperature_batches=0,
                   model_to_save=model.student, callbacks=list(callbacks))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_checkpoints_mid_epoch_and_the_resumed_run_ends_with_the_uninterrupted_weights(
        tmp_path, signum):
    uninterrupted = make()
    fit_pipeline(uninterrupted, tmp_path / "whole")
    handler = signal.getsignal(signum)

    with pytest.raises(cb.TrainingInterrupted, match=rf"Stopped on {signal.Signals(signum).name} after batch 1 of "
                                                     r"epoch 2 .*Rerun the same command") as info:
        fit_pipeline(make(), tmp_path / "cut", callbacks=[SignalAt(epoch=1, batch=0, signum=signum)])
    assert info.value.signum == signum
    assert signal.getsignal(signum) is handler  # the previous handler is back
    state = state_of(tmp_path / "cut")
    assert (state["file"], state["epoch"], state["step"]) == ("epoch-1-step-1.weights.h5", 0, 1)
    assert state["files"] == ["epoch-0.weights.h5", "epoch-1-step-1.weights.h5"]
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut")] == [0]  # the cut epoch is not logged as done

    resumed = make()
    results = fit_pipeline(resumed, tmp_path / "cut")
    assert results["epochs"] == 3 and results["resumed_from_epoch"] == 1
    for a, b in zip(uninterrupted.student.weights + uninterrupted.optimizer.variables,
                    resumed.student.weights + resumed.optimizer.variables):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7, err_msg=a.path)
    assert sorted(os.listdir(tmp_path / "cut" / "checkpoints")) == [
        "epoch-1.weights.h5", "epoch-2.weights.h5", "state.json"]  # the mid-epoch file is gone


def test_a_signal_in_an_epochs_last_batch_lets_the_epoch_finish_then_stops(tmp_path):
    with pytest.raises(cb.TrainingInterrupted, match=r"Stopped on SIGTERM at the end of epoch 1, all of it saved"):
        fit_pipeline(make(), tmp_path, callbacks=[SignalAt(epoch=0, batch=2)])
    state = state_of(tmp_path)
    assert (state["file"], state["step"]) == ("epoch-0.weights.h5", 0)
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0] and (tmp_path / "student_final.keras").exists()


def test_a_signal_stops_a_run_on_unnamed_data_at_once_and_it_restarts_that_epoch(tmp_path):
    with pytest.raises(cb.TrainingInterrupted, match=r"after batch 1 of epoch 2, which a rerun trains again"):
        run(make(), tmp_path, epochs=3, callbacks=[SignalAt(epoch=1, batch=0)])
    state = state_of(tmp_path)
    assert (state["file"], state["step"]) == ("epoch-0.weights.h5", 0)
    assert run(make(), tmp_path, epochs=3)["resumed_from_epoch"] == 1


def test_stop_signals_can_be_turned_off(tmp_path):
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(make(), tmp_path, epochs=2, callbacks=[SignalAt(epoch=0, batch=0, signum=signal.SIGINT)],
                stop_signals=())
    finally:
        signal.signal(signal.SIGINT, handler)
