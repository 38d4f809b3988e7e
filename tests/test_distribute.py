"""Under MirroredStrategy on 2 logical CPUs, a step equals the single-device step on the same global batch.

This is the bug METHOD.md section 8 reports for `keras.distillation` (logged losses divided by the
replica count, gradients N times too large). Runs in a subprocess because logical devices must be
configured before TensorFlow initializes.
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
