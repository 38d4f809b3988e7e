"""Helpers shared by the apps. Neither they nor the library read flags: each app's `main` freezes its
flags into a `Config` (`Config.from_flags()`) and passes it down; this module turns it into library
calls (`tfadakd.data.load_cifar`, `tfadakd.models.build`, `tfadakd.runs.fit_run`, ...). The shared
flag groups are in app_flags.py."""

import contextlib
import json
import math
import os
import signal
import sys

from absl import flags


class Config:
    """The frozen flag values of one app run: attribute access, no assignment, lists as tuples.

    Example:

    ```python
    config = Config({"epochs": 5, "lr_milestones": ["3"]})
    config.epochs                                   # 5
    config.replace(epochs=6).epochs                  # 6; config itself is unchanged
    ```
    """

    def __init__(self, values):
        object.__setattr__(self, "_values", {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def from_flags(cls, flag_values=None):
        """The parsed flags of this program (its own and the shared groups), as a Config."""
        flag_values = flag_values or flags.FLAGS
        modules = (sys.argv[0], "app_flags", __name__)
        return cls({f.name: f.value for module in modules for f in flag_values.get_flags_for_module(module)})

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"This app has no flag --{name}.") from None

    def __setattr__(self, name, value):
        raise AttributeError(f"Config is frozen: use config.replace({name}=...) for a changed copy.")

    def __contains__(self, name):
        return name in self._values

    def replace(self, **changes):
        return Config({**self._values, **changes})

    def as_dict(self):
        """The values as a JSON-serializable dict (for config.json)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items()}


def build_model(config, name, num_classes, input_shape=(32, 32, 3)):
    """A zoo model, with synchronized batch norm if --sync_batch_norm; exits on an unknown name.

    The random state is set from --seed first, so that a model's initial weights depend only on the seed
    and the model, not on what ran before in the process (a teacher trained first, say)."""
    import keras

    import tfadakd

    keras.utils.set_random_seed(config.seed)
    try:
        model = tfadakd.models.build(name, num_classes=num_classes, input_shape=tuple(input_shape))
    except ValueError as error:
        fail(str(error))
    return tfadakd.distribute.synchronize_batch_norm(model) if config.sync_batch_norm else model


def check_model_name(flag, name):
    """Exits with the valid names unless `name` is a zoo model."""
    import tfadakd

    if name not in tfadakd.models.names() and not name.startswith("wrn_"):
        fail(f"Unknown --{flag} {name!r}. Valid names: {', '.join(tfadakd.models.names())}.")


def milestones(config, name="lr_milestones", epochs=None):
    """The milestones flag `name` as integers; exits with a message if they are not positive and increasing,
    or if one lies beyond `epochs` (default `config.epochs`), where it would never lower the learning rate."""
    raw = getattr(config, name)
    try:
        values = [int(v) for v in raw]
    except ValueError:
        fail(f"--{name} must be integers, got {','.join(raw)!r}.")
    if any(b <= a for a, b in zip(values, values[1:])) or any(v <= 0 for v in values):
        fail(f"--{name} must be positive and increasing, got {values!r}.")
    epochs = config.epochs if epochs is None else epochs
    if any(v > epochs for v in values):
        scaled = ",".join(str(max(1, round(v * epochs / max(values[-1] * 8 / 7, epochs)))) for v in values)
        fail(f"--{name}={','.join(map(str, values))} lies beyond the {epochs} epochs of the run: the learning rate "
             f"would never drop there. Scale the milestones to the epochs (e.g. --{name}={scaled}), or pass "
             f"--{name}= for a constant learning rate.")
    return values


def setup(config):
    """Quiet logs, seeds, mixed precision and the strategy; returns the strategy."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # tfds reports every dataset it opens at INFO
    import keras

    import tfadakd

    if config.strategy == "mirrored" and (config.num_devices or 1) > 1:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):  # CPU only: split it into logical devices
            try:
                tfadakd.distribute.split_cpu(config.num_devices)
            except RuntimeError:  # TensorFlow already initialized: get_strategy reports the device count
                pass
    keras.utils.set_random_seed(config.seed)
    policy = tfadakd.precision.resolve_policy(config.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    if config.mixed_precision == "auto":
        print(f"--mixed_precision=auto: using the {policy} policy.")
    try:
        strategy = tfadakd.distribute.get_strategy(config.strategy, config.num_devices)
        tfadakd.distribute.check_global_batch(config.batch_size, strategy)
    except ValueError as error:
        fail(f"{error} (flags --strategy={config.strategy}, --num_devices={config.num_devices}, "
             f"--batch_size={config.batch_size})")
    return strategy


def writable(directory):
    """Creates `directory` and checks it is writable; exits with a message if it is not."""
    import tfadakd

    try:
        return tfadakd.runs.ensure_writable(directory)
    except PermissionError as error:
        fail(str(error))


#: Flags a rerun may change and still resume a run: where things are, what happens after training, how
#: much is printed, and more epochs. Anything else (the method, the data, the recipe) is refused.
RESUMABLE_CHANGES = ("epochs", "verbose", "data_dir", "manual_dir", "output_dir", "teacher_path", "teacher_cache",
                     "export_tflite", "baseline_student", "dry_run", "plugins", "train_teacher_if_missing",
                     "unsafe_teacher", "strategy", "num_devices", "scale_lr", "jit_compile", "test_examples",
                     # The data's description: follows from --dataset, --preprocessing and --image_size (compared
                     # themselves); runs from before it was recorded resume.
                     "data",
                     # What the training examples are (files, version): compared by check_same_data, which names
                     # the change; runs from before it was recorded resume.
                     "training_data")


def check_same_data(run_dir, config):
    """Exits when `run_dir` was started on other training examples than `config["training_data"]` (a folder
    whose files changed, another tfds version): resuming would mix two data sets in one run."""
    from tfadakd.data.identity import describe_data_change
    from tfadakd.files import read_json
    from tfadakd.runs import CONFIG, comparable

    recorded = read_json(os.path.join(run_dir, CONFIG), {})
    old = recorded.get("training_data") if isinstance(recorded, dict) else None
    new = (config or {}).get("training_data")
    if old is None or new is None or comparable(old) == comparable(new):
        return
    fail(f"{run_dir} was started on other training examples ({describe_data_change(old, new)}). "
         "Its epochs so far saw the data as it was; nothing was trained or overwritten. Restore the data, or start "
         "a new run (--run_name or --output_dir).")


def training_config(config, model, **overrides):
    """What determines a plain model's training (the shared training flags and the model), for the
    config.json of a teacher or a student-alone run: a rerun with other distillation flags resumes it."""
    shared = {f.name for f in flags.FLAGS.get_flags_for_module("app_flags")}
    values = config.as_dict()
    return {"model": model, **{k: v for k, v in values.items() if k in shared or not shared}, **overrides}


def fit_run(*args, **kwargs):
    """`tfadakd.runs.fit_run`, turning the failures it reports clearly into an exit with the message."""
    import errno

    import tfadakd

    kwargs.setdefault("may_change", RESUMABLE_CHANGES)
    check_same_data(args[3] if len(args) > 3 else kwargs["run_dir"], kwargs.get("config"))
    try:
        return tfadakd.runs.fit_run(*args, **kwargs)
    except (tfadakd.checkpoints.CheckpointError, tfadakd.runs.RunConflictError, tfadakd.step_guard.NonFiniteError,
            PermissionError) as error:
        fail(str(error))
    except tfadakd.graceful_stop.TrainingInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr, flush=True)
        sys.exit(128 + stop.signum)  # the shell's convention for a process ended by a signal
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES):
            raise
        fail(f"{error}\nFree some disk space (or fix the folder), then rerun the same command: the run "
             "resumes from its last complete epoch.")


