"""Named epochs of a data set that does not fit in memory: images read and decoded per example.

`StreamingEpochPipeline` is an `EpochPipeline` (same `dataset`, `epoch`, `indexed_epoch`,
`with_teacher_logits`, `fingerprint`, so `tfadakd.runs.fit_run` and `tfadakd.teacher_cache` take it)
whose examples are read from files as the epoch goes: only the list of examples is in memory. Example
`i`'s view at epoch `e` is `view(encoded image, seed, i)` with a stateless seed from `(data seed, e, i)`,
so a teacher-logit cache stays valid; the order of epoch `e` follows `(seed, e)`:

- `ExampleList(items, labels)` (an image folder's paths): a full permutation per epoch, each file read
  when its turn comes;
- a `tf.data.Dataset` of `(encoded image, label)` in a fixed order (a tfds split): read in that order
  with its indices and shuffled through a buffer of `shuffle_buffer` examples seeded by `(seed, e)`.

Decoding and augmentation run in a parallel, deterministic `map`, then batches are prefetched.

Example:

```python
view = lambda encoded, seed, index: preprocess(decode(encoded), seed)
pipeline = StreamingEpochPipeline(ExampleList(paths, labels, read=tf.io.read_file), len(paths), 256, view, seed=0)
model.fit(pipeline.dataset(0, 90), epochs=90, steps_per_epoch=pipeline.steps_per_epoch)
```
"""

from typing import Callable, Dict, Optional

import tensorflow as tf

from tfadakd.data.epochs import EpochPipeline, _mix


class ExampleList:
    """Randomly accessible examples: `items` (e.g. file paths) and int `labels`; `read(item)` gives the
    encoded image (default `tf.io.read_file`)."""

    def __init__(self, items, labels, read: Callable = tf.io.read_file):
        self.items = tf.constant(list(items))
        self.labels = tf.constant(list(labels), tf.int32)
        self.read = read


def example_seed(key, index):
    """The stateless seed of example `index` in an epoch whose seed is `key` (shape (2,) int64)."""
    return tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))


class StreamingEpochPipeline(EpochPipeline):
    """An `EpochPipeline` that reads, decodes and augments example by example (module docstring).

    Arguments:
        source: an `ExampleList`, or an unbatched `tf.data.Dataset` of `(encoded image, label)` in a fixed order.
        num_examples: how many examples `source` holds.
        batch_size: the global batch size.
        view: `fn(encoded, seed, index) -> float32 image` of a fixed shape; `seed` is the example's stateless
            seed (from `(data_seed, epoch, index)`), or None when `augment` is False (the evaluation view).
        augment: whether training views are random (the seed is passed) or the evaluation view.
        seed, data_seed, shuffle, drop_remainder, description: as in `EpochPipeline`.
        shuffle_buffer: buffer of the shuffle of a `tf.data.Dataset` source (an `ExampleList` is permuted in full).
    """

    def __init__(self, source, num_examples: int, batch_size: int, view: Callable, *, augment: bool = True,
                 seed: int = 0, data_seed: Optional[int] = None, shuffle: bool = True, drop_remainder: bool = False,
                 description: Optional[Dict] = None, shuffle_buffer: int = 10_000):
        super().__init__(None, num_examples, batch_size, augment=view if augment else None, preprocess=None,
                         seed=seed, data_seed=data_seed, shuffle=shuffle, drop_remainder=drop_remainder,
                         description=description)
        self.source = source
        self.view = view
        self.shuffle_buffer = int(shuffle_buffer)

    def _records(self, epoch):
        """Epoch `epoch`'s `(encoded, label, index)` in its order."""
        order_seed = tf.stack([_mix(self.seed, epoch), tf.constant(0x5EED, tf.int64)])
        if isinstance(self.source, ExampleList):
            source = self.source
            if self.shuffle:
                keys = tf.random.stateless_uniform([self.num_examples], seed=order_seed)
                order = tf.argsort(keys, stable=True)
            else:
                order = tf.range(self.num_examples)
            return tf.data.Dataset.from_tensor_slices(order).map(
                lambda i: (source.read(tf.gather(source.items, i)), tf.gather(source.labels, i), i),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = self.source.take(self.num_examples).enumerate().map(
            lambda i, example: (example[0], example[1], tf.cast(i, tf.int32)))
        if self.shuffle:
            ds = ds.shuffle(self.shuffle_buffer, seed=tf.random.stateless_uniform(
                [], order_seed, minval=None, maxval=None, dtype=tf.int64))
        return ds

    def indexed_epoch(self, epoch, drop_remainder: Optional[bool] = None) -> tf.data.Dataset:
        """Epoch `epoch` as batches of `(images, labels, indices)`, before any teacher logits; every example
        with `drop_remainder=False` (the pipeline's own setting by default)."""
        epoch = tf.cast(epoch, tf.int64)
        key = tf.stack([_mix(self.data_seed, epoch), tf.constant(0xA06, tf.int64)])
        view, augment = self.view, self.augment is not None

        def prepare(encoded, label, index):
            seed = example_seed(key, index) if augment else None
            return view(encoded, seed, index), label, index

        ds = self._records(epoch).map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(self.batch_size, drop_remainder=self.drop_remainder if drop_remainder is None else drop_remainder)
