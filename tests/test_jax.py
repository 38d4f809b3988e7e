"""The backend-agnostic core and the keras.distillation adapter under KERAS_BACKEND=jax, without TensorFlow.

One subprocess (tests/jax_backend_checks.py) runs on the JAX backend with `import tensorflow` made to fail;
it writes tfadakd's values and gradients, and the NumPy references and assertions are here. The CIFAR-10
slice is read with tfds in this (parent) process and handed over as a .npz file.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference as ref

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install -e '.[test]')"
)

SCRIPT = Path(__file__).with_name("jax_backend_checks.py")
TRAIN_IMAGES, TEST_IMAGES = 1024, 512


def cifar10_slice(data_dir, path):
    import tensorflow_datasets as tfds

    def read(split):
        dataset = tfds.load("cifar10", split=split, data_dir=data_dir, as_supervised=True, batch_size=-1, download=False)
        return tfds.as_numpy(dataset)

    x, y = read(f"train[:{TRAIN_IMAGES}]")
    x_test, y_test = read(f"test[:{TEST_IMAGES}]")
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)


@pytest.fixture(scope="module")
def jax_run(request, tmp_path_factory):
    """The subprocess's results (dict), with `fit` only when real CIFAR is available."""
    tmp = tmp_path_factory.mktemp("jax")
    args = [sys.executable, str(SCRIPT), str(tmp / "results.json")]
    try:
        data_dir = request.getfixturevalue("tfds_data_dir")
    except pytest.skip.Exception:
        data_dir = None
    if data_dir:
        cifar10_slice(data_dir, tmp / "cifar10.npz")
        args.append(str(tmp / "cifar10.npz"))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=SCRIPT.parents[1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp / "results.json").read_text())
    results["has_data"] = bool(data_dir)
    return results


def part(results, name):
    assert name not in results["errors"], results["errors"][name]
    return results[name]


def test_core_and_adapter_import_without_tensorflow(jax_run):
    got = part(jax_run, "imports")
    assert got["backend"] == "jax"
    assert got["tensorflow_blocked"] and jax_run["tensorflow_blocked_at_end"]
    for module in ("tfadakd.functional", "tfadakd.losses", "tfadakd.temperatures", "tfadakd.keras_distillation"):
        assert module in got["loaded"]
    # the TensorFlow-only parts stay unimported until used, and then need TensorFlow
    assert "tfadakd.distiller" not in got["loaded"] and "tfadakd.models" not in got["loaded"]
    assert got["data_error"] in ("ImportError", "ModuleNotFoundError")


