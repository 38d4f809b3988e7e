"""Our Distiller's step with this tree's `keras.ops` math against the `tf.` math of an older revision.

    python benchmarks/ops_vs_tf_step.py --pair=resnet32x4,resnet8x4 --repetitions=15
    python benchmarks/ops_vs_tf_step.py --pair=resnet8,resnet8 --repetitions=2        # smoke run

Issue 16 rewrote `tfadakd/functional.py`, `losses.py` and `temperatures.py` from `tf.` calls to
`keras.ops`; the math is the same, so the TensorFlow step should be too (target: new / old <= 1.02).
This script loads the whole `tfadakd` package of `--old` (by default the revision just before the one
that took TensorFlow out of `functional.py`) from git as a second package, `tfadakd_old`, and times in
one process, on the same real CIFAR-100 batches of 64 held in memory, the same teacher and identically
initialized students:

- `new adaptive` / `old adaptive`: `Distiller` with `KD(AdaptiveMaxLogit(), standardize=True)`, 0.1 / 9;
- `new static T=4` / `old static T=4`: `KD(4.0)`.

Repetitions cycle through the variants in a new random order each time (medians). Everything that
differs between the two revisions is measured, so use the revision just before the rewrite.
"""

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile

import keras
import tensorflow as tf

import tfadakd
from _common import default_data_dir
from distill_step import measure, real_batches

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(*args):
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def last_tf_revision():
    """The revision just before the one that took TensorFlow out of tfadakd/functional.py."""
    rewrite = None
    for rev in git("log", "--format=%H", "--", "tfadakd/functional.py").split():  # newest first
        if "import tensorflow as tf" in git("show", f"{rev}:tfadakd/functional.py"):
            return git("rev-parse", f"{rewrite}~1").strip() if rewrite else rev
        rewrite = rev
    raise SystemExit("no revision of tfadakd/functional.py imports TensorFlow: pass --old")


def import_old(rev, into):
    """Extracts `tfadakd/` at `rev` into `into/tfadakd_old` (imports and Keras registrations renamed)."""
    archive = subprocess.run(["git", "archive", rev, "tfadakd"], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    root = os.path.join(into, "tfadakd_old")
    os.rename(os.path.join(into, "tfadakd"), root)
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(re.sub(r"\btfadakd\b", "tfadakd_old", text))
    sys.path.insert(0, into)
    import tfadakd_old

    return tfadakd_old


def build_variants(old, teacher_name, student_name):
    keras.utils.set_random_seed(0)
    teacher = tfadakd.models.build(teacher_name)
    initial = tfadakd.models.build(student_name).get_weights()
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variants = {}
    for label, package in (("new", tfadakd), ("old", old)):
        for kind in ("adaptive", "static T=4"):
            student = tfadakd.models.build(student_name)
            student.set_weights(initial)
            if kind == "adaptive":
                loss = package.losses.KD(package.temperatures.AdaptiveMaxLogit(), standardize=True)
            else:
                loss = package.losses.KD(4.0)
            distiller = package.Distiller(student, teacher, loss, 0.1, 9.0)
            distiller.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=ce)
            variants[f"{label} {kind}"] = distiller.train_on_batch
    return variants


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet32x4,resnet8x4", help="teacher,student zoo names")
    parser.add_argument("--old", default=None, help="git revision of the tf. math (default: the one just before the rewrite)")
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    rev = args.old or last_tf_revision()
    teacher, student = args.pair.split(",")
    batches = real_batches(8, args.batch_size, args.data_dir or default_data_dir())
    with tempfile.TemporaryDirectory() as tmp:
        old = import_old(rev, tmp)
        ms = measure(build_variants(old, teacher, student), batches, args.repetitions)
    print(f"\n{teacher} -> {student}, batch {args.batch_size}, real CIFAR-100 batches, median of "
          f"{args.repetitions} interleaved repetitions, TF {tf.__version__}, Keras {keras.__version__}; "
          f"old = {git('rev-parse', '--short', rev).strip()}")
    print("  step times (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()))
    for kind in ("adaptive", "static T=4"):
        print(f"  new / old, {kind:<10} = {ms[f'new {kind}'] / ms[f'old {kind}']:.3f}   (target <= 1.02)")
    print(f"\ncommand: python benchmarks/ops_vs_tf_step.py --pair={args.pair} --old={rev[:10]} "
          f"--repetitions={args.repetitions}")


if __name__ == "__main__":
    main()
