"""Two worker processes on 127.0.0.1 distill under MultiWorkerMirroredStrategy and end with identical weights."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    import keras, tfadakd

    strategy = tfadakd.distribute.get_strategy("multi_worker")

    def mlp(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((12,))
        return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Dense(16, activation="relu")(inputs)))

    with strategy.scope():
        teacher, student = mlp(0), mlp(1)
        initial = [w.copy() for w in student.get_weights()]
        distiller = tfadakd.Distiller(student, teacher)
        distiller.compile(optimizer=tfadakd.optimizers.SGD(0.1), metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 10, 64)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    logs = distiller.fit(ds.with_options(options), epochs=2, verbose=0).history
    changed = any(not np.array_equal(a, b) for a, b in zip(initial, student.get_weights()))
    np.savez(sys.argv[1], *student.get_weights())
    print("RESULT" + json.dumps({"replicas": strategy.num_replicas_in_sync, "changed": changed,
                                 "loss": logs["loss"]}))
    """
)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_end_with_identical_weights(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / f"worker{index}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(next(l for l in stdout.splitlines() if l.startswith("RESULT"))[6:]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [o["replicas"] for o in outputs] == [2, 2]
    assert all(o["changed"] for o in outputs)
    np.testing.assert_allclose(outputs[0]["loss"], outputs[1]["loss"], rtol=1e-6)
    first, second = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert len(first.files) == 4
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])


def test_multi_worker_without_tf_config_says_how_to_configure(monkeypatch):
    import tfadakd

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        tfadakd.distribute.get_strategy("multi_worker")
    with pytest.raises(ValueError, match="Valid names: default, one_device, mirrored, multi_worker, tpu"):
        tfadakd.distribute.get_strategy("horovod")