def train_model(config, strategy, data, model_name, run_dir, epochs, learning_rate, run_config, save_path=None,
                lr_milestones=None, callbacks=()):
    """Trains `model_name` from scratch with cross-entropy into `run_dir` (with more Keras `callbacks`);
    returns (results, model).

    `data` is `datasets(...)`'s `Data`: its validation split chooses the best epoch, its test split (when
    it is another split) is evaluated every epoch and only reported.
    """
    import keras

    import tfadakd

    run_config = {**run_config, "data": data.description, "training_data": data.train.description}
    with strategy.scope():
        model = build_model(config, model_name, data.num_classes, data.image_shape)
        model.compile(
            optimizer=optimizer(config, strategy, data.steps_per_epoch, learning_rate, lr_milestones),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=metrics(),
            jit_compile=config.jit_compile,
        )
    results = fit_run(model, data.train, data.validation, run_dir, epochs, config=run_config,
                      verbose=config.verbose, test_data=data.reported_test, callbacks=list(callbacks))
    if save_path:
        from tfadakd.files import save_model

        try:
            os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
            save_model(model, save_path)
        except OSError as error:
            fail(f"{error}\nThe run itself is complete in {run_dir}; fix the folder or free disk "
                 "space and rerun the same command to write the model.")
    return results, model


