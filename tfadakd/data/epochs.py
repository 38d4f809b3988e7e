"""Training pipelines whose every epoch is a pure function of (data seed, epoch, example index).

`tfadakd.data.load_cifar` gives a dataset that draws a new order and new augmentations on each pass:
enough for `fit`, but a resumed run (a new process) starts the passes over, and two runs cannot share
work done on the augmented images. An `EpochPipeline` names its epochs instead: epoch `e` is always
the same batches, whatever process builds it, so that

- a resumed run sees exactly the batches the uninterrupted run would have seen;
- the teacher's logits on each epoch's augmented views can be computed once and reused by every
  run of a sweep (`tfadakd.teacher_cache`): the augmentation of example `i` at epoch `e` depends only
  on `(data seed, e, i)`, not on the model seed, and only the order of the batches follows `seed`.

Example:

```python
pipeline = tfadakd.data.cifar_epochs("cifar100", "train[:45000]", batch_size=64, seed=0)
distiller.fit(pipeline.dataset(0, 240), epochs=240, steps_per_epoch=pipeline.steps_per_epoch)
# tfadakd.runs.fit_run(distiller, pipeline, ...) resumes at the right epoch by itself.
```
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import tensorflow as tf

#: Bumped whenever the augmentation of an example changes for the same (data seed, epoch, index):
#: teacher-logit caches record it and refuse a pipeline of another version.
AUGMENTATION_VERSION = 1


def _mix(seed, epoch):
    """One int64 seed word from a seed and an epoch (distinct for epochs below 1,000,003)."""
    return tf.constant(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)


class EpochPipeline:
    """Batches of named epochs: `epoch(e)` is the same in every process.

    Arguments:
        examples: an unbatched dataset of `(image, label)`, in a fixed order (decoded and cached once);
            an example's index is its position there, 0-based.
        num_examples: how many examples `examples` yields.
        batch_size: the global batch size.
        augment: `fn(seed) -> fn(images, indices) -> images`, or None for no augmentation. It is called
            once per epoch with a stateless seed (shape (2,), int64) derived from `(data_seed, epoch)`,
            and the function it returns is applied to every batch of that epoch; example `i`'s view must
            depend only on `seed`, `i` and the image (e.g. rows `i` of tables of random values drawn
            from `seed` for all `num_examples`), never on the batch it is in.
        preprocess: `fn(images) -> float images` applied to every batch (e.g. normalization).
        seed: the order's seed: epoch `e` is shuffled with a seed derived from `(seed, e)`.
        data_seed: the augmentation's seed (default: `seed`). Runs that share a teacher-logit cache
            share it, whatever their own `seed`.
        shuffle: shuffle each epoch (default True).
        drop_remainder: drop the last incomplete batch (under multi-replica strategies).
        description: what the pipeline reads (data set, split, slice), recorded by teacher-logit caches.

    Batches are `(images, labels)`; with `with_teacher_logits(cache)` they are
    `({"images": images, "teacher_logits": logits}, labels)`, which a `tfadakd.Distiller` trains on
    without running its teacher.
    """

    def __init__(
        self,
        examples: tf.data.Dataset,
        num_examples: int,
        batch_size: int,
        augment: Optional[Callable] = None,
        preprocess: Optional[Callable] = None,
        seed: int = 0,
        data_seed: Optional[int] = None,
        shuffle: bool = True,
        drop_remainder: bool = False,
        description: Optional[Dict] = None,
        teacher_logits: Optional[Callable] = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        steps = num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)
        if num_examples <= 0:
            raise ValueError(f"The training data is empty ({description or 'no examples'}): nothing to train on.")
        if steps <= 0:
            raise ValueError(
                f"{num_examples} examples make no batch of {batch_size} with drop_remainder=True (needed under a "
                "multi-replica strategy): use more examples or a smaller batch size."
            )
        self.examples = examples
        self.num_examples = int(num_examples)
        self.batch_size = int(batch_size)
        self.augment = augment
        self.preprocess = preprocess
        self.seed = int(seed)
        self.data_seed = int(self.seed if data_seed is None else data_seed)
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.description = dict(description or {})
        self.steps_per_epoch = steps
        self._teacher_logits = teacher_logits

    # ------------------------------------------------------------------ epochs
    def indexed_epoch(self, epoch, drop_remainder: Optional[bool] = None) -> tf.data.Dataset:
        """Epoch `epoch` as batches of `(images, labels, indices)`, before any teacher logits.

        `drop_remainder` (default: the pipeline's) False gives every example, the last partial batch
        included: a teacher-logit cache needs every row, even for a pipeline that drops it in training.
        """
        epoch = tf.cast(epoch, tf.int64)
        # The whole (cached) split as tensors, then an order that is a stateless function of (seed, e).
        images, labels = self.examples.batch(self.num_examples).get_single_element()
        if self.shuffle:
            keys = tf.random.stateless_uniform([self.num_examples], seed=tf.stack([_mix(self.seed, epoch), 0x5EED]))
            order = tf.argsort(keys, stable=True)
        else:
            order = tf.range(self.num_examples)
        drop = self.drop_remainder if drop_remainder is None else drop_remainder
        ds = tf.data.Dataset.from_tensor_slices(order).batch(self.batch_size, drop_remainder=drop)
        preprocess = self.preprocess
        # Example i's view: a function of (data_seed, e, i) only; the epoch's augmentation is set up once.
        key = tf.stack([_mix(self.data_seed, epoch), tf.constant(0xA06, tf.int64)])
        augment = None if self.augment is None else self.augment(key)

        def prepare(indices):  # an example's index is its position in the split slice
            batch = tf.gather(images, indices)
            if augment is not None:
                batch = augment(batch, indices)
            return (batch if preprocess is None else preprocess(batch)), tf.gather(labels, indices), indices

        return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def epoch(self, epoch) -> tf.data.Dataset:
        """Epoch `epoch` as training batches (see the class docstring)."""
        ds = self.indexed_epoch(epoch)
        if self._teacher_logits is None:
            return ds.map(lambda x, y, i: (x, y))
        table = self._teacher_logits(tf.cast(epoch, tf.int64))  # (num_examples, classes) for this epoch
        return ds.map(lambda x, y, i: ({"images": x, "teacher_logits": tf.gather(table, i)}, y))

    def dataset(self, start_epoch: int = 0, end_epoch: int = 1, skip_steps: int = 0) -> tf.data.Dataset:
        """Epochs `start_epoch` .. `end_epoch - 1` one after the other, prefetched: pass it to `fit` with
        `steps_per_epoch=self.steps_per_epoch` and `initial_epoch=start_epoch`.

        `skip_steps` leaves out the first batches of `start_epoch` (already trained by a run stopped
        mid-epoch); `fit` then trains the rest of that epoch with `steps_per_epoch - skip_steps`.
        """
        if not 0 <= int(start_epoch) < int(end_epoch):
            raise ValueError(f"Need 0 <= start_epoch < end_epoch, got {start_epoch} and {end_epoch}.")
        if not 0 <= int(skip_steps) < self.steps_per_epoch:
            raise ValueError(f"skip_steps must be in [0, {self.steps_per_epoch}), got {skip_steps}.")
        ds = tf.data.Dataset.range(int(start_epoch), int(end_epoch)).flat_map(self.epoch).skip(int(skip_steps))
        steps = (int(end_epoch) - int(start_epoch)) * self.steps_per_epoch - int(skip_steps)
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
        return ds.prefetch(tf.data.AUTOTUNE)

    def with_teacher_logits(self, lookup: Callable) -> "EpochPipeline":
        """A copy whose batches carry the teacher's logits: `lookup(epoch)` returns the epoch's
        `(num_examples, classes)` float32 logits, row `i` for example `i` (`TeacherCache.lookup`)."""
        copy = type(self).__new__(type(self))  # subclasses (StreamingEpochPipeline) stay what they are
        copy.__dict__.update(self.__dict__)
        copy._teacher_logits = lookup
        return copy

    def fingerprint(self) -> Dict:
        """What fixes the augmented views (not the order): for teacher-logit cache manifests."""
        return {
            **self.description,
            "num_examples": self.num_examples,
            "data_seed": self.data_seed,
            "augmented": self.augment is not None,
            "augmentation_version": AUGMENTATION_VERSION,
        }
