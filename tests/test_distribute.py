"""Under MirroredStrategy on 2 logical CPUs, a step equals the single-device step on the same global batch.

This guards against the defects of docs/method.md sections 8.2-8.3 (logged losses divided by the replica
count; a hand-averaged loss whose gradient is N times too large on N replicas). Runs in a subprocess
because logical devices must be configured before TensorFlow initializes.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, tfadakd

    def mlp(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((12,))
        hidden = keras.layers.Dense(16, activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Dense(10)(hidden))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype("float32")
    y = rng.integers(0, 10, 64)
    w = rng.uniform(0.5, 1.5, 64).astype("float32")
    initial = {"teacher": mlp(0).get_weights(), "student": mlp(1).get_weights()}

    def run(strategy):
        with strategy.scope():
            teacher, student = mlp(0), mlp(1)
            teacher.set_weights(initial["teacher"]); student.set_weights(initial["student"])
            distiller = tfadakd.Distiller(student, teacher)   # adaptive + standardization, 0.1 / 9
            distiller.compile(optimizer=tfadakd.optimizers.SGD(0.5, momentum=0.9), metrics=["accuracy"])
        ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(32, drop_remainder=True)
        logs = distiller.fit(ds, epochs=2, verbose=0, shuffle=False).history
        return {"replicas": strategy.num_replicas_in_sync, "logs": logs,
                "weights": [v.tolist() for v in student.get_weights()]}

    out = [run(tf.distribute.OneDeviceStrategy("/cpu:0")),
           run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def runs():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_two_replicas_are_really_used(runs):
    assert [r["replicas"] for r in runs] == [1, 2]


def test_mirrored_updates_equal_single_device(runs):
    single, mirrored = runs
    for a, b in zip(single["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["loss", "student_loss", "distillation_loss", "temperature", "logit_correlation", "accuracy"]
)
def test_mirrored_logs_equal_single_device(runs, name):
    single, mirrored = runs
    np.testing.assert_allclose(mirrored["logs"][name], single["logs"][name], rtol=1e-5)


SYNC_BN_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, tfadakd

    def cnn(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((6, 6, 3))
        x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
        return keras.Model(inputs, keras.layers.Dense(5)(x))

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(32, 6, 6, 3)) * np.linspace(0.2, 3, 32)[:, None, None, None]).astype("float32")
    y = rng.integers(0, 5, 32)
    initial = {"teacher": cnn(0).get_weights(), "student": cnn(1).get_weights()}

    def run(strategy, sync):
        with strategy.scope():
            teacher, student = cnn(0), cnn(1)
            teacher.set_weights(initial["teacher"]); student.set_weights(initial["student"])
            if sync:
                student = tfadakd.distribute.synchronize_batch_norm(student)
            distiller = tfadakd.Distiller(student, teacher)
            distiller.compile(optimizer=tfadakd.optimizers.SGD(0.5, momentum=0.0))
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
        distiller.fit(ds, epochs=1, verbose=0)
        bn = [l for l in student.layers if isinstance(l, keras.layers.BatchNormalization)][0]
        return {"synchronized": bool(bn.synchronized), "weights": [w.tolist() for w in student.get_weights()]}

    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print("RESULT" + json.dumps({"single": run(one, False), "mirrored": run(two, False), "mirrored_sync": run(two, True)}))
    """
)


@pytest.fixture(scope="module")
def sync_runs():
    proc = subprocess.run([sys.executable, "-c", SYNC_BN_SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))[len("RESULT"):])


def test_synchronized_batch_norm_makes_mirrored_equal_single_device(sync_runs):
    single, synced, plain = sync_runs["single"], sync_runs["mirrored_sync"], sync_runs["mirrored"]
    assert synced["synchronized"] and not plain["synchronized"]
    for a, b in zip(single["weights"], synced["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)
    # without synchronization, per-replica statistics give a different step (and moving variance)
    assert any(not np.allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)
               for a, b in zip(single["weights"], plain["weights"]))


FEATURE_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, tfadakd

    def cnn(seed, width):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="stage1")(inputs)
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stage2")(x)
        return keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x)))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 5, 32)
    initial = {"teacher": cnn(0, 6).get_weights(), "student": cnn(1, 4).get_weights()}

    def run(strategy):
        with strategy.scope():
            teacher, student = cnn(0, 6), cnn(1, 4)
            teacher.set_weights(initial["teacher"]); student.set_weights(initial["student"])
            terms = [(tfadakd.losses.KD(temperature="adaptive", standardize=True), 9.0),
                     (tfadakd.methods.FitNet("stage2"), 100.0), (tfadakd.methods.AT(("stage1", "stage2")), 1000.0)]
            distiller = tfadakd.Distiller(student, teacher, terms=terms, student_loss_weight=0.1)
            distiller.compile(optimizer=tfadakd.optimizers.SGD(0.05, momentum=0.9))
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)
        logs = distiller.fit(ds, epochs=1, verbose=0, shuffle=False).history
        return {"logs": logs, "weights": [w.tolist() for w in student.get_weights()]}

    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print("RESULT" + json.dumps({"single": run(one), "mirrored": run(two)}))
    """
)


def test_a_step_with_feature_terms_under_mirrored_equals_the_single_device_step():
    """KD + FitNet (equal shapes: no connector) + AT on 2 replicas: the same update and logs as one device."""
    proc = subprocess.run([sys.executable, "-c", FEATURE_SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))[len("RESULT"):])
    single, mirrored = got["single"], got["mirrored"]
    for a, b in zip(single["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)
    for name in ("loss", "kd_loss", "fitnet_loss", "at_loss", "temperature", "student_loss"):
        np.testing.assert_allclose(mirrored["logs"][name], single["logs"][name], rtol=1e-5, err_msg=name)