class Data:
    """The pipelines of one run: `train` (a `tfadakd.data.EpochPipeline`), `validation` (chooses the
    best epoch), `test`, and `reported_test` (the test pipeline when it is not the validation one, else
    None); `source` is the `tfadakd.data.ImageDataset` they come from (classes, input shape, calibration
    images, `description` for config.json)."""

    def __init__(self, train, validation, test, source=None):
        self.train, self.validation, self.test, self.source = train, validation, test, source
        self.reported_test = None if validation is test else test

    @property
    def num_classes(self):
        return self.source.num_classes

    @property
    def image_shape(self):
        return self.source.image_shape

    @property
    def description(self):
        """The data and its preprocessing (family, image size, normalization) as recorded in config.json."""
        return self.source.describe()

    @property
    def steps_per_epoch(self):
        """Batches in one epoch, as the training pipeline itself counts them."""
        return self.train.steps_per_epoch

    def with_train(self, train):
        """The same pipelines with another training pipeline (e.g. one carrying teacher logits)."""
        return Data(train, self.validation, self.test, self.source)


def open_data(config):
    """The --dataset's `tfadakd.data.ImageDataset` with --preprocessing and --image_size; exits with the
    library's message when it cannot be opened (unknown name, not image classification, empty folder, ...)."""
    import tfadakd

    try:
        return tfadakd.data.open_dataset(
            config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir,
            preprocessing=config.preprocessing if "preprocessing" in config else None,
            image_size=config.image_size if "image_size" in config else None)
    except (tfadakd.data.DataNotFoundError, ValueError) as error:
        fail(str(error))


def datasets(config, strategy):
    """The run's `Data` from the flags; exits with the library's message if data is missing.

    The test pipeline is the data's evaluation split (test; validation for ImageNet and image folders).
    With --validation_examples=N the validation pipeline is the last N training images (not augmented)
    and the training pipeline never sees them; with N=0 the validation pipeline is the test pipeline.
    """
    import tfadakd

    source = open_data(config)
    try:
        train = source.epochs(
            train_split_name(config, source), batch_size=config.batch_size,
            num_examples=config.train_examples or None, seed=config.seed, data_seed=config.data_seed,
            drop_remainder=strategy.num_replicas_in_sync > 1)
        test = source.evaluation(batch_size=config.batch_size, num_examples=config.test_examples or None)
        validation = test
        if config.validation_examples:
            validation = source.evaluation(f"train[-{config.validation_examples}:]", batch_size=config.batch_size)
    except tfadakd.data.DataNotFoundError as error:
        fail(str(error))
    except ValueError as error:  # e.g. too few examples for one batch
        fail(f"{error} (--train_examples={config.train_examples}, --batch_size={config.batch_size})")
    return Data(train, validation, test, source)


def top1_columns(results):
    """Table columns for a run's results: test top-1 at the epoch chosen on validation and at the last epoch."""
    if "test_top1_last" in results:  # a validation split chose the epoch; the test set is only reported
        return {"test top-1 (chosen on val)": results.get("test_top1_selected"),
                "test top-1 (last)": results.get("test_top1_last")}
    return {"test top-1 (best, chosen on test)": results.get("best_top1"), "test top-1 (last)": results.get("last_top1")}


def train_split_name(config, source):
    """The split the training pipeline reads: 'train' minus the validation split; exits if nothing is left."""
    total = source.num_examples("train")
    if config.validation_examples >= total:
        fail(f"--validation_examples={config.validation_examples} leaves no training image ({config.dataset} has "
             f"{total}); hold out fewer, e.g. --validation_examples={max(1, total // 10)}.")
    return f"train[:{total - config.validation_examples}]" if config.validation_examples else "train"


