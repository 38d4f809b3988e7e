"""Every Python block of README.md runs as written, with its epochs and data slices made tiny.

The blocks run in order in one process (they continue each other: `teacher`, `distiller`, `train_ds`, ...),
in a temporary folder where `saved_models/cifar100` points to the shipped teacher; a block that selects
another Keras backend runs in a process of its own.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: What makes the README's sizes tiny: (pattern, replacement), applied to every block.
TINY = [
    (r'"train\[:45000\]"', '"train[:128]"'),
    (r'"train\[45000:\]"', '"train[45000:45064]"'),
    (r'"test", batch_size=100', '"test[:64]", batch_size=64'),
    (r"epochs=(240|30|10)\b", "epochs=1"),
    (r"n=300\b", "n=16"),
]


def python_blocks():
    text = (REPO / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def tiny(code):
    for pattern, replacement in TINY:
        code = re.sub(pattern, replacement, code)
    return code


def run(code, cwd, backend, tfds_data_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=backend, TFDS_DATA_DIR=tfds_data_dir,
               PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_every_python_block_of_the_readme_runs(tfds_data_dir, tmp_path):
    blocks = python_blocks()
    assert len(blocks) >= 6
    (tmp_path / "saved_models").mkdir()
    (tmp_path / "saved_models" / "cifar100").symlink_to(REPO / "saved_models" / "cifar100")
    jax = [b for b in blocks if 'os.environ["KERAS_BACKEND"] = "jax"' in b]
    rest = [b for b in blocks if b not in jax]
    markers = "".join(f"{tiny(block)}\nprint('README block {i} ran', flush=True)\n" for i, block in enumerate(rest))
    proc = run(markers, tmp_path, "tensorflow", tfds_data_dir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert all(f"README block {i} ran" in proc.stdout for i in range(len(rest)))
    assert (tmp_path / "student.keras").is_file() and (tmp_path / "student_int8.tflite").is_file()
    for block in jax:
        if __import__("importlib").util.find_spec("jax") is None:
            pytest.skip("jax is not installed")
        proc = run(tiny(block), tmp_path, "jax", tfds_data_dir)
        assert proc.returncode == 0, proc.stderr[-4000:]
