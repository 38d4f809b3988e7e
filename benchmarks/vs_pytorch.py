"""Our distillation step against the same KD step in PyTorch, on one machine, in one run.

    pip install torch==2.13.0
    python benchmarks/vs_pytorch.py --pair=resnet32x4,resnet8x4 --precisions=float32,mixed_bfloat16 --repetitions=10

The PyTorch step runs in a worker process (`benchmarks/torch_kd_step.py --serve`) so the two frameworks
never share a process or compute at the same time; every repetition runs one step of each TensorFlow
variant (student step, teacher forward, our Distiller adaptive and static T=4, `keras.distillation`,
for each Keras precision policy) and then one step of each PyTorch variant (float32, channels-last,
bfloat16 autocast + channels-last), on the same real CIFAR-100 batches of 64. Medians are printed,
with the ratios of our steps to PyTorch's.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import tfadakd
from _common import default_data_dir
from distill_step import build_variants, real_batches

TORCH_VARIANTS = ("float32", "float32_cl", "bf16_cl")


class TorchWorker:
    def __init__(self, pair, batches_path, variants):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_kd_step.py")
        self.proc = subprocess.Popen(
            [sys.executable, script, "--serve", f"--pair={pair}", f"--batches={batches_path}", f"--variants={','.join(variants)}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        ready = self.proc.stdout.readline()
        if not ready.startswith("ready"):
            raise SystemExit(f"The PyTorch worker did not start (is torch installed? `pip install torch==2.13.0`): {ready!r}")
        self.parameters = dict(item.split("=") for item in ready.split()[1:])

    def step(self, variant, index):
        self.proc.stdin.write(f"{variant} {index}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet32x4,resnet8x4", help="teacher,student (CIFAR ResNets)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    teacher, student = args.pair.split(",")
    batches = real_batches(8, args.batch_size, args.data_dir or default_data_dir())

    tf_steps = {}
    for precision in args.precisions.split(","):
        for name, step in build_variants(teacher, student, precision, jit=False).items():
            tf_steps[f"TF {precision}: {name}"] = step
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "batches.npz")
        np.savez(path, images=np.stack([x.numpy() for x, _ in batches]), labels=np.stack([y.numpy() for _, y in batches]))
        worker = TorchWorker(args.pair, path, TORCH_VARIANTS)
    ours = {name: tfadakd.models.count_params(tfadakd.models.build(name)) for name in (teacher, student)}
    for name in ours:
        if int(worker.parameters[name]) != ours[name]:
            raise SystemExit(f"{name}: PyTorch model has {worker.parameters[name]} parameters, Keras {ours[name]}")

    times = {name: [] for name in list(tf_steps) + [f"PyTorch {v}" for v in TORCH_VARIANTS]}
    for rep in range(-args.warmup, args.repetitions):
        i = rep % len(batches)
        for name, step in tf_steps.items():
            start = time.perf_counter()
            step(*batches[i])
            if rep >= 0:
                times[name].append(1000 * (time.perf_counter() - start))
        for variant in TORCH_VARIANTS:
            elapsed = worker.step(variant, i)
            if rep >= 0:
                times[f"PyTorch {variant}"].append(elapsed)
    worker.close()

    ms = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{teacher} -> {student} ({ours[teacher]:,} / {ours[student]:,} parameters in both frameworks), batch "
          f"{args.batch_size}, real CIFAR-100, median of {args.repetitions} interleaved repetitions; "
          f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs")
    for name, value in ms.items():
        print(f"  {name:45s} {value:8.1f} ms")
    best_torch = min(ms[f"PyTorch {v}"] for v in TORCH_VARIANTS)
    for precision in args.precisions.split(","):
        for variant in ("distill adaptive", "distill static T=4", "keras.distillation T=4"):
            key = f"TF {precision}: {variant}"
            if key in ms:
                print(f"  {key} / fastest PyTorch step = {ms[key] / best_torch:.3f}")
    print(f"\ncommand: python benchmarks/vs_pytorch.py --pair={args.pair} --precisions={args.precisions} "
          f"--repetitions={args.repetitions}")


if __name__ == "__main__":
    main()