def optimizer(config, strategy, steps_per_epoch, learning_rate=None, lr_milestones=None):
    """The recipe's SGD with the step schedule, from the flags (or the given rate and milestones)."""
    import tfadakd

    rate = config.learning_rate if learning_rate is None else learning_rate
    if config.scale_lr:
        rate = tfadakd.distribute.scale_learning_rate(rate, strategy)
    schedule = tfadakd.optimizers.step_decay(
        rate, steps_per_epoch, milestones(config) if lr_milestones is None else lr_milestones, config.lr_decay)
    return tfadakd.optimizers.SGD(schedule, momentum=config.momentum, weight_decay=config.weight_decay)


def metrics():
    import keras

    return ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")]


def epochs_done(run_dir):
    """Epochs a run directory has completed (its checkpoint state), 0 for a new run."""
    import tfadakd

    try:
        state = tfadakd.files.read_json(os.path.join(run_dir, "checkpoints", "state.json"))
    except (OSError, ValueError):  # no such folder, or a damaged state: the run itself reports it later
        return 0
    return int(state["epoch"]) + 1 if isinstance(state, dict) and "epoch" in state else 0


def device_description():
    """The accelerators TensorFlow sees, or the CPU with its core count and bf16 features; and whether
    there is an accelerator."""
    import tensorflow as tf

    import tfadakd

    accelerators = tf.config.list_physical_devices("GPU") + tf.config.list_physical_devices("TPU")
    if accelerators:
        return f"{len(accelerators)} x {accelerators[0].device_type}", True
    features = [f for f in ("amx_bf16", "avx512_bf16") if f in tfadakd.precision.cpu_flags()]
    return f"CPU, {os.cpu_count()} cores{', ' + '/'.join(features) if features else ''}", False


def dataset_dir(config):
    """The data set's folder name in <output_dir>/<dataset>/<run>: --dataset itself, folder_<basename>_<hash> for
    folder:PATH (the full path is in each run's config.json)."""
    import tfadakd

    return tfadakd.data.directory_name(config.dataset)


def run_dir(config, default_name):
    """`<output_dir>/<dataset>/<run_name or default_name>`; exits when --run_name would leave that folder
    (an absolute path, or `..` climbing out of it)."""
    name = config.run_name or default_name
    if os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == os.pardir:
        fail(f"--run_name={name} would write outside --output_dir ({config.output_dir}): pass a name, or a relative "
             "path inside it (e.g. --run_name=experiments/kd_T4); choose the folder itself with --output_dir.")
    return os.path.join(config.output_dir, dataset_dir(config), name)


@contextlib.contextmanager
def stop_message(what, resume):
    """Inside: a SIGTERM or Ctrl-C ends the process with 128 + the signal after saying what it stopped and how
    to go on (the work inside writes its files atomically, so nothing finished is lost)."""
    def stop(signum, frame):
        print(f"\nStopped by {signal.Signals(signum).name} during {what}. {resume}", file=sys.stderr, flush=True)
        sys.exit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def parse_flags(argv):
    """absl's flag parsing for `app.run(main, flags_parser=parse_flags)`: on a bad flag, exits with a
    message that names the flag file(s) the flags came from. NaN and infinite float flags are refused
    (absl's bounds let NaN through)."""
    try:
        parsed = flags.FLAGS(argv)
    except flags.Error as error:
        files = [arg.split("=", 1)[1] for arg in argv[1:] if arg.lstrip("-").startswith("flagfile=")]
        where = f" (flags read from the command line and {', '.join(files)})" if files else ""
        message = str(error).replace("ERROR:: ", "")
        fail(f"Flags parsing error: {message}{where}. Pass --helpshort or --helpfull to see the flags.")
    for name, value in flags.FLAGS.flag_values_dict().items():
        if isinstance(value, float) and not math.isfinite(value):
            fail(f"--{name}={value}: must be a finite number.")
    return parsed


def load_error(path, error):
    """What went wrong loading the `.keras` file `path`, in words (Keras says "File not found" for any file
    that is not a readable zip archive, truncated ones included)."""
    if os.path.exists(path) and str(error).startswith("File not found"):
        return (f"the file exists ({os.path.getsize(path)} bytes) but is not a readable .keras archive: it is "
                "truncated or damaged")
    return f"{type(error).__name__}: {error}"


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
