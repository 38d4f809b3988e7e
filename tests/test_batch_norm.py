"""FusedBatchNormalization must compute what keras.layers.BatchNormalization computes."""

import numpy as np
import pytest
import keras
import tensorflow as tf

import tfadakd
from tfadakd.models import FusedBatchNormalization
from tfadakd.models import batch_norm as batch_norm_module


def _weights(rng, channels):
    return [rng.normal(size=channels).astype("float32"), rng.normal(size=channels).astype("float32"),
            rng.normal(size=channels).astype("float32"), rng.uniform(0.5, 2, size=channels).astype("float32")]


def _run(layer_cls, x, weights, training, dtype=None, jit=False, **kwargs):
    """Output, moving mean/variance after one call, and the gradients of a non-linear loss."""
    layer = layer_cls(momentum=0.9, epsilon=1e-3, dtype=dtype, **kwargs)
    layer.build(x.shape)
    layer.set_weights(weights)

    # A random projection: the gradient of sum(y^2) through a normalization nearly cancels out.
    projection = tf.constant(np.random.default_rng(9).normal(size=x.shape).astype("float32"))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, "float32") * projection + 0.1 * tf.cast(y, "float32") ** 2)
        return [y, *tape.gradient(loss, [x, layer.gamma, layer.beta])]

    outs = tf.function(step, jit_compile=jit)(x) if jit else step(x)
    return [np.asarray(tf.cast(o, "float32")) for o in outs] + [layer.moving_mean.numpy(), layer.moving_variance.numpy()]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("jit", [False, True])
def test_matches_keras_batch_normalization_float32(training, jit):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (8, 5, 5, 6)).astype("float32"))
    weights = _weights(rng, 6)
    ours = _run(FusedBatchNormalization, x, weights, training, jit=jit)
    theirs = _run(keras.layers.BatchNormalization, x, weights, training, jit=jit)
    names = ["output", "grad x", "grad gamma", "grad beta", "moving mean", "moving variance"]
    for name, a, b in zip(names, ours, theirs):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(b).max(), err_msg=name)
    if training:  # the moving statistics moved, towards the batch's (biased) moments
        mean = x.numpy().mean(axis=(0, 1, 2))
        var = x.numpy().var(axis=(0, 1, 2))
        np.testing.assert_allclose(ours[4], 0.9 * weights[2] + 0.1 * mean, rtol=1e-5)
        np.testing.assert_allclose(ours[5], 0.9 * weights[3] + 0.1 * var, rtol=1e-5)
    else:
        np.testing.assert_array_equal(ours[4], weights[2])
        np.testing.assert_array_equal(ours[5], weights[3])


def test_mixed_bfloat16_close_to_keras_and_stays_bfloat16():
    rng = np.random.default_rng(1)
    x = tf.cast(tf.constant(rng.normal(0.0, 2.0, (16, 4, 4, 8)).astype("float32")), "bfloat16")
    weights = _weights(rng, 8)
    layer = FusedBatchNormalization(dtype="mixed_bfloat16")
    layer.build(x.shape)
    assert layer(x, training=True).dtype == tf.bfloat16
    ours = _run(FusedBatchNormalization, x, weights, True, dtype="mixed_bfloat16")
    theirs = _run(keras.layers.BatchNormalization, x, weights, True, dtype="mixed_bfloat16")
    np.testing.assert_allclose(ours[0], theirs[0], atol=0.05 * np.abs(theirs[0]).max())  # bf16: ~3 digits
    np.testing.assert_allclose(ours[4], theirs[4], rtol=1e-4, atol=1e-4)  # statistics in float32
    np.testing.assert_allclose(ours[5], theirs[5], rtol=1e-3)


