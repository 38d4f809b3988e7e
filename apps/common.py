"""Flags and helpers shared by the apps. The library never reads flags: this module turns them into
library calls (`tfadakd.data.load_cifar`, `tfadakd.models.build`, `tfadakd.runs.fit_run`, ...)."""

import json
import os
import sys

from absl import flags

FLAGS = flags.FLAGS

# ---------------------------------------------------------------------------- data
flags.DEFINE_enum("dataset", "cifar100", ["cifar10", "cifar100"], "Data set.")
flags.DEFINE_string(
    "data_dir", None, "tfds data dir holding (or receiving) the prepared data set; default: tfds' own "
    "($TFDS_DATA_DIR or ~/tensorflow_datasets), which downloads when online.")
flags.DEFINE_string(
    "manual_dir", None, "Folder holding the official cifar-10-binary.tar.gz / cifar-100-binary.tar.gz, "
    "for machines without internet.")
flags.DEFINE_integer("train_examples", 0, "Use only the first N training examples (0: all).", lower_bound=0)
flags.DEFINE_integer("test_examples", 0, "Use only the first N test examples (0: all).", lower_bound=0)
flags.DEFINE_integer("batch_size", 64, "Global batch size (split over replicas).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed for weights, shuffling and augmentation.")

# ---------------------------------------------------------------------------- optimization
flags.DEFINE_integer("epochs", 240, "Training epochs.", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.05, "Initial learning rate (0.01 for MobileNetV2 / ShuffleNet students).", lower_bound=0.0)
flags.DEFINE_list("lr_milestones", ["150", "180", "210"], "Epochs at which the learning rate is multiplied by --lr_decay.")
flags.DEFINE_float("lr_decay", 0.1, "Learning-rate decay factor at each milestone.", lower_bound=0.0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum (PyTorch semantics).", lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_float("weight_decay", 5e-4, "Coupled (PyTorch) weight decay on every parameter.", lower_bound=0.0)

# ---------------------------------------------------------------------------- runs
flags.DEFINE_string("output_dir", "saved_models", "Root of the run directories: <output_dir>/<dataset>/<run_name>/.")
flags.DEFINE_string("run_name", None, "Run directory name (default: derived from the models and method).")
flags.DEFINE_integer("verbose", 1, "Keras fit verbosity: 0 silent, 1 progress bars, 2 one line per epoch.", lower_bound=0, upper_bound=2)

# ---------------------------------------------------------------------------- scale and speed
flags.DEFINE_enum("strategy", "default", ["default", "one_device", "mirrored", "multi_worker", "tpu"], "tf.distribute strategy.")
flags.DEFINE_integer("num_devices", None, "Devices for --strategy=mirrored (default: all GPUs).", lower_bound=1)
flags.DEFINE_bool("scale_lr", False, "Multiply --learning_rate by the number of replicas (linear scaling rule).")
flags.DEFINE_enum("mixed_precision", "auto", ["auto", "none", "mixed_float16", "mixed_bfloat16"],
                  "Keras precision policy; auto: mixed_bfloat16 on a CPU with AMX/AVX512_BF16 and no GPU, "
                  "else float32 (tfadakd.precision.default_policy).")
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
flags.DEFINE_bool("sync_batch_norm", False, "Batch-norm statistics over the global batch across replicas (BatchNormalization(synchronized=True)).")


def build_model(name, num_classes):
    """A zoo model, with synchronized batch norm if --sync_batch_norm; exits on an unknown name."""
    import tfadakd

    try:
        model = tfadakd.models.build(name, num_classes=num_classes)
    except ValueError as error:
        fail(str(error))
    return tfadakd.distribute.synchronize_batch_norm(model) if FLAGS.sync_batch_norm else model


def milestones(name="lr_milestones"):
    """The milestones flag `name` as integers; exits with a message if they are not positive and increasing."""
    raw = getattr(FLAGS, name)
    try:
        values = [int(v) for v in raw]
    except ValueError:
        fail(f"--{name} must be integers, got {','.join(raw)!r}.")
    if any(b <= a for a, b in zip(values, values[1:])) or any(v <= 0 for v in values):
        fail(f"--{name} must be positive and increasing, got {values!r}.")
    return values


def setup():
    """Quiet logs, seeds, mixed precision and the strategy; returns the strategy."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # tfds reports every dataset it opens at INFO
    import keras

    import tfadakd

    if FLAGS.strategy == "mirrored" and (FLAGS.num_devices or 1) > 1:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):  # CPU only: split it into logical devices
            try:
                tfadakd.distribute.split_cpu(FLAGS.num_devices)
            except RuntimeError:  # TensorFlow already initialized: get_strategy reports the device count
                pass
    keras.utils.set_random_seed(FLAGS.seed)
    policy = tfadakd.precision.resolve_policy(FLAGS.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    if FLAGS.mixed_precision == "auto":
        print(f"--mixed_precision=auto: using the {policy} policy.")
    try:
        strategy = tfadakd.distribute.get_strategy(FLAGS.strategy, FLAGS.num_devices)
        tfadakd.distribute.check_global_batch(FLAGS.batch_size, strategy)
    except ValueError as error:
        fail(f"{error} (flags --strategy={FLAGS.strategy}, --num_devices={FLAGS.num_devices}, "
             f"--batch_size={FLAGS.batch_size})")
    return strategy


def writable(directory):
    """Creates `directory` and checks it is writable; exits with a message if it is not."""
    import tfadakd

    try:
        return tfadakd.runs.ensure_writable(directory)
    except PermissionError as error:
        fail(str(error))


def fit_run(*args, **kwargs):
    """`tfadakd.runs.fit_run`, turning the failures it reports clearly into an exit with the message."""
    import errno

    import tfadakd

    try:
        return tfadakd.runs.fit_run(*args, **kwargs)
    except (tfadakd.callbacks.CheckpointError, tfadakd.distiller.NonFiniteError, PermissionError) as error:
        fail(str(error))
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES):
            raise
        fail(f"{error}\nFree some disk space (or fix the folder), then rerun the same command: the run "
             "resumes from its last complete epoch.")


def datasets(strategy):
    """Train and test pipelines from the flags; exits with the library's message if data is missing."""
    import tfadakd

    common = dict(data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, batch_size=FLAGS.batch_size)
    try:
        train = tfadakd.data.load_cifar(
            FLAGS.dataset, "train", num_examples=FLAGS.train_examples or None, seed=FLAGS.seed,
            drop_remainder=strategy.num_replicas_in_sync > 1, **common)
        test = tfadakd.data.load_cifar(FLAGS.dataset, "test", num_examples=FLAGS.test_examples or None, **common)
    except tfadakd.data.DataNotFoundError as error:
        fail(str(error))
    return train, test


def steps_per_epoch(strategy):
    import tfadakd

    n = FLAGS.train_examples or tfadakd.data.num_examples(FLAGS.dataset, "train")
    n = min(n, tfadakd.data.num_examples(FLAGS.dataset, "train"))
    return n // FLAGS.batch_size if strategy.num_replicas_in_sync > 1 else -(-n // FLAGS.batch_size)


def optimizer(strategy, learning_rate=None, lr_milestones=None):
    """The recipe's SGD with the step schedule, from the flags (or the given rate and milestones)."""
    import tfadakd

    rate = FLAGS.learning_rate if learning_rate is None else learning_rate
    if FLAGS.scale_lr:
        rate = tfadakd.distribute.scale_learning_rate(rate, strategy)
    schedule = tfadakd.optimizers.step_decay(
        rate, steps_per_epoch(strategy), lr_milestones or milestones(), FLAGS.lr_decay)
    return tfadakd.optimizers.SGD(schedule, momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay)


def metrics():
    import keras

    return ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")]


def run_dir(default_name):
    return os.path.join(FLAGS.output_dir, FLAGS.dataset, FLAGS.run_name or default_name)


def flag_config():
    """The exact flag values of this program, for config.json."""
    return {f.name: f.value for f in FLAGS.get_flags_for_module(sys.argv[0])} | {
        f.name: f.value for f in FLAGS.get_flags_for_module(__name__)}


def parse_flags(argv):
    """absl's flag parsing for `app.run(main, flags_parser=parse_flags)`: on a bad flag, exits with a
    message that names the flag file(s) the flags came from."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        files = [arg.split("=", 1)[1] for arg in argv[1:] if arg.lstrip("-").startswith("flagfile=")]
        where = f" (flags read from the command line and {', '.join(files)})" if files else ""
        message = str(error).replace("ERROR:: ", "")
        fail(f"Flags parsing error: {message}{where}. Pass --helpshort or --helpfull to see the flags.")


def fail(message):
    """Exits with a clear message and status 2, without a traceback."""
    print(f"\nERROR: {message}", file=sys.stderr)
    sys.exit(2)


def print_table(rows, title):
    """Prints a small aligned table: rows are dicts with the same keys."""
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys}
    print(f"\n{title}")
    print("  ".join(k.ljust(widths[k]) for k in keys))
    print("  ".join("-" * widths[k] for k in keys))
    for row in rows:
        print("  ".join(_fmt(row[k]).ljust(widths[k]) for k in keys))


def _fmt(value):
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def dump(obj):
    return json.dumps(obj, indent=2, sort_keys=True)
