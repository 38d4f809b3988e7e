"""The flag groups the apps share. Each app defines the groups it reads (and only those), so that a
flag an app would ignore is refused by its parser:

| group | defined by |
| --- | --- |
| `define_data_flags` | train_teacher, distill, sweep, export |
| `define_training_flags` | train_teacher, distill, sweep |

Calling a group twice in one process (e.g. a test driver importing two apps) defines it once.
"""

from absl import flags

_DEFINED = set()


def _once(group):
    def define():
        if group.__name__ not in _DEFINED:
            _DEFINED.add(group.__name__)
            group()

    define.__doc__ = group.__doc__
    define.__name__ = group.__name__
    return define


def _check_dataset(value):
    """The --dataset value's form (whether tfds knows the name is checked when the data is opened)."""
    if not value or not value.strip():
        raise flags.ValidationError("--dataset is empty: pass cifar10, cifar100, a tfds image-classification name "
                                    "(e.g. imagenet2012) or folder:PATH.")
    if value.startswith("folder:") and not value[len("folder:"):].strip():
        raise flags.ValidationError(f"--dataset={value} names no folder: pass folder:PATH, e.g. "
                                    "--dataset=folder:/data/flowers.")
    return True


@_once
def define_data_flags():
    """Where the data is and which slice of the test set to evaluate."""
    flags.DEFINE_string(
        "dataset", "cifar100", "Data set: cifar10, cifar100, any tfds image-classification name (imagenet2012, "
        "oxford_flowers102, ...), or folder:PATH (a folder of class sub-folders, or of train/ and val/ folders of "
        "them; without val/, a deterministic 10% of each class is the validation split).")
    flags.register_validator("dataset", _check_dataset)
    flags.DEFINE_string(
        "data_dir", None, "tfds data dir holding (or receiving) the prepared data set; default: tfds' own "
        "($TFDS_DATA_DIR or ~/tensorflow_datasets), which downloads when online.")
    flags.DEFINE_string(
        "manual_dir", None, "Folder holding the official cifar-10-binary.tar.gz / cifar-100-binary.tar.gz, "
        "for machines without internet.")
    flags.DEFINE_integer("test_examples", 0, "Use only the first N test examples (0: all).", lower_bound=0)


@_once
def define_training_flags():
    """Training data, optimization, run directories, scale and speed."""
    # ------------------------------------------------------------------------ training data
    flags.DEFINE_integer("train_examples", 0, "Use only the first N training examples (0: all but the validation split).",
                         lower_bound=0)
    flags.DEFINE_integer(
        "validation_examples", 0, "Hold out the last N training images (never trained on) as the validation split "
        "that chooses the best epoch; the test set is then only reported (test top-1 at the chosen and at the last "
        "epoch). 0: no split, the best epoch is chosen on the test set (the literature's habit; results say so).",
        lower_bound=0)
    flags.DEFINE_enum("preprocessing", None, ["cifar", "imagenet"],
                      "Preprocessing family (default: from the data, cifar for CIFAR, imagenet otherwise). cifar: pad 4 + "
                      "random crop + flip (other data resized to --image_size first); imagenet: random resized crop + "
                      "flip for training, resize to --image_size/0.875 + center crop for evaluation, ImageNet mean/std.")
    flags.DEFINE_integer("image_size", None, "Input height and width of the models (default: 32 for cifar "
                         "preprocessing, 224 for imagenet).", lower_bound=8)
    flags.DEFINE_integer("batch_size", 64, "Global batch size (split over replicas).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed for weights and the order of the batches (and the augmentation "
                         "unless --data_seed is given).")
    flags.DEFINE_integer("data_seed", None, "Seed of the augmentation alone (default: --seed): example i's crop and "
                         "flip at epoch e depend only on (data_seed, e, i). Runs that share a teacher-logit cache "
                         "(--teacher_cache) share it.")

    # ------------------------------------------------------------------------ optimization
    flags.DEFINE_integer("epochs", 240, "Training epochs.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 0.05, "Initial learning rate (0.01 for MobileNetV2 / ShuffleNet students).",
                       lower_bound=0.0)
    flags.DEFINE_list("lr_milestones", ["150", "180", "210"],
                      "Epochs at which the learning rate is multiplied by --lr_decay.")
    flags.DEFINE_float("lr_decay", 0.1, "Learning-rate decay factor at each milestone.", lower_bound=0.0)
    flags.DEFINE_float("momentum", 0.9, "SGD momentum (PyTorch semantics).", lower_bound=0.0, upper_bound=0.999)
    flags.DEFINE_float("weight_decay", 5e-4, "Coupled (PyTorch) weight decay on every parameter.", lower_bound=0.0)

    # ------------------------------------------------------------------------ runs
    flags.DEFINE_string("output_dir", "saved_models",
                        "Root of the run directories: <output_dir>/<dataset>/<run_name>/.")
    flags.DEFINE_string("run_name", None, "Run directory name (default: derived from the models and method).")
    flags.DEFINE_integer("verbose", 1, "Keras fit verbosity: 0 silent, 1 progress bars, 2 one line per epoch.",
                         lower_bound=0, upper_bound=2)

    # ------------------------------------------------------------------------ scale and speed
    flags.DEFINE_enum("strategy", "default", ["default", "one_device", "mirrored", "multi_worker", "tpu"],
                      "tf.distribute strategy.")
    flags.DEFINE_integer("num_devices", None, "Devices for --strategy=mirrored (default: all GPUs).", lower_bound=1)
    flags.DEFINE_bool("scale_lr", False, "Multiply --learning_rate by the number of replicas (linear scaling rule).")
    flags.DEFINE_enum("mixed_precision", "auto", ["auto", "none", "mixed_float16", "mixed_bfloat16"],
                      "Keras precision policy; auto: mixed_bfloat16 on a CPU with AMX/AVX512_BF16 and no GPU, "
                      "else float32 (tfadakd.precision.default_policy).")
    flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
    flags.DEFINE_bool("sync_batch_norm", False, "Batch-norm statistics over the global batch across replicas "
                      "(BatchNormalization(synchronized=True)).")