def test_falls_back_to_keras_where_the_fused_kernel_does_not_apply():
    rng = np.random.default_rng(2)
    x2 = tf.constant(rng.normal(size=(6, 5)).astype("float32"))  # rank 2
    weights = _weights(rng, 5)
    for a, b in zip(_run(FusedBatchNormalization, x2, weights, True), _run(keras.layers.BatchNormalization, x2, weights, True)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    x = tf.constant(rng.normal(size=(4, 3, 3, 5)).astype("float32"))
    layer = FusedBatchNormalization(axis=1)
    assert not layer._fusable(x, None)
    assert not FusedBatchNormalization(synchronized=True)._fusable(x, None)
    assert not FusedBatchNormalization(center=False)._fusable(x, None)
    assert FusedBatchNormalization()._fusable(x, None)


def test_zoo_uses_it_and_round_trips(tmp_path):
    model = tfadakd.models.build("resnet8")
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(isinstance(layer, FusedBatchNormalization) for layer in bn)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer(bn[0].name)) is keras.layers.BatchNormalization  # the file names Keras' class
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
    assert tfadakd.models.fuse_batch_norm(loaded) == len(bn)
    assert all(type(loaded.get_layer(layer.name)) is FusedBatchNormalization for layer in bn)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


PLAIN_KERAS = """
import sys
sys.modules["tfadakd"] = None  # any import of tfadakd fails: a process without it
import keras, numpy as np
x, out = np.load(sys.argv[1]), sys.argv[2]
for i, path in enumerate(sys.argv[3:]):
    np.save(f"{out}/{i}.npy", keras.models.load_model(path).predict(x, verbose=0))
"""


def test_files_written_by_tfadakd_load_in_plain_keras_with_the_same_predictions(tmp_path):
    """Every .keras a run writes (the teacher, student_best / _final) and the shipped teacher load with
    keras.models.load_model in a process that cannot import tfadakd."""
    import subprocess
    import sys
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "saved_models" / "cifar100" / "resnet32" / "teacher.keras"
    student = tfadakd.models.build("resnet8", num_classes=10)
    x = np.random.default_rng(4).normal(size=(3, 32, 32, 3)).astype("float32")
    student(x, training=True)  # moving statistics away from their initial values
    student.compile(optimizer=tfadakd.optimizers.SGD(0.1, momentum=0.9, weight_decay=5e-4), loss="mse")
    tfadakd.files.save_model(student, str(tmp_path / "student_best.keras"))  # as the runs write theirs
    assert student.compiled and isinstance(student.optimizer, tfadakd.optimizers.SGD)  # left as it was
    np.save(tmp_path / "x.npy", x)
    paths = [str(tmp_path / "student_best.keras"), str(shipped)]
    proc = subprocess.run([sys.executable, "-c", PLAIN_KERAS, str(tmp_path / "x.npy"), str(tmp_path), *paths],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    teacher = keras.models.load_model(shipped)
    tfadakd.models.fuse_batch_norm(teacher)
    for i, model in enumerate((student, teacher)):  # the predictions go to tmp_path, never beside the shipped file
        np.testing.assert_allclose(np.load(tmp_path / f"{i}.npy"), model.predict(x, verbose=0), rtol=1e-3, atol=1e-3)


def test_files_that_name_the_fused_class_still_load(tmp_path):
    """.keras files written by tfadakd 0.1 (a layer class of its own) keep loading inside tfadakd, and are
    portable once their layers are fused again and saved."""
    model = tfadakd.models.build("resnet8", num_classes=10)
    assert tfadakd.models.fuse_batch_norm(model) == 0  # the zoo builds them fused
    count = 0
    for layer in model.layers:
        if isinstance(layer, FusedBatchNormalization):
            layer.__class__ = batch_norm_module.FusedBatchNormalization_  # how 0.1 built and saved them
            count += 1
    model.save(tmp_path / "old.keras")
    assert b"tfadakd>FusedBatchNormalization" in zipfile_member(tmp_path / "old.keras", "config.json")
    loaded = keras.models.load_model(tmp_path / "old.keras")
    x = np.random.default_rng(5).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert tfadakd.models.fuse_batch_norm(loaded) == count > 0
    loaded.save(tmp_path / "new.keras")
    assert b"tfadakd" not in zipfile_member(tmp_path / "new.keras", "config.json")


def zipfile_member(path, name):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read(name)
