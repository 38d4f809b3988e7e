"""Step time of tfadakd's adapter inside `keras.distillation.Distiller` against Keras' own loss, per backend.

    python benchmarks/keras_distillation_step.py --pair=resnet32x4,resnet8x4 --repetitions=15
    python benchmarks/keras_distillation_step.py --pair=tiny --repetitions=2 --synthetic     # smoke run

For each backend in `--backends` (default `tensorflow,jax`; each in its own process, since Keras fixes the
backend at import), the same `keras.distillation.Distiller` (same teacher, same student initialization,
`student_loss_weight=0.1`, SGD with momentum, `train_on_batch` on batches held in memory) is timed with:

- `keras T=4`: Keras' `LogitsDistillation(temperature=4.0, loss=keras.losses.KLDivergence())` (the correct
  KD loss: see docs/method.md section 8.1 for the default one);
- `tfadakd T=4`: `tfadakd.keras_distillation.Logits(tfadakd.losses.KD(4.0))`, the same loss;
- `tfadakd adaptive`: `Logits(KD(temperature="adaptive", standardize=True))`, the method.

It prints the ratio `tfadakd T=4 / keras T=4` (target <= 1.03: the adapter costs nothing) and
`tfadakd adaptive / keras T=4`. Repetitions cycle through the variants in a new random order each time
(medians), so that background load hits them alike.

Batches: real CIFAR-100 training images (normalized, read with tfds in this parent process), or random
CIFAR-shaped ones with `--synthetic`. Models: zoo names (`tfadakd.models`, which need TensorFlow installed,
also on the JAX backend), or `--pair=tiny` (two small plain-Keras CNNs, for a quick check).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)  # CIFAR-100, as tfadakd.data


def cifar_batches(path, n_batches, batch_size, synthetic, data_dir):
    """Writes `n_batches` batches of CIFAR-100 (or random CIFAR-shaped) images and labels to `path`."""
    import numpy as np

    n = n_batches * batch_size
    if synthetic:
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(n, 32, 32, 3)).astype("float32"), rng.integers(0, 100, n)
    else:
        import tensorflow_datasets as tfds

        sys.path.insert(0, HERE)
        from _common import default_data_dir

        dataset = tfds.load("cifar100", split=f"train[:{n}]", data_dir=data_dir or default_data_dir(),
                            as_supervised=True, batch_size=-1, download=False)
        x, y = tfds.as_numpy(dataset)
        x = ((x.astype("float32") / 255.0 - np.array(MEAN, "float32")) / np.array(STD, "float32"))
    np.savez(path, x=x.reshape(n_batches, batch_size, 32, 32, 3), y=y.reshape(n_batches, batch_size).astype("int32"))


# ---------------------------------------------------------------------------------------------- child
def tiny_cnn(width, seed, classes=100):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(classes)(h))


def build_model(name, seed, width):
    import keras

    if name == "tiny":
        return tiny_cnn(width, seed)
    import tfadakd

    keras.utils.set_random_seed(seed)
    return tfadakd.models.build(name, num_classes=100)


def build_variants(teacher_name, student_name, jit):
    """name -> callable(x, y) running one training step."""
    import keras

    import tfadakd

    teacher = build_model(teacher_name, 0, 32)
    student_weights = build_model(student_name, 1, 8).get_weights()
    losses = {
        "keras T=4": lambda: keras.distillation.LogitsDistillation(temperature=4.0, loss=keras.losses.KLDivergence()),
        "tfadakd T=4": lambda: tfadakd.keras_distillation.Logits(tfadakd.losses.KD(4.0)),
        "tfadakd adaptive": lambda: tfadakd.keras_distillation.Logits(
            tfadakd.losses.KD(temperature="adaptive", standardize=True)
        ),
    }
    variants = {}
    for name, make_loss in losses.items():
        student = build_model(student_name, 1, 8)
        student.set_weights(student_weights)
        distiller = keras.distillation.Distiller(
            teacher=teacher, student=student, distillation_losses=make_loss(), student_loss_weight=0.1
        )
        distiller.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        variants[name] = distiller.train_on_batch
    return variants


def measure(variants, batches, repetitions, warmup=3):
    """Median step time (ms) of each variant; repetitions interleave the variants in a random order."""
    times = {name: [] for name in variants}
    for step in variants.values():
        for i in range(warmup):
            step(*batches[i % len(batches)])
    order = list(variants)
    shuffle = random.Random(0).shuffle
    for rep in range(repetitions):
        shuffle(order)
        for name in order:
            x, y = batches[rep % len(batches)]
            start = time.perf_counter()
            variants[name](x, y)  # train_on_batch returns host values: the step has finished
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def child(args):
    import keras
    import numpy as np

    data = np.load(args.batches)
    batches = [(keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)) for x, y in zip(data["x"], data["y"])]
    teacher, student = args.pair.split(",") if "," in args.pair else (args.pair, args.pair)
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    ms = measure(build_variants(teacher, student, jit), batches, args.repetitions)
    versions = {"keras": keras.__version__}
    if keras.backend.backend() == "jax":
        import jax

        versions["jax"] = jax.__version__
        versions["device"] = str(jax.devices()[0])
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    print("RESULT" + json.dumps({"backend": keras.backend.backend(), "ms": ms, "versions": versions}))


# --------------------------------------------------------------------------------------------- parent
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet32x4,resnet8x4", help="teacher,student zoo names, or tiny")
    parser.add_argument("--backends", default="tensorflow,jax", help="comma list of Keras backends")
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                        help="compile(jit_compile=...): Keras' default auto is XLA on JAX, not on a TensorFlow CPU")
    parser.add_argument("--synthetic", action="store_true", help="random CIFAR-shaped batches instead of CIFAR-100")
    parser.add_argument("--data_dir", default=None, help="tfds data dir (default: benchmarks/_common.py)")
    parser.add_argument("--batches", help=argparse.SUPPRESS)  # child mode: the batches file
    args = parser.parse_args()
    if args.batches:
        return child(args)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "batches.npz")
        cifar_batches(path, 8, args.batch_size, args.synthetic, args.data_dir)
        for backend in args.backends.split(","):
            command = [sys.executable, os.path.abspath(__file__), "--batches", path, "--pair", args.pair,
                       "--repetitions", str(args.repetitions), "--jit", args.jit]
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
            proc = subprocess.run(command, env=env, capture_output=True, text=True)
            lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
            if proc.returncode != 0 or not lines:
                print(f"[{backend}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
                continue
            results.append(json.loads(lines[-1][len("RESULT"):]))

    data = "random CIFAR-shaped" if args.synthetic else "real CIFAR-100"
    print(f"\n{args.pair}, batch {args.batch_size}, {data} batches, keras.distillation.Distiller, "
          f"median of {args.repetitions} interleaved repetitions, jit_compile={args.jit}")
    for result in results:
        ms = result["ms"]
        print(f"\n[{result['backend']}] {result['versions']}")
        print("  step times (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))
        print(f"  tfadakd T=4 / keras T=4      = {ms['tfadakd T=4'] / ms['keras T=4']:.3f}   (target <= 1.03)")
        print(f"  tfadakd adaptive / keras T=4 = {ms['tfadakd adaptive'] / ms['keras T=4']:.3f}")
    print(f"\ncommand: python benchmarks/keras_distillation_step.py --pair={args.pair} --backends={args.backends}"
          f" --repetitions={args.repetitions} --batch_size={args.batch_size} --jit={args.jit}"
          f"{' --synthetic' if args.synthetic else ''}")
    return 0 if len(results) == len(args.backends.split(",")) else 1


if __name__ == "__main__":
    sys.exit(main())
