"""Choosing a `tf.distribute` strategy by name, for the apps and for `distiller.fit()` users alike."""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")


def get_strategy(name="default", num_devices=None):
    """Returns a `tf.distribute.Strategy`.

    Create the models, the `Distiller` and the optimizer inside `strategy.scope()`, and batch the
    data with the *global* batch size (`drop_remainder=True` when `num_replicas_in_sync > 1`).

    Arguments:
        name: `"default"` (no distribution: TensorFlow's default strategy), `"one_device"` (the first
            GPU, else the CPU), `"mirrored"` (all local GPUs, or `num_devices` of them; on a machine
            without GPUs, `num_devices` logical CPU devices, which must be requested before
            TensorFlow initializes), `"multi_worker"` (`MultiWorkerMirroredStrategy`, configured by
            the `TF_CONFIG` environment variable on every worker) or `"tpu"`.
        num_devices: how many local devices to use with `"mirrored"` (default: all GPUs).

    Returns:
        The strategy.

    Raises:
        ValueError: for an unknown name, a bad `num_devices`, or `"multi_worker"` without `TF_CONFIG`.

    Example:

    >>> strategy = tfadakd.distribute.get_strategy("mirrored")
    >>> with strategy.scope():
    ...     distiller = tfadakd.Distiller(student=..., teacher=...)
    ...     distiller.compile(optimizer=...)
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Valid names: {', '.join(STRATEGIES)}.")
    if num_devices is not None and int(num_devices) <= 0:
        raise ValueError(f"num_devices must be positive, got {num_devices!r}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        # Before anything lists devices: collective ops must be configured at program startup.
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy 'multi_worker' needs the TF_CONFIG environment variable on every worker, e.g. "
                + json.dumps({"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}})
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        if num_devices is not None:
            if int(num_devices) > len(devices):
                kind = "GPU" if gpus else "CPU"
                raise ValueError(
                    f"num_devices={num_devices} but only {len(devices)} {kind} device(s) are visible. On a "
                    "CPU-only machine, call tfadakd.distribute.split_cpu(n) before anything else."
                )
            devices = devices[: int(num_devices)]
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def split_cpu(num_devices):
    """Splits the CPU into `num_devices` logical devices (for testing `"mirrored"` without GPUs).

    Must run before TensorFlow initializes its devices (before any tensor is created).

    Raises:
        RuntimeError: if TensorFlow was already initialized.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(num_devices))]
    )


def check_global_batch(batch_size, strategy):
    """Raises a `ValueError` unless `batch_size` divides evenly over the strategy's replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size <= 0 or batch_size % replicas:
        raise ValueError(
            f"The global batch size {batch_size} must be a positive multiple of the number of "
            f"replicas ({replicas}); each replica then gets {batch_size} / {replicas} examples."
        )
    return batch_size // replicas


def scale_learning_rate(learning_rate, strategy, reference_replicas=1):
    """The linear scaling rule: `learning_rate * replicas / reference_replicas`.

    Use it when the global batch grows with the replica count (per-replica batch held fixed); keep
    the rate when the global batch is held fixed (the recipe's 64 split over replicas).
    """
    return learning_rate * strategy.num_replicas_in_sync / reference_replicas


def synchronize_batch_norm(model):
    """Returns a copy of `model` whose `BatchNormalization` layers compute statistics over the global batch.

    Under a multi-replica strategy each replica normally normalizes with its own slice's statistics,
    so training differs from one device with the same global batch (and small per-replica batches
    give noisy statistics). `BatchNormalization(synchronized=True)` all-reduces them across replicas
    (TensorFlow backend); this clones the model with that set on every BN layer and copies the weights.
    Build and call it inside `strategy.scope()`.

    Arguments:
        model: a Functional or Sequential `keras.Model`.

    Returns:
        The new model, with the same weights.

    Example:

    >>> with strategy.scope():
    ...     student = tfadakd.distribute.synchronize_batch_norm(tfadakd.models.build("resnet8x4"))
    """
    import keras

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
