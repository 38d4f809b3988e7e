"""How soft a teacher's targets are at each temperature, on held-out images: what the KD loss gives the student.

    python benchmarks/target_softness.py --teacher=saved_models/cifar100/resnet32/teacher.keras \
        --split="train[-5000:]" --temperatures=1,2,3,4,8

For the teacher's logits on `--split` (no augmentation; the default is the evidence study's validation
split, never trained on) prints one row per temperature, on raw and on standardized logits: the mean
largest probability of the softened teacher distribution, its mean entropy, and the mean effective number
of classes exp(entropy); and one row for the adaptive temperature T_i = (1 + sqrt 3) / 2 * max|z_i| of the
standardized logits z_i (source `teacher`, `tfadakd.temperatures.AdaptiveMaxLogit`), with its
percentiles. Effective classes near the number of classes mean a target close to uniform: the teacher's
ranking is still in it, but its probabilities differ little from 1 / classes.
"""

import argparse
import os

import keras
import numpy as np

import tfadakd
from tfadakd import functional as F
from _common import default_data_dir


def softened(logits, temperature):
    """Rows of softmax(logits / temperature) (temperature: a scalar or a (batch, 1) array), in float64."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    p = np.exp(scaled)
    return p / p.sum(axis=1, keepdims=True)


def softness(p):
    """(mean largest probability, mean entropy in nats, mean exp(entropy)) of the rows of `p`."""
    entropy = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=1)
    return float(p.max(axis=1).mean()), float(entropy.mean()), float(np.exp(entropy).mean())


def teacher_logits(path, dataset, split, data_dir):
    teacher = keras.saving.load_model(path)
    data = tfadakd.data.load_cifar(dataset, split, batch_size=500, data_dir=data_dir, augment=False, shuffle=False)
    return np.concatenate([np.asarray(teacher(x, training=False), np.float32) for x, _ in data])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="saved_models/cifar100/resnet32/teacher.keras")
    parser.add_argument("--dataset", default="cifar100")
    parser.add_argument("--split", default="train[-5000:]")
    parser.add_argument("--temperatures", default="1,2,3,4,8")
    parser.add_argument("--data_dir", default=default_data_dir())
    args = parser.parse_args()
    if not os.path.exists(args.teacher):
        parser.error(f"No teacher at --teacher={args.teacher}: pass a .keras file (apps/train_teacher.py writes one).")
    try:
        temperatures = [float(v) for v in args.temperatures.split(",")]
    except ValueError:
        temperatures = []
    if not temperatures or min(temperatures) <= 0:
        parser.error(f"--temperatures={args.temperatures!r}: pass positive numbers separated by commas, e.g. 1,2,4.")

    logits = teacher_logits(args.teacher, args.dataset, args.split, args.data_dir)
    z = np.asarray(F.standardize(logits))
    classes = logits.shape[1]
    print(f"{args.teacher} on {args.dataset} {args.split}: {len(logits)} images, {classes} classes "
          f"(uniform: largest probability {1 / classes:.3f}, entropy {np.log(classes):.3f}, {classes} classes)")
    print(f"{'temperature':>27} | {'logits':>12} | {'largest p':>9} | {'entropy':>7} | {'effective classes':>17}")
    for t in temperatures:
        for name, values in (("raw", logits), ("standardized", z)):
            p_max, entropy, effective = softness(softened(values, t))
            print(f"{t:>27g} | {name:>12} | {p_max:>9.3f} | {entropy:>7.3f} | {effective:>17.1f}")
    adaptive = np.asarray(tfadakd.temperatures.AdaptiveMaxLogit(source="teacher")(z, z))
    p05, p50, p95 = np.percentile(adaptive, [5, 50, 95])
    p_max, entropy, effective = softness(softened(z, adaptive))
    label = f"adaptive {p05:.2f} / {p50:.2f} / {p95:.2f}"
    print(f"{label:>27} | {'standardized':>12} | {p_max:>9.3f} | {entropy:>7.3f} | {effective:>17.1f}")
    print("(adaptive: the 5th / 50th / 95th percentiles of its per-image temperatures)")


if __name__ == "__main__":
    main()
