"""Every benchmark script in a tiny smoke mode: a signature change in the library cannot break a benchmark
silently (its numbers mean nothing here). The scripts that compare with PyTorch need torch installed."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SHIPPED_TEACHER = str(BENCHMARKS.parent / "saved_models" / "cifar100" / "resnet32" / "teacher.keras")

#: script -> its smoke arguments ({data} is the tfds data dir).
SMOKE = {
    "feature_step.py": ["--smoke"],
    "distill_step.py": ["--pair=resnet8,resnet8", "--repetitions=1", "--batch_size=8", "--data_dir={data}"],
    "distill_overhead.py": ["--pair=resnet8,resnet8", "--repetitions=1", "--batch_size=8", "--data_dir={data}"],
    "ops_vs_tf_step.py": ["--pair=resnet8,resnet8", "--repetitions=2"],
    "keras_distillation_step.py": ["--pair=tiny", "--repetitions=2", "--synthetic"],
    "imagenet_step.py": ["--quick"],
    "data_pipeline.py": ["--imagenet", "--repetitions=1", "--batch_size=4", "--files=16", "--steps=2"],
    "export_tflite.py": ["--epochs=1", "--train_examples=64", "--calibration=16", "--test_examples=64"],
    "lean_teacher.py": ["--pairs=resnet8,resnet8", "--repetitions=1", "--batches=1"],
    "profile_ops.py": ["--pair=resnet8,resnet8", "--steps=1", "--data_dir={data}"],
    "target_softness.py": ["--split=train[-64:]", "--temperatures=1,4", f"--teacher={SHIPPED_TEACHER}"],
    "teacher_cache.py": ["--pair=resnet8,resnet8", "--repetitions=1", "--batches=1", "--sweep_runs=1",
                         "--sweep_epochs=1", "--sweep_examples=128"],
    "vs_pytorch.py": ["--pair=resnet8,resnet8", "--precisions=float32", "--repetitions=1", "--warmup=1",
                      "--batch_size=8", "--data_dir={data}"],
}
NEEDS_TORCH = {"vs_pytorch.py"}


def test_every_benchmark_script_has_a_smoke_run_here():
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    # torch_kd_step.py is the PyTorch side that vs_pytorch.py drives (it runs within vs_pytorch's smoke run)
    assert scripts - {"torch_kd_step.py"} == set(SMOKE)


DRIVER = """
import json, runpy, sys, time, traceback
import keras
runs, failures = json.loads(sys.argv[1]), {}
for script, args in runs:
    start = time.perf_counter()
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (0, None):
            failures[script] = f"exit {stop.code}"
    except Exception:
        failures[script] = traceback.format_exc()[-3000:]
    keras.mixed_precision.set_global_policy("float32")  # as a fresh process would have it
    print(f"SMOKE {script} {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
print("FAILURES" + json.dumps(failures))
"""


def test_every_benchmark_runs_in_its_smoke_mode(tfds_data_dir):
    """All smoke runs in one process (one TensorFlow start-up instead of one per script)."""
    runs = [(script, [a.format(data=tfds_data_dir) for a in args]) for script, args in sorted(SMOKE.items())
            if script not in NEEDS_TORCH or importlib.util.find_spec("torch") is not None]
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(runs)], capture_output=True, text=True,
                          timeout=900, cwd=BENCHMARKS,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFDS_DATA_DIR=tfds_data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("FAILURES"))[len("FAILURES"):])
    assert failures == {}, failures
    assert proc.stderr.count("SMOKE ") == len(runs)
