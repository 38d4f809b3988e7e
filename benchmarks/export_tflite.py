"""TFLite export of a CIFAR model in every quantization mode: size, accuracy, latency, operators.

Exports the model with `tfadakd.export.to_tflite` as float32 ("none"), "float16", "dynamic" (int8
weights) and full "int8" (calibrated on `--calibration` preprocessed train images), checks that every
file uses builtin TFLite operators only, and runs each through the LiteRT interpreter on the CIFAR
test split of `--dataset` (all 10,000 images unless `--test_examples`). Prints a Markdown table:
file size (KB, and ratio to float32), Keras top-1, TFLite top-1, argmax agreement with Keras, mean
interpreter latency per image, and the number of operators (nodes / distinct kinds).

Usage:
  python benchmarks/export_tflite.py                       # resnet8, briefly trained on CIFAR-10
  python benchmarks/export_tflite.py --model run/student.keras --dataset cifar100
  python benchmarks/export_tflite.py --epochs 10 --train_examples 10000 --output_dir /tmp/tflite

Without `--model`, trains `--arch` (default resnet8) for `--epochs` epochs on the first
`--train_examples` training images (Adam, no augmentation): a quick model, not a good one.

Data: `--data_dir`, else $TFDS_DATA_DIR, else ~/.cache/tfadakd/tfds when it exists, else tfds' default.
"""

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import default_data_dir  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfadakd import data, export, models  # noqa: E402


def train_briefly(args):
    keras.utils.set_random_seed(args.seed)
    train = data.load_cifar(args.dataset, "train", batch_size=64, data_dir=args.data_dir,
                            num_examples=args.train_examples, augment=False, seed=args.seed)
    model = models.build(args.arch, num_classes=data.num_classes(args.dataset))
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, shuffle=False, verbose=0)
    print(f"trained {args.arch} for {args.epochs} epochs on {args.train_examples} {args.dataset} "
          f"images in {time.perf_counter() - start:.0f} s", flush=True)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="A .keras model (logits output); default: train --arch briefly.")
    p.add_argument("--dataset", default="cifar10", choices=list(data.DATASETS),
                   help="The model's data set: calibration and test images come from it.")
    p.add_argument("--data_dir", default=default_data_dir())
    p.add_argument("--arch", default="resnet8", help="Model to train when --model is not given.")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train_examples", type=int, default=2000)
    p.add_argument("--learning_rate", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calibration", type=int, default=300, help="Representative images for int8.")
    p.add_argument("--test_examples", type=int, default=0, help="0: the whole test split.")
    p.add_argument("--latency_batch", type=int, default=1,
                   help="Images per interpreter invoke in the evaluation (1: single-image latency).")
    p.add_argument("--num_threads", type=int, default=1, help="Interpreter threads.")
    p.add_argument("--output_dir", default=None, help="Where to keep the .tflite files (default: a temp dir).")
    args = p.parse_args(argv)

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + list(argv or sys.argv[1:]))
    if args.model:
        model = keras.saving.load_model(args.model, compile=False)
        source = args.model
    else:
        model = train_briefly(args)
        source = f"{args.arch} trained {args.epochs} epochs on {args.train_examples} {args.dataset} images"

    test = data.load_cifar(args.dataset, "test", batch_size=100, data_dir=args.data_dir,
                           num_examples=args.test_examples or None)
    images, labels = (np.concatenate(a) for a in zip(*test.as_numpy_iterator()))
    keras_logits = model.predict(images, batch_size=100, verbose=0)
    keras_top1 = float(np.mean(keras_logits.argmax(-1) == labels))
    calibration = data.calibration_images(args.dataset, n=args.calibration, data_dir=args.data_dir)

    output_dir = args.output_dir or tempfile.mkdtemp(prefix="tfadakd_tflite_")
    rows, operators = [], {}
    for mode in export.QUANTIZATION_MODES:
        start = time.perf_counter()
        result = export.to_tflite(model, os.path.join(output_dir, f"{model.name}_{mode}.tflite"), mode,
                                  representative_data=calibration if mode == "int8" else None)
        convert_s = time.perf_counter() - start
        ops = export.tflite_operators(result)
        operators[mode] = export.check_builtin_only(result)
        metrics = export.evaluate_tflite(result, test, batch_size=args.latency_batch,
                                         num_threads=args.num_threads)
        logits = export.predict_tflite(result, images, batch_size=100, num_threads=args.num_threads)
        rows.append({
            "mode": mode, "bytes": result.size_bytes, "top1": metrics["top1"],
            "agree": float(np.mean(logits.argmax(-1) == keras_logits.argmax(-1))),
            "max_diff": float(np.max(np.abs(logits - keras_logits))),
            "latency": metrics["latency_ms_per_image"], "ops": len(ops), "kinds": len(set(ops)),
            "convert_s": convert_s, "n": metrics["num_examples"], "backend": metrics["interpreter"],
        })
        print(f"{mode}: converted in {convert_s:.1f} s, evaluated on {metrics['num_examples']} images",
              flush=True)

    base = rows[0]["bytes"]
    print()
    print(f"Model: {source} ({model.count_params():,} parameters); test: {rows[0]['n']} {args.dataset} "
          f"images; interpreter: {rows[0]['backend']}, {args.num_threads} thread(s), batch "
          f"{args.latency_batch}; TF {tf.__version__}, Keras {keras.__version__}, {platform.machine()}")
    print()
    print("| mode | size (KB) | vs float32 | Keras top-1 | TFLite top-1 | argmax = Keras | max abs logit diff "
          "| latency (ms/image) | ops (nodes / kinds) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['mode']} | {r['bytes'] / 1024:.1f} | {r['bytes'] / base:.3f} | {100 * keras_top1:.2f}% "
              f"| {100 * r['top1']:.2f}% | {100 * r['agree']:.2f}% | {r['max_diff']:.2g} | {r['latency']:.3f} "
              f"| {r['ops']} / {r['kinds']} |")
    print()
    for mode, names in operators.items():
        print(f"{mode} operators: {', '.join(names)}")
    print(f"files: {output_dir}")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
