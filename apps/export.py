"""Exports a run's student to TFLite / LiteRT and checks it against the Keras model.

    python apps/export.py --run_dir=saved_models/cifar100/resnet8x4_from_resnet32x4_kd_adaptive_std_s0 --quantization=int8

Writes `<run_dir>/export/student_<mode>.tflite` for each mode (and a SavedModel with --saved_model),
and `<run_dir>/export.json`: per mode the file size, the Keras and the TFLite top-1 on the test set,
the argmax agreement, the mean latency per image and the operator list. Int8 calibration uses
--calibration_examples real training images through the training preprocessing (no augmentation).
The data set is read from the run's config.json (else --dataset).
"""

import json
import os
import time

import numpy as np
from absl import app, flags

import common

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory written by apps/distill.py or apps/train_teacher.py.")
flags.DEFINE_enum("student_file", "best", ["best", "final"], "Which saved student: student_best.keras or student_final.keras.")
flags.DEFINE_list("quantization", ["none", "int8"], "Modes: none, float16, dynamic, int8.")
flags.DEFINE_integer("calibration_examples", 300, "Training images for int8 calibration.", lower_bound=1)
flags.DEFINE_bool("saved_model", False, "Also write a SavedModel (for TF Serving) to <run_dir>/export/saved_model.")


def export_run(run_dir, modes, dataset, model_name="best", calibration_examples=300, saved_model=False,
               test_examples=None):
    """Exports `run_dir`'s student in each mode and writes export.json; returns its content."""
    import keras

    import tfadakd

    for mode in modes:
        if mode not in tfadakd.export.QUANTIZATION_MODES:
            common.fail(f"Unknown --quantization {mode!r}. Valid: {', '.join(tfadakd.export.QUANTIZATION_MODES)}.")
    path = os.path.join(run_dir, f"student_{model_name}.keras")
    if not os.path.exists(path):
        common.fail(f"{path} does not exist: pass the directory of a finished run (--run_dir).")
    trained = keras.models.load_model(path)
    # A student trained under a mixed precision policy is exported (and compared) as its float32 copy.
    model = tfadakd.export.float32_model(trained)
    common_data = dict(data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir)
    try:
        test = tfadakd.data.load_cifar(dataset, "test", batch_size=100, num_examples=test_examples, **common_data)
        calibration = (tfadakd.data.calibration_images(dataset, n=calibration_examples, **common_data)
                       if "int8" in modes else None)
    except tfadakd.data.DataNotFoundError as error:
        common.fail(str(error))

    keras_logits, labels = [], []
    for x, y in test:
        keras_logits.append(model.predict_on_batch(x))
        labels.append(np.asarray(y))
    keras_logits, labels = np.concatenate(keras_logits), np.concatenate(labels)
    keras_top1 = float(np.mean(keras_logits.argmax(-1) == labels))

    out_dir = os.path.join(run_dir, "export")
    os.makedirs(out_dir, exist_ok=True)
    report = {"source": path, "trained_compute_dtype": str(trained.compute_dtype), "dataset": dataset,
              "test_examples": int(len(labels)), "keras_top1": keras_top1,
              "interpreter": tfadakd.export.interpreter_backend(), "modes": {}}
    float_size = None
    for mode in modes:
        start = time.perf_counter()
        target = os.path.join(out_dir, f"student_{mode}.tflite")
        tfadakd.export.to_tflite(model, target, mode, representative_data=calibration if mode == "int8" else None)
        operators = tfadakd.export.check_builtin_only(target)
        tflite_logits = tfadakd.export.predict_tflite(target, np.concatenate([np.asarray(x) for x, _ in test]))
        timing = tfadakd.export.evaluate_tflite(target, test.take(5), batch_size=1)
        size = os.path.getsize(target)
        float_size = size if mode == "none" else float_size
        report["modes"][mode] = {
            "file": target,
            "size_bytes": size,
            "size_vs_float32": size / float_size if float_size else None,
            "tflite_top1": float(np.mean(tflite_logits.argmax(-1) == labels)),
            "argmax_agreement": float(np.mean(tflite_logits.argmax(-1) == keras_logits.argmax(-1))),
            "max_abs_logit_diff": float(np.max(np.abs(tflite_logits - keras_logits))),
            "latency_ms_per_image": timing["latency_ms_per_image"],
            "operators": sorted(set(operators)),
            "export_seconds": time.perf_counter() - start,
        }
    if saved_model:
        report["saved_model"] = tfadakd.export.to_saved_model(model, os.path.join(out_dir, "saved_model"))
    tfadakd.callbacks.atomic_write_json(os.path.join(run_dir, "export.json"), report)
    return report


def print_report(report):
    rows = [{"mode": mode, "KB": r["size_bytes"] / 1024, "x float32": r["size_vs_float32"] or float("nan"),
             "Keras top-1": 100 * report["keras_top1"], "TFLite top-1": 100 * r["tflite_top1"],
             "agree %": 100 * r["argmax_agreement"], "ms/image": r["latency_ms_per_image"]}
            for mode, r in report["modes"].items()]
    common.print_table(rows, f"Export of {report['source']} ({report['test_examples']} test images, {report['interpreter']})")


def main(argv):
    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}; flags look like --name=value.")
    if not FLAGS.run_dir:
        common.fail("--run_dir is required: the directory of a run written by apps/distill.py.")
    config_path = os.path.join(FLAGS.run_dir, "config.json")
    dataset = FLAGS.dataset
    if os.path.exists(config_path):
        with open(config_path) as f:
            dataset = json.load(f).get("dataset", dataset)
    common.setup()
    report = export_run(FLAGS.run_dir, FLAGS.quantization, dataset, FLAGS.student_file, FLAGS.calibration_examples,
                        FLAGS.saved_model, FLAGS.test_examples or None)
    print_report(report)
    print(f"\nWrote {os.path.join(FLAGS.run_dir, 'export.json')}")


if __name__ == "__main__":
    app.run(main)
