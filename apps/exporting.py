"""Export of a run's student to TFLite with its parity report (export.json): the flag-free part of
apps/export.py, also used by apps/distill.py --export_tflite."""

import os
import time

import numpy as np

import common


def export_run(run_dir, modes, dataset, model_name="best", calibration_examples=300, saved_model=False,
               test_examples=None, data_dir=None, manual_dir=None):
    """Exports `run_dir`'s student in each mode and writes export.json; returns its content.

    `data_dir` / `manual_dir` locate the data set as in `tfadakd.data.load_cifar`."""
    import keras

    import tfadakd

    for mode in modes:
        if mode not in tfadakd.export.QUANTIZATION_MODES:
            common.fail(f"Unknown --quantization {mode!r}. Valid: {', '.join(tfadakd.export.QUANTIZATION_MODES)}.")
    path = os.path.join(run_dir, f"student_{model_name}.keras")
    if not os.path.exists(path):
        common.fail(f"{path} does not exist: pass the directory of a finished run (--run_dir).")
    try:
        trained = keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 - zipfile, h5py and Keras each raise their own type
        other = "final" if model_name == "best" else "best"
        common.fail(f"Cannot load the student {path} ({type(error).__name__}: {error}): the file is damaged "
                    "(truncated, or not a .keras model; the run writes it atomically, so it changed afterwards). "
                    f"Export the other one (--student_file={other}), or delete the run directory and train it "
                    "again.")
    # A student trained under a mixed precision policy is exported (and compared) as its float32 copy.
    model = tfadakd.export.float32_model(trained)
    common_data = dict(data_dir=data_dir, manual_dir=manual_dir)
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
    report = {"source": path, "trained_compute_dtype": str(trained.compute_dtype), "dataset": dataset,
              "test_examples": int(len(labels)), "keras_top1": keras_top1,
              "interpreter": tfadakd.export.interpreter_backend(), "modes": {}}
    try:
        os.makedirs(out_dir, exist_ok=True)
        for mode in modes:
            report["modes"][mode] = _export_mode(model, mode, out_dir, test, calibration, keras_logits, labels,
                                                 report["modes"].get("none", {}).get("size_bytes"))
        if saved_model:
            report["saved_model"] = tfadakd.export.to_saved_model(model, os.path.join(out_dir, "saved_model"))
        tfadakd.callbacks.atomic_write_json(os.path.join(run_dir, "export.json"), report)
    except OSError as error:  # a full disk, a read-only folder: the files written before stay as they were
        common.fail(f"{error}\nThe export stopped; every file it had finished is complete, and no partial file "
                    f"is left. Free some disk space (or fix the folder {out_dir}), then rerun the same command.")
    return report


def _export_mode(model, mode, out_dir, test, calibration, keras_logits, labels, float_size):
    """One mode's .tflite file and its row of export.json (`float_size`: the float32 file's bytes, if known)."""
    import tfadakd

    start = time.perf_counter()
    target = os.path.join(out_dir, f"student_{mode}.tflite")
    tfadakd.export.to_tflite(model, target, mode, representative_data=calibration if mode == "int8" else None)
    operators = tfadakd.export.check_builtin_only(target)
    tflite_logits = tfadakd.export.predict_tflite(target, np.concatenate([np.asarray(x) for x, _ in test]))
    timing = tfadakd.export.evaluate_tflite(target, test.take(5), batch_size=1)
    size = os.path.getsize(target)
    float_size = size if mode == "none" else float_size
    return {
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


def print_report(report):
    rows = [{"mode": mode, "KB": r["size_bytes"] / 1024, "x float32": r["size_vs_float32"] or float("nan"),
             "Keras top-1": 100 * report["keras_top1"], "TFLite top-1": 100 * r["tflite_top1"],
             "agree %": 100 * r["argmax_agreement"], "ms/image": r["latency_ms_per_image"]}
            for mode, r in report["modes"].items()]
    common.print_table(rows, f"Export of {report['source']} ({report['test_examples']} test images, {report['interpreter']})")
