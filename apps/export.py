"""Exports a run's student to TFLite / LiteRT and checks it against the Keras model.

    python apps/export.py --run_dir=saved_models/cifar100/resnet8x4_from_resnet32x4_kd_adaptive_std_s0 --quantization=int8

Writes `<run_dir>/export/student_<mode>.tflite` for each mode (and a SavedModel with --saved_model),
and `<run_dir>/export.json`: per mode the file size, the Keras and the TFLite top-1 on the test set,
the argmax agreement, the mean latency per image and the operator list. The images come from the data
the run trained on, as its config.json records it (data set, preprocessing, image size; --dataset only
for a run without one): CIFAR, any tfds image-classification set, or folder:PATH. The test images are its
evaluation split (test; validation for ImageNet and folders); int8 calibration uses --calibration_examples
training images in the evaluation view (no augmentation).
"""

import os

from absl import app, flags

import app_flags
import common
import exporting

FLAGS = flags.FLAGS
app_flags.define_data_flags()
flags.DEFINE_string("run_dir", None, "Run directory written by apps/distill.py or apps/train_teacher.py.")
flags.DEFINE_enum("student_file", "best", ["best", "final"], "Which saved student: student_best.keras or student_final.keras.")
flags.DEFINE_list("quantization", ["none", "int8"], "Modes: none, float16, dynamic, int8.")
flags.DEFINE_integer("calibration_examples", 300, "Training images for int8 calibration.", lower_bound=1)
flags.DEFINE_bool("saved_model", False, "Also write a SavedModel (for TF Serving) to <run_dir>/export/saved_model.")


def main(argv):
    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}; flags look like --name=value.")
    if not FLAGS.run_dir:
        common.fail("--run_dir is required: the directory of a run written by apps/distill.py.")
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # tfds reports every dataset it opens at INFO
    if not FLAGS.quantization:
        common.fail("--quantization is empty: name at least one mode (none, float16, dynamic, int8).")
    report = exporting.export_run(FLAGS.run_dir, FLAGS.quantization, FLAGS.dataset, FLAGS.student_file,
                                  FLAGS.calibration_examples, FLAGS.saved_model, FLAGS.test_examples or None,
                                  FLAGS.data_dir, FLAGS.manual_dir)
    exporting.print_report(report)
    print(f"\nWrote {os.path.join(FLAGS.run_dir, 'export.json')}")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
