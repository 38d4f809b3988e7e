"""apps/approximation.py: the adaptive loss against ((N-1)/N)(1 - rho), per sample, on real images."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

import reference as ref

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "apps"))


def test_summary_equals_the_reference_per_sample_comparison():
    import approximation

    rng = np.random.default_rng(0)
    t = rng.normal(scale=3.0, size=(64, 100)).astype("float32")
    s = (0.6 * t + rng.normal(scale=2.0, size=t.shape)).astype("float32")
    got = approximation.summarize(t, s)
    zt, zs = ref.standardize(t.astype("float64")), ref.standardize(s.astype("float64"))
    adaptive = ref.kd(zt, zs, ref.adaptive_temperature(zt, zs))
    correlation = 0.99 * (1.0 - ref.pearson(t.astype("float64"), s.astype("float64")))
    relative = adaptive / correlation - 1.0
    assert got["examples"] == 64 and got["classes"] == 100
    np.testing.assert_allclose(got["adaptive_mean"], adaptive.mean(), rtol=1e-5)
    np.testing.assert_allclose(got["correlation_mean"], correlation.mean(), rtol=1e-5)
    np.testing.assert_allclose(got["relative_difference_quantiles"]["p50"], np.median(relative), atol=1e-4)
    np.testing.assert_allclose(got["pearson_over_samples"], np.corrcoef(adaptive, correlation)[0, 1], atol=1e-4)


def test_the_app_compares_two_saved_models_on_a_split(tfds_data_dir, tmp_path):
    for name, seed in (("teacher", 0), ("student", 1)):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=4)(inputs))
        keras.Model(inputs, keras.layers.Dense(10)(x)).save(tmp_path / f"{name}.keras")
    out = tmp_path / "approximation.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "apps" / "approximation.py"), "--dataset=cifar10", "--split=test[:96]",
         f"--teacher_model={tmp_path / 'teacher.keras'}", f"--student_model={tmp_path / 'student.keras'}",
         "--forward_batch_size=32", f"--out={out}"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFDS_DATA_DIR=tfds_data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["examples"] == 96 and summary["classes"] == 10 and summary["split"] == "test[:96]"
    assert set(summary["relative_difference_quantiles"]) == {"p01", "p05", "p25", "p50", "p75", "p95", "p99"}