def test_losses_equal_numpy_references_on_jax(jax_run):
    got = part(jax_run, "values")
    assert got["value_type"].startswith("jax")
    np.testing.assert_allclose(got["eager"], got["losses"]["kd-adaptive-both"]["value"], rtol=1e-5)  # jit or not
    t, s, y = np.array(got["teacher"]), np.array(got["student"]), np.array(got["labels"])
    zt, zs = ref.standardize(t), ref.standardize(s)
    t_both, t_teacher = ref.adaptive_temperature(zt, zs), ref.adaptive_temperature(zt, zs, "teacher")
    normkd_t = 2.0 * (t.std(axis=-1, ddof=1, keepdims=True) + 1e-7)
    normkd_s = 2.0 * (s.std(axis=-1, ddof=1, keepdims=True) + 1e-7)
    p, q = ref.softmax(t / normkd_t), ref.softmax(s / normkd_s)
    dkd_static = ref.dkd(t, s, y, 4.0)
    dkd_adaptive = ref.dkd(zt, zs, y, t_both)
    want = {
        "kd-static-1": (ref.kd(t, s, 1.0), 1.0),
        "kd-static-4": (ref.kd(t, s, 4.0), 4.0),
        "kd-adaptive-both": (ref.kd(zt, zs, t_both), t_both),
        "kd-adaptive-teacher": (ref.kd(zt, zs, t_teacher), t_teacher),
        "kd-standardized-2": (ref.kd(zt, zs, 2.0), 2.0),
        "kd-normkd-2": (normkd_t[:, 0] ** 2 * np.sum(p * (np.log(p) - np.log(q)), axis=-1), normkd_t),
        "dkd-static-4": (dkd_static[0] + 8.0 * dkd_static[1], 4.0),
        "dkd-adaptive": (dkd_adaptive[0] + 8.0 * dkd_adaptive[1], t_both),
    }
    assert sorted(got["losses"]) == sorted(want)
    for name, (value, temperature) in want.items():
        np.testing.assert_allclose(got["losses"][name]["value"], value, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(
            got["losses"][name]["temperature"], np.broadcast_to(temperature, (len(t), 1)), rtol=1e-5, err_msg=name
        )
    np.testing.assert_allclose(got["dkd-epoch-4"], 5 / 20 * (dkd_static[0] + 8.0 * dkd_static[1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["correlation"], ref.pearson(t, s), atol=1e-5)
    np.testing.assert_allclose(got["standardized"], zt, atol=1e-5)
    # the keras.distillation adapter: the batch mean of the per-sample values
    np.testing.assert_allclose(got["adapter"], ref.kd(zt, zs, t_both).mean(), rtol=1e-5)
    np.testing.assert_allclose(got["adapter_dkd"], want["dkd-adaptive"][0].mean(), rtol=1e-5)


def test_adaptive_temperature_stops_the_gradient_on_jax(jax_run):
    got = part(jax_run, "gradients")
    t, s = np.array(got["teacher"]), np.array(got["student"])
    # d/ds of T^2 KL(softmax(t/T) || softmax(s/T)) at a constant T is T (softmax(s/T) - softmax(t/T))
    temperature = ref.adaptive_temperature(t, s)
    analytic = temperature * (ref.softmax(s / temperature) - ref.softmax(t / temperature))
    np.testing.assert_allclose(got["temperature_plain"], temperature, rtol=1e-5)
    np.testing.assert_allclose(got["adaptive_plain"], analytic, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["constant_plain"], analytic, rtol=1e-4, atol=1e-6)
    # with standardization: equal to the gradient with the temperature held constant
    np.testing.assert_allclose(got["adaptive_standardized"], got["constant_standardized"], rtol=1e-5, atol=1e-7)
    for key in ("plain", "standardized"):
        assert np.all(np.array(got[f"temperature_grad_{key}"]) == 0.0)


def test_ctkd_gradient_reversal_on_jax(jax_run):
    got = part(jax_run, "gradients")["theta_grad"]
    sig = 1 / (1 + np.exp(-1.0))
    plain = 4 * 20.0 * sig * (1 - sig)  # d(sum of 4 taus)/d theta without reversal
    for epoch in (0, 4, 20):
        factor = -(1 - np.cos(np.pi * min(epoch + 1, 10) / 10)) / 2
        np.testing.assert_allclose(got[str(epoch)], factor * plain, rtol=1e-5)


def test_keras_distiller_trains_the_learned_temperature_and_round_trips_on_jax(jax_run):
    got = part(jax_run, "keras_distiller")
    assert abs(got["theta_after"] - got["theta_before"]) > 1e-6  # float32 spacing at 1.0: 1.2e-7
    assert got["theta_loaded"] == got["theta_after"]
    assert got["loaded_type"] == "Logits" and got["predictions_equal"]
    assert np.all(np.isfinite(got["loss"]))
    np.testing.assert_allclose(got["adapter_loaded"], got["adapter"], rtol=1e-6)


def test_adapter_fit_on_real_cifar10_on_jax(jax_run):
    if not jax_run["has_data"]:
        pytest.skip("real CIFAR data not available (see tests/conftest.py)")
    got = part(jax_run, "fit")
    assert (got["train_images"], got["test_images"]) == (TRAIN_IMAGES, TEST_IMAGES)
    losses = got["distillation_loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
    # the teacher is better than chance and the student, trained on the distillation loss alone, improves
    # on held-out images over its initialization
    assert got["teacher_accuracy"] > 0.25, got
    assert got["student_accuracy_after"] > got["student_accuracy_before"] + 0.06, got
    assert got["student_accuracy_after"] > 0.18, got


def test_feature_terms_and_the_correlation_loss_equal_numpy_references_on_jax(jax_run):
    got = part(jax_run, "feature_terms")
    assert got["loaded"]  # tfadakd.methods imports without TensorFlow; the Distiller is not needed
    t1, s1 = (np.array(a) for a in got["stage1"])
    t2, s2 = (np.array(a) for a in got["stage2"])
    tp, sp = (np.array(a) for a in got["pool"])
    t, s = (np.array(a) for a in got["logits"])
    np.testing.assert_allclose(got["fitnet"], ref.fitnet(t2, s2), rtol=1e-5)
    np.testing.assert_allclose(got["at"], ref.at([t1, t2], [s1, s2]), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(got["rkd"], ref.rkd(tp, sp), rtol=1e-4)
    np.testing.assert_allclose(got["correlation"], 1.0 - ref.pearson(t, s), rtol=1e-5, atol=1e-6)
