"""An exact cache of a frozen teacher's logits on every epoch's augmented training views.

The teacher never changes during distillation, and an `EpochPipeline` (`tfadakd.data.cifar_epochs`)
augments example `i` at epoch `e` as a function of `(data seed, e, i)` only. So the teacher's logits
for that view can be computed once, stored, and reused by every run that shares the teacher, the
data and the data seed: the runs of a sweep, several students of one teacher, a resumed run.

A cache is a directory:

| file | what |
| --- | --- |
| `manifest.json` | what the logits were computed from (teacher weights digest, data set, split and slice, data seed, augmentation version, dtype, classes) and a SHA-256 per finished epoch |
| `epoch_0000.f32`, ... | one file per epoch: `(num_examples, classes)` float32 little-endian, row `i` for example `i` |

Files are written atomically and the manifest is updated after each epoch, so an interrupted build
resumes where it stopped. A cache whose manifest differs from what a run needs is refused with the
differing field named.

Example:

```python
pipeline = tfadakd.data.cifar_epochs("cifar100", "train[:45000]", batch_size=64, seed=1, data_seed=0)
cache = tfadakd.teacher_cache.TeacherCache("saved_models/cache/resnet32").build(teacher, pipeline, epochs=30)
train = cache.attach(pipeline)        # batches ({"images": x, "teacher_logits": t}, y): no teacher forward
tfadakd.runs.fit_run(distiller, train, validation, "saved_models/run", epochs=30)
```
"""

import contextlib
import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

from tfadakd import files

MANIFEST = "manifest.json"
FORMAT = 1


class CacheMismatchError(ValueError):
    """A teacher-logit cache was built for another teacher, data, seed or format than the run's."""


def teacher_digest(teacher):
    """SHA-256 of the teacher's weights (values, shapes and dtypes, in order): changes when any weight does."""
    digest = hashlib.sha256()
    for weight in teacher.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{value.shape}:{value.dtype};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _epoch_name(epoch):
    return f"epoch_{int(epoch):04d}.f32"


