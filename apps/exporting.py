"""Export of a run's student to TFLite with its parity report (export.json): the flag-free part of
apps/export.py, also used by apps/distill.py --export_tflite.

The test and calibration images come from the data the run trained on, as its config.json records it
(`"data"`: data set, preprocessing family, image size, normalization), opened with
`tfadakd.data.open_dataset`: CIFAR, any tfds image-classification set, or an image folder.

Example:

```python
record = run_data("saved_models/folder_pets/resnet8_from_resnet8_kd_adaptive_std_s0")
report = export_run(run_dir, ["none", "int8"], record["dataset"])   # writes <run_dir>/export.json
```
"""

import json
import os
import time

import numpy as np

import common


def run_data(run_dir, dataset=None):
    """The data record of the run in `run_dir`: its config.json's `"data"` (what `ImageDataset.describe()`
    wrote), or `{"dataset": <its "dataset">}` for a run from before that record, or `{"dataset": dataset}`
    when the folder has no config.json. Exits with a message when config.json is damaged or names no data.

    Example:

    >>> run_data("saved_models/cifar100/resnet8x4_from_resnet32x4_kd_adaptive_std_s0")["preprocessing"]
    'cifar'
    """
    path = os.path.join(run_dir, "config.json")
    config = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                config = json.load(f)
            if not isinstance(config, dict):
                raise ValueError(f"a JSON {type(config).__name__}, not an object")
        except ValueError as error:
            common.fail(f"{path} is damaged ({error}): it should be the JSON object the run wrote. Pass "
                        "the data set yourself (--dataset=...) after moving the file away, or restore it.")
    record = config.get("data")
    if not isinstance(record, dict):
        record = {"dataset": config.get("dataset", dataset)}
    if not isinstance(record.get("dataset"), str) or not record["dataset"]:
        common.fail(f"The data of {run_dir} is unknown: {path} names no data set ({record.get('dataset')!r}). "
                    "Pass it with --dataset=... (e.g. --dataset=cifar100 or --dataset=folder:/data/pets).")
    return record


def open_run_data(record, data_dir=None, manual_dir=None):
    """The run's `tfadakd.data.ImageDataset`: `record`'s data set (a folder by its recorded absolute path)
    with its preprocessing family and image size. Exits with the library's message, naming the run's
    data, when it cannot be opened or its normalization differs from the recorded one.

    Example:

    >>> source = open_run_data({"dataset": "folder:pets", "path": "/data/pets", "preprocessing": "imagenet",
    ...                         "image_size": 64})
    >>> source.image_shape
    (64, 64, 3)
    """
    import tfadakd

    name = record["dataset"]
    if record.get("kind") == "folder" and record.get("path"):
        name = f"{tfadakd.data.sources.FOLDER_PREFIX}{record['path']}"  # the run may have named it relative to its cwd
    what = (f"--dataset={name}, preprocessing {record.get('preprocessing') or 'default'}, image size "
            f"{record.get('image_size') or 'default'}")
    try:
        source = tfadakd.data.open_dataset(name, data_dir=data_dir, manual_dir=manual_dir,
                                           preprocessing=record.get("preprocessing"),
                                           image_size=record.get("image_size"))
    except (tfadakd.data.DataNotFoundError, ValueError) as error:
        common.fail(f"{error}\n(The run's data, from its config.json: {what}. Pass --data_dir / --manual_dir if "
                    "the data moved.)")
    recorded = record.get("normalization")
    if recorded is not None and recorded != source.describe()["normalization"]:
        common.fail(f"The run was trained with the normalization {recorded}, but {what} now gives "
                    f"{source.describe()['normalization']}: the exported model would see other inputs. Export "
                    "with the tfadakd version that trained the run.")
    return source


def export_run(run_dir, modes, *args, **kwargs):
    """`_export_run`, saying on SIGTERM / Ctrl-C that the export stopped and that rerunning it is safe."""
    with common.stop_message(f"the export of {run_dir}", "The trained run is intact; rerun the export (apps/export.py "
                             f"--run_dir={run_dir}): it writes every file again, atomically."):
        return _export_run(run_dir, modes, *args, **kwargs)


