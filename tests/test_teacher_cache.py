"""tfadakd.teacher_cache on real CIFAR-10 slices: exact logits per epoch and example, a manifest that
refuses another teacher or data, atomic files, a build that resumes."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfadakd
from tfadakd.teacher_cache import CacheMismatchError, TeacherCache

N, BATCH = 96, 32


def small_teacher(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def pipeline(tfds_data_dir, seed=1, data_seed=0, num_examples=N):
    return tfadakd.data.cifar_epochs("cifar10", "train", batch_size=BATCH, seed=seed, data_seed=data_seed,
                                     data_dir=tfds_data_dir, num_examples=num_examples)


def test_cached_logits_are_the_teachers_on_each_epochs_views(tfds_data_dir, tmp_path):
    teacher, p = small_teacher(), pipeline(tfds_data_dir)
    cache = TeacherCache(tmp_path / "cache").build(teacher, p, epochs=2, verbose=0)
    assert cache.epochs_done() == [0, 1]
    manifest = cache.manifest()
    assert manifest["num_examples"] == N and manifest["data_seed"] == 0 and manifest["num_classes"] == 10
    assert manifest["split"] == "train[0:96]" and manifest["dtype"] == "float32"
    for epoch in (0, 1):
        table = np.fromfile(tmp_path / "cache" / f"epoch_{epoch:04d}.f32", "<f4").reshape(N, 10)
        for images, _, indices in p.indexed_epoch(epoch):
            np.testing.assert_allclose(table[indices.numpy()], teacher.predict_on_batch(images), rtol=1e-6, atol=1e-6)
    # Attached, the batches carry those logits for the right images, in the run's own order.
    other_order = pipeline(tfds_data_dir, seed=7)
    for x, _ in cache.attach(other_order).dataset(0, 2):
        np.testing.assert_allclose(x["teacher_logits"], teacher.predict_on_batch(x["images"]), rtol=1e-6, atol=1e-6)
    cache.verify(teacher, other_order, epochs=2)


def test_a_cache_for_another_teacher_or_data_is_refused_naming_the_field(tfds_data_dir, tmp_path):
    teacher, p = small_teacher(), pipeline(tfds_data_dir)
    cache = TeacherCache(tmp_path).build(teacher, p, epochs=1, verbose=0)
    with pytest.raises(CacheMismatchError, match="another data_seed: 0, this run needs 3"):
        cache.build(teacher, pipeline(tfds_data_dir, data_seed=3), epochs=1)
    with pytest.raises(CacheMismatchError, match=r"another split: .train\[0:96\]., this run needs .train\[0:64\]."):
        cache.verify(teacher, pipeline(tfds_data_dir, num_examples=64), epochs=1)
    changed = small_teacher()
    changed.layers[-1].bias.assign(changed.layers[-1].bias + 1e-3)
    with pytest.raises(CacheMismatchError, match="another teacher_sha256"):
        cache.verify(changed, p, epochs=1)
    with pytest.raises(CacheMismatchError, match="has no epoch 2"):
        cache.verify(teacher, p, epochs=2)
    cache.verify(small_teacher(), p, epochs=1)  # the same weights, rebuilt: accepted
    for garbage, message in (("{not json", "cannot be read"), ("[]", "holds no manifest"),
                             ('{"files": [1]}', "holds no manifest")):
        (tmp_path / "manifest.json").write_text(garbage)
        with pytest.raises(CacheMismatchError, match=message):
            cache.epochs_done()


def test_damaged_epoch_file_is_detected(tfds_data_dir, tmp_path):
    teacher, p = small_teacher(), pipeline(tfds_data_dir)
    cache = TeacherCache(tmp_path).build(teacher, p, epochs=1, verbose=0)
    path = tmp_path / "epoch_0000.f32"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheMismatchError, match="epoch_0000.f32 does not match its SHA-256.*Delete it"):
        cache.verify(teacher, p, epochs=1)
    path.unlink()  # the repair the message asks for
    assert cache.epochs_done() == []
    with pytest.raises(CacheMismatchError, match=r"has no epoch 1 \(its complete epochs: none\)"):
        cache.verify(teacher, p, epochs=1)
    cache.build(teacher, p, epochs=1, verbose=0).verify(teacher, p, epochs=1)  # recomputed, accepted
    raw[100] ^= 0xFF
    assert path.read_bytes() == bytes(raw)  # the same logits as before the damage


def test_interrupted_build_resumes_with_the_missing_epochs_only(tfds_data_dir, tmp_path, capsys):
    teacher, p = small_teacher(), pipeline(tfds_data_dir)
    TeacherCache(tmp_path).build(teacher, p, epochs=1, verbose=0)
    first = (tmp_path / "epoch_0000.f32").read_bytes()
    stale = tmp_path / "epoch_0001.tmp-999999.f32"  # what a process killed while writing leaves
    stale.write_bytes(b"partial")
    os.utime(tmp_path / "epoch_0000.f32", (1, 1))
    cache = TeacherCache(tmp_path).build(teacher, p, epochs=3, verbose=1)
    out = capsys.readouterr().out
    assert "epoch 1/3" not in out and "epoch 2/3" in out and "epoch 3/3" in out
    assert not stale.exists() and os.path.getmtime(tmp_path / "epoch_0000.f32") == 1
    assert (tmp_path / "epoch_0000.f32").read_bytes() == first
    assert cache.epochs_done() == [0, 1, 2] and json.loads((tmp_path / "manifest.json").read_text())["epochs"] == 3
    cache.verify(teacher, p, epochs=3)


def small_student(seed=5):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def distiller(teacher):
    model = tfadakd.Distiller(small_student(), teacher)
    model.compile(optimizer=tfadakd.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    return model


def test_training_on_cached_logits_leaves_the_weights_training_with_the_teacher_leaves(tfds_data_dir, tmp_path):
    keras.mixed_precision.set_global_policy("float32")
    teacher, p = small_teacher(), pipeline(tfds_data_dir)
    validation = tfadakd.data.load_cifar("cifar10", "test", batch_size=64, data_dir=tfds_data_dir, num_examples=64)
    cache = TeacherCache(tmp_path / "cache").build(teacher, p, epochs=3, verbose=0)
    run = dict(verbose=0, temperature_batches=0)

    live = distiller(teacher)
    tfadakd.runs.fit_run(live, p, validation, tmp_path / "live", epochs=3, **run)
    cached = distiller(teacher)
    tfadakd.runs.fit_run(cached, cache.attach(p), validation, tmp_path / "cached", epochs=3, **run)
    first = distiller(teacher)  # cut after one epoch, resumed by fresh models (a new process)
    tfadakd.runs.fit_run(first, cache.attach(p), validation, tmp_path / "resumed", epochs=1, **run)
    resumed = distiller(teacher)
    results = tfadakd.runs.fit_run(resumed, cache.attach(p), validation, tmp_path / "resumed", epochs=3, **run)

    assert results["resumed_from_epoch"] == 1 and int(resumed.optimizer.iterations.numpy()) == 3 * p.steps_per_epoch
    for reference, a, b in zip(live.student.weights, cached.student.weights, resumed.student.weights):
        np.testing.assert_allclose(a.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(live.student.weights[0].numpy(), small_student().weights[0].numpy())  # it trained


def test_the_distiller_does_not_run_the_teacher_on_cached_batches(tfds_data_dir):
    keras.mixed_precision.set_global_policy("float32")
    teacher = small_teacher()
    calls = []

    class Counting(keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, x, training=False):
            calls.append(1)  # traced: counts the traces that call the teacher
            return self.inner(x, training=training)

    wrapped = Counting(teacher)
    wrapped(np.zeros((1, 32, 32, 3), "float32"))
    model = distiller(wrapped)
    calls.clear()
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    logits = teacher.predict_on_batch(x)
    model.train_on_batch({"images": x, "teacher_logits": logits}, np.arange(8) % 10)
    assert calls == []
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="teacher_logits .*student.*10 classes"):
        model.train_on_batch({"images": x, "teacher_logits": logits[:, :7]}, np.arange(8) % 10)
    with pytest.raises(ValueError, match="must be \\{'images'"):
        model.train_on_batch({"pixels": x, "teacher_logits": logits}, np.arange(8) % 10)


def test_a_cache_under_two_replicas_serves_a_training_set_that_is_no_multiple_of_the_batch(tfds_data_dir, tmp_path):
    """apps/distill.py --strategy=mirrored --num_devices=2 with 200 examples at a global batch of 64: training
    drops the last 8 examples of every epoch (drop_remainder), the cache still holds the teacher's logits of
    all 200, and the run finishes."""
    import subprocess
    import sys
    from pathlib import Path

    small_teacher().save(tmp_path / "teacher.keras")
    repo = Path(__file__).resolve().parents[1]
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, str(repo / "apps" / "distill.py"), f"--teacher_path={tmp_path / 'teacher.keras'}",
         "--teacher=resnet8", "--student=resnet8", "--strategy=mirrored", "--num_devices=2", "--dataset=cifar10",
         "--train_examples=200", "--test_examples=64", "--batch_size=64", "--epochs=1", "--lr_milestones=",
         "--verbose=0", f"--teacher_cache={cache}", f"--output_dir={tmp_path / 'out'}", "--run_name=run"],
        capture_output=True, text=True, timeout=600, cwd=repo,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFDS_DATA_DIR=tfds_data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["num_examples"] == 200 and sorted(manifest["files"]) == ["0"]
    assert np.isfinite(np.fromfile(cache / "epoch_0000.f32", "<f4").reshape(200, 10)).all()
    assert json.loads((tmp_path / "out" / "cifar10" / "run" / "results.json").read_text())["epochs"] == 1


def test_a_build_waits_for_another_builder_and_leaves_its_temporary_files(tfds_data_dir, tmp_path, capsys):
    """Two processes building one cache: the second waits on the cache's lock (it says so) instead of deleting
    the first one's half-written epoch file, then reuses what the first wrote."""
    import fcntl
    import threading

    teacher, p = small_teacher(), pipeline(tfds_data_dir)
    tmp_path.mkdir(exist_ok=True)
    other = tmp_path / "epoch_0000.tmp-999999.f32"  # another builder's epoch, being written
    other.write_bytes(b"half")
    lock = open(tmp_path / ".lock", "a+")
    fcntl.flock(lock, fcntl.LOCK_EX)  # the other builder holds the cache
    done = threading.Event()
    thread = threading.Thread(target=lambda: (TeacherCache(tmp_path).build(teacher, p, 1), done.set()))
    thread.start()
    assert not done.wait(1.5) and other.exists() and not (tmp_path / "manifest.json").exists()
    other.unlink()  # the other builder finishes (here: without an epoch) and lets go
    lock.close()
    thread.join(120)
    assert done.is_set() and TeacherCache(tmp_path).epochs_done() == [0]
    assert "another process is building" in capsys.readouterr().out
