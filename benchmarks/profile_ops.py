"""Where a training step's time goes, by TensorFlow op type, from a TensorFlow profiler trace.

    python benchmarks/profile_ops.py --pair=resnet32x4,resnet8x4 --precision=mixed_bfloat16 --step="distill adaptive"

Runs a few warm-up steps of one variant of `benchmarks/distill_step.py` (`student step`, `teacher
forward`, `distill adaptive`, `distill static T=4`, `keras.distillation T=4`), traces `--steps` more
with `tf.profiler.experimental`, and prints the op types with the most time per step (summed over
the CPU threads, so the total can exceed the step's wall time on two cores). The raw trace stays in
`--trace_dir` for TensorBoard's Profile tab.
"""

import argparse
import collections
import glob
import os
import tempfile

import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from _common import default_data_dir
from distill_step import build_variants, real_batches


CONTAINERS = ("Process",)  # the executor's events around the kernels they run


def op_times(trace_dir):
    """{op type: total milliseconds} over the host threads of the newest trace in `trace_dir`."""
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    if not paths:
        raise SystemExit(f"No profiler trace found under {trace_dir}.")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if "tf_Compute" not in line.name and "tf_data" not in line.name and "Eigen" not in line.name:
                continue  # op kernels run on the TF/Eigen thread pools
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_type = name.rsplit(":", 1)[-1] if ":" in name else name
                if op_type in CONTAINERS:
                    continue
                totals[op_type] += event.duration_ps / 1e9
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet32x4,resnet8x4")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--step", default="distill adaptive")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--trace_dir", default=None)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    teacher, student = args.pair.split(",")
    batches = real_batches(4, 64, args.data_dir or default_data_dir())
    variants = build_variants(teacher, student, args.precision, jit=False)
    if args.step not in variants:
        raise SystemExit(f"--step must be one of {', '.join(map(repr, variants))}, got {args.step!r}.")
    step = variants[args.step]
    for i in range(3):
        step(*batches[i % len(batches)])
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="tfadakd_trace_")
    tf.profiler.experimental.start(trace_dir)
    for i in range(args.steps):
        step(*batches[i % len(batches)])
    tf.profiler.experimental.stop()
    totals = op_times(trace_dir)
    total = sum(totals.values())
    print(f"\n{args.step}, {teacher} -> {student}, {args.precision}, batch 64: op time per step summed over "
          f"threads {total / args.steps:.1f} ms (TF {tf.__version__}, Keras {keras.__version__})")
    for op_type, ms in totals.most_common(args.top):
        print(f"  {op_type:40s} {ms / args.steps:8.1f} ms  {100 * ms / total:5.1f}%")
    print(f"trace: {trace_dir}")


if __name__ == "__main__":
    main()