def _export_run(run_dir, modes, dataset=None, model_name="best", calibration_examples=300, saved_model=False,
                test_examples=None, data_dir=None, manual_dir=None):
    """Exports `run_dir`'s student in each mode and writes export.json; returns its content.

    The test images (the data's evaluation split: test, or validation for ImageNet and folders) and the
    int8 calibration images (the first `calibration_examples` training images, evaluation view) come
    from the run's data (`run_data`; `dataset` only when the run records none). `data_dir` /
    `manual_dir` locate it as in `tfadakd.data.open_dataset`."""
    import keras

    import tfadakd

    for mode in modes:
        if mode not in tfadakd.export.QUANTIZATION_MODES:
            common.fail(f"Unknown --quantization {mode!r}. Valid: {', '.join(tfadakd.export.QUANTIZATION_MODES)}.")
    path = os.path.join(run_dir, f"student_{model_name}.keras")
    if not os.path.exists(path):
        common.fail(f"{path} does not exist: pass the directory of a finished run (--run_dir).")
    record = run_data(run_dir, dataset)
    try:
        trained = keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 - zipfile, h5py and Keras each raise their own type
        other = "final" if model_name == "best" else "best"
        common.fail(f"Cannot load the student {path} ({common.load_error(path, error)}). The run writes it "
                    "atomically, so it was damaged afterwards. "
                    f"Export the other one (--student_file={other}), or delete the run directory and train it "
                    "again.")
    # A student trained under a mixed precision policy is exported (and compared) as its float32 copy.
    model = tfadakd.export.float32_model(trained)
    source = open_run_data(record, data_dir, manual_dir)
    try:
        test = source.evaluation(batch_size=100, num_examples=test_examples)
        calibration = source.calibration_images(calibration_examples) if "int8" in modes else None
    except (tfadakd.data.DataNotFoundError, ValueError) as error:
        common.fail(f"{error}\n(The run's data: --dataset={source.name}, {source.evaluation_split} split for the "
                    f"test, {calibration_examples} training images for int8 calibration.)")

    keras_logits, labels = [], []
    for x, y in test:
        keras_logits.append(model.predict_on_batch(x))
        labels.append(np.asarray(y))
    keras_logits, labels = np.concatenate(keras_logits), np.concatenate(labels)
    keras_top1 = float(np.mean(keras_logits.argmax(-1) == labels))

    out_dir = os.path.join(run_dir, "export")
    report = {"source": path, "trained_compute_dtype": str(trained.compute_dtype), "dataset": source.name,
              "preprocessing": source.family, "image_size": source.image_size,
              "test_split": source.evaluation_split, "test_examples": int(len(labels)),
              "calibration_examples": None if calibration is None else int(len(calibration)),
              "keras_top1": keras_top1, "keras_logit_range": float(np.ptp(keras_logits)),
              "interpreter": tfadakd.export.interpreter_backend(), "modes": {}}
    try:
        os.makedirs(out_dir, exist_ok=True)
        for mode in modes:
            report["modes"][mode] = _export_mode(model, mode, out_dir, test, calibration, keras_logits, labels,
                                                 report["modes"].get("none", {}).get("size_bytes"))
        if saved_model:
            report["saved_model"] = tfadakd.export.to_saved_model(model, os.path.join(out_dir, "saved_model"))
        tfadakd.files.atomic_write_json(os.path.join(run_dir, "export.json"), report)
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
    rows = [{"mode": mode, "KB": r["size_bytes"] / 1024,
             "x float32": "-" if r["size_vs_float32"] is None else r["size_vs_float32"],
             "Keras top-1": 100 * report["keras_top1"], "TFLite top-1": 100 * r["tflite_top1"],
             "agree %": 100 * r["argmax_agreement"], "ms/image": r["latency_ms_per_image"]}
            for mode, r in report["modes"].items()]
    common.print_table(rows, f"Export of {report['source']} ({report['test_examples']} test images, {report['interpreter']})")
    if any(row["x float32"] == "-" for row in rows):
        print("x float32: '-' where no float32 file was exported in the same command to compare with (add mode none).")