@contextlib.contextmanager
def _build_lock(directory, verbose):
    """Holds an OS lock on `<directory>/.lock` (released on exit or crash); waits while another process
    builds the same cache, saying so."""
    import fcntl

    with open(os.path.join(directory, ".lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if verbose:
                print(f"[teacher cache] another process is building {directory}: waiting for it.", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class TeacherCache:
    """The teacher's logits per epoch and example, in `directory` (see the module docstring).

    Arguments:
        directory: the cache's folder; created by `build`.
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)

    # ------------------------------------------------------------------ manifest
    @staticmethod
    def expected_manifest(teacher, pipeline):
        """The fields a cache must have to serve `pipeline` with `teacher` (everything but the epochs)."""
        return {
            "format": FORMAT,
            "teacher_sha256": teacher_digest(teacher),
            "teacher_compute_dtype": str(teacher.compute_dtype),
            "num_classes": int(teacher.output_shape[-1]),
            "dtype": "float32",
            **pipeline.fingerprint(),
        }

    def manifest(self):
        """The manifest on disk, or None when there is no cache yet."""
        path = os.path.join(self.directory, MANIFEST)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                manifest = json.load(f)
        except (OSError, ValueError) as error:
            raise CacheMismatchError(
                f"The teacher-logit cache manifest {path} cannot be read ({error}). Delete {self.directory} "
                "to rebuild the cache."
            ) from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
            raise CacheMismatchError(
                f"The teacher-logit cache manifest {path} holds no manifest (a JSON object with its epoch files, "
                f"got {type(manifest).__name__}). Delete {self.directory} to rebuild the cache."
            )
        return manifest

    def _check(self, manifest, expected):
        for field, value in expected.items():
            if field == "examples" and manifest.get(field) != value:
                from tfadakd.data.identity import describe_change

                raise CacheMismatchError(
                    f"The teacher-logit cache in {self.directory} was built on other files "
                    f"({describe_change(manifest.get(field), value)}): its rows belong to the images as they "
                    f"were. Delete {self.directory} to rebuild it, or use another cache directory (flag "
                    "--teacher_cache)."
                )
            if manifest.get(field) != value:
                raise CacheMismatchError(
                    f"The teacher-logit cache in {self.directory} was built for another {field}: "
                    f"{manifest.get(field)!r}, this run needs {value!r}. Use another cache directory (flag "
                    f"--teacher_cache) or delete {self.directory} to rebuild it."
                )

    def epochs_done(self):
        """The epochs whose logits are complete on disk: recorded in the manifest and their file present (an
        epoch file deleted after a failed SHA-256 check counts as missing, so that a build recomputes it)."""
        manifest = self.manifest() or {}
        return sorted(int(e) for e in manifest.get("files", {})
                      if os.path.exists(os.path.join(self.directory, _epoch_name(e))))

    # ------------------------------------------------------------------ building
    def build(self, teacher, pipeline, epochs, verbose=1):
        """Computes the teacher's logits for epochs `0 .. epochs - 1` of `pipeline` that are missing.

        Resumes an interrupted build; refuses (`CacheMismatchError`) a cache built for another teacher,
        data or data seed. Returns `self`.
        """
        expected = self.expected_manifest(teacher, pipeline)
        os.makedirs(self.directory, exist_ok=True)
        with _build_lock(self.directory, verbose):  # one builder at a time; the others wait, then reuse its epochs
            self._build(teacher, pipeline, epochs, verbose, expected)
        return self

    def _build(self, teacher, pipeline, epochs, verbose, expected):
        manifest = self.manifest()
        if manifest is not None:
            self._check(manifest, expected)
        else:
            manifest = {**expected, "files": {}}
        files.remove_stale_temporaries(self.directory)  # safe under the lock: no other writer
        forward = tf.function(lambda x: tf.cast(teacher(x, training=False), tf.float32))
        for epoch in range(int(epochs)):
            name = _epoch_name(epoch)
            if str(epoch) in manifest["files"] and os.path.exists(os.path.join(self.directory, name)):
                continue
            start = time.perf_counter()
            table = np.full((pipeline.num_examples, expected["num_classes"]), np.nan, np.float32)
            for images, _, indices in pipeline.indexed_epoch(epoch, drop_remainder=False):  # every row
                table[indices.numpy()] = forward(images).numpy()
            if np.isnan(table).any():
                raise ValueError(
                    f"The teacher's logits for epoch {epoch} hold NaN (or some examples were never seen): the "
                    "teacher is broken or the data holds NaN. Nothing was written for this epoch."
                )
            path = os.path.join(self.directory, name)
            files.atomic_save(lambda tmp: table.astype("<f4").tofile(tmp), path)
            manifest["files"][str(epoch)] = files.file_sha256(path)
            manifest["epochs"] = len(manifest["files"])
            files.atomic_write_json(os.path.join(self.directory, MANIFEST), manifest)
            if verbose:
                print(f"[teacher cache] epoch {epoch + 1}/{epochs}: {pipeline.num_examples} logits in "
                      f"{time.perf_counter() - start:.1f} s -> {path}", flush=True)

    # ------------------------------------------------------------------ reading
    def verify(self, teacher, pipeline, epochs):
        """Checks that the cache serves `pipeline` with `teacher` for `epochs` epochs, each file intact.

        Raises:
            CacheMismatchError: naming the differing field, the missing epoch, or the damaged file.
        """
        manifest = self.manifest()
        if manifest is None:
            raise CacheMismatchError(f"No teacher-logit cache in {self.directory}: build it first (TeacherCache.build).")
        self._check(manifest, self.expected_manifest(teacher, pipeline))
        for epoch in range(int(epochs)):
            path = os.path.join(self.directory, _epoch_name(epoch))
            recorded = manifest.get("files", {}).get(str(epoch))
            if recorded is None or not os.path.exists(path):
                raise CacheMismatchError(
                    f"The teacher-logit cache in {self.directory} has no epoch {epoch + 1} (its complete epochs: "
                    f"{', '.join(str(e + 1) for e in self.epochs_done()) or 'none'}): build it for {epochs} epochs "
                    "(TeacherCache.build computes the missing ones; the apps do it by themselves).")
            if files.file_sha256(path) != recorded:
                raise CacheMismatchError(
                    f"{path} does not match its SHA-256 in the manifest (damaged or overwritten). Delete it "
                    "and rebuild the cache: the other epochs are kept.")
        return self

    def lookup(self, num_examples, num_classes):
        """`fn(epoch) -> (num_examples, num_classes)` float32 logits, read with TensorFlow ops (usable
        inside tf.data)."""
        prefix = os.path.join(self.directory, "epoch_")

        def read(epoch):
            path = tf.strings.join([prefix, tf.strings.as_string(tf.cast(epoch, tf.int64), width=4, fill="0"), ".f32"])
            values = tf.io.decode_raw(tf.io.read_file(path), tf.float32, little_endian=True)
            return tf.reshape(values, [num_examples, num_classes])

        return read

    def attach(self, pipeline, num_classes=None):
        """`pipeline` whose batches carry this cache's teacher logits (`EpochPipeline.with_teacher_logits`)."""
        manifest = self.manifest() or {}
        num_classes = num_classes or manifest.get("num_classes")
        if num_classes is None:
            raise CacheMismatchError(f"No teacher-logit cache in {self.directory}: build it first.")
        return pipeline.with_teacher_logits(self.lookup(pipeline.num_examples, int(num_classes)))
