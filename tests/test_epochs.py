"""tfadakd.data.EpochPipeline / cifar_epochs on real CIFAR-10: epoch e is a pure function of (seed, e),
and an example's augmented view a pure function of (data_seed, e, index)."""

import numpy as np
import pytest

from test_data import find_crop, raw, to_pixels
from tfadakd import data

N = 200


@pytest.fixture(scope="module")
def raw_cifar10(tfds_data_dir):
    return raw("cifar10", f"train[:{N}]", tfds_data_dir)


def pipeline(tfds_data_dir, seed=1, data_seed=0, batch_size=64, **kwargs):
    return data.cifar_epochs("cifar10", "train", batch_size=batch_size, seed=seed, data_seed=data_seed,
                             data_dir=tfds_data_dir, num_examples=N, **kwargs)


def views(p, epoch):
    """{index: (normalized image, label)} of one epoch, and the order of the indices."""
    out, order = {}, []
    for x, y, i in p.indexed_epoch(epoch):
        for image, label, index in zip(x.numpy(), y.numpy(), i.numpy()):
            out[int(index)] = (image, int(label))
            order.append(int(index))
    return out, order


def test_epochs_are_named_the_same_in_every_pipeline(tfds_data_dir):
    a, b = pipeline(tfds_data_dir), pipeline(tfds_data_dir)
    assert a.steps_per_epoch == 4 and a.num_examples == N
    a0, order0 = views(a, 0)
    b0, _ = views(b, 0)
    a1, order1 = views(a, 1)
    assert sorted(order0) == list(range(N)) and order0 != order1  # each epoch: every example, another order
    for i in range(N):
        np.testing.assert_array_equal(a0[i][0], b0[i][0])
    assert sum(np.array_equal(a0[i][0], a1[i][0]) for i in range(N)) < N // 2  # new crops and flips
    # dataset(start, end) is the epochs one after the other; a resume at epoch 1 starts there exactly.
    batches = [x.numpy() for x, _ in a.dataset(0, 2)]
    resumed = [x.numpy() for x, _ in b.dataset(1, 2)]
    assert len(batches) == 8 and len(resumed) == 4
    for x, y in zip(batches[4:], resumed):
        np.testing.assert_array_equal(x, y)


def test_views_follow_the_data_seed_and_not_the_order_seed_nor_the_batch(tfds_data_dir, raw_cifar10):
    a0, order_a = views(pipeline(tfds_data_dir, seed=1), 0)
    b0, order_b = views(pipeline(tfds_data_dir, seed=2, batch_size=50), 0)
    c0, _ = views(pipeline(tfds_data_dir, seed=1, data_seed=5), 0)
    assert order_a != order_b
    for i in range(N):
        np.testing.assert_array_equal(a0[i][0], b0[i][0])
        assert a0[i][1] == raw_cifar10[1][i]
    assert sum(np.array_equal(a0[i][0], c0[i][0]) for i in range(N)) < N // 2
    # Every view is a zero-padded crop (maybe flipped) of the right raw image.
    for i in range(0, N, 20):
        assert find_crop(to_pixels(a0[i][0], "cifar10"), raw_cifar10[0][i]) is not None


def test_unaugmented_pipeline_gives_the_raw_images(tfds_data_dir, raw_cifar10):
    v, _ = views(pipeline(tfds_data_dir, augment=False), 3)
    np.testing.assert_array_equal(to_pixels(np.stack([v[i][0] for i in range(N)]), "cifar10"), raw_cifar10[0])


def test_bad_arguments(tfds_data_dir):
    with pytest.raises(ValueError, match="make no batch of 512 with drop_remainder=True"):
        pipeline(tfds_data_dir, batch_size=512, drop_remainder=True)
    with pytest.raises(ValueError, match="start_epoch < end_epoch"):
        pipeline(tfds_data_dir).dataset(2, 2)


def test_too_few_examples_for_one_batch_name_the_counts(tfds_data_dir):
    with pytest.raises(ValueError, match="32 examples make no batch of 64 with drop_remainder=True"):
        data.cifar_epochs("cifar10", "train", batch_size=64, num_examples=32, drop_remainder=True,
                          data_dir=tfds_data_dir)
    with pytest.raises(ValueError, match=r"The training data is empty \(cifar10 'train\[:0\]' holds no example\)"):
        data.cifar_epochs("cifar10", "train[:0]", batch_size=64, data_dir=tfds_data_dir)
