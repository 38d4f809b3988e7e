"""Runs tfadakd's backend-agnostic parts under KERAS_BACKEND=jax with TensorFlow made unimportable.

Run by tests/test_jax.py in a subprocess (not collected by pytest: no `test_` prefix):

    KERAS_BACKEND=jax python tests/jax_backend_checks.py OUT.json [CIFAR.npz]

It computes values and gradients with tfadakd and writes them, with their inputs, to OUT.json; the NumPy
references and the assertions are in tests/test_jax.py. Each section runs on its own, so one failure
(recorded under "errors") leaves the others checkable. CIFAR.npz (uint8 `x`, `y`, `x_test`, `y_test`, read
by the parent with tfds) adds the `fit` section: keras.distillation on a small real CIFAR-10 slice.
"""

import os
import sys
import time
import traceback

sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError, as on a machine without it
os.environ["KERAS_BACKEND"] = "jax"

import json  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = {"errors": {}, "seconds": {}}


def section(fn):
    start = time.perf_counter()
    try:
        RESULTS[fn.__name__] = fn()
    except Exception:  # recorded for the parent test, which shows it
        RESULTS["errors"][fn.__name__] = traceback.format_exc()
    RESULTS["seconds"][fn.__name__] = round(time.perf_counter() - start, 2)


def tolist(value):
    return np.asarray(value, dtype="float64").tolist()


def logits(batch=8, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.normal(scale=3.0, size=(batch, classes))
    s = 0.5 * t + rng.normal(scale=2.0, size=(batch, classes))
    return t.astype("float32"), s.astype("float32"), rng.integers(0, classes, batch)


def imports():
    import keras

    import tfadakd
    import tfadakd.functional
    import tfadakd.keras_distillation
    import tfadakd.losses
    import tfadakd.temperatures

    try:
        tfadakd.data  # TensorFlow-only: imported on first use, which fails here
        data_error = None
    except ImportError as error:
        data_error = type(error).__name__
    return {
        "backend": keras.backend.backend(),
        "tensorflow_blocked": sys.modules.get("tensorflow", "absent") is None,
        "loaded": sorted(name for name in sys.modules if name.startswith("tfadakd")),
        "data_error": data_error,
    }


def values():
    import tfadakd
    from tfadakd import functional as F
    from tfadakd.losses import DKD, KD
    from tfadakd.temperatures import AdaptiveMaxLogit, NormKD, Standardized

    import jax

    t, s, y = logits()
    losses = {
        "kd-static-1": KD(1.0),
        "kd-static-4": KD(4.0),
        "kd-adaptive-both": KD(AdaptiveMaxLogit("both"), standardize=True),
        "kd-adaptive-teacher": KD(AdaptiveMaxLogit("teacher"), standardize=True),
        "kd-standardized-2": KD(Standardized(2.0), standardize=True),
        "kd-normkd-2": KD(NormKD(2.0)),
        "dkd-static-4": DKD(beta=8.0, temperature=4.0),
        "dkd-adaptive": DKD(beta=8.0, temperature=AdaptiveMaxLogit(), standardize=True),
    }
    warmup = DKD(beta=8.0, temperature=4.0, warmup_epochs=20)
    adapter = tfadakd.keras_distillation.Logits(losses["kd-adaptive-both"])
    adapter_dkd = tfadakd.keras_distillation.Logits(losses["dkd-adaptive"])

    def compute(t, s, y):  # one jit: one XLA compilation instead of one per eager op
        return {
            "losses": {name: loss(t, s, labels=y, return_temperature=True) for name, loss in losses.items()},
            "dkd-epoch-4": warmup(t, s, labels=y, epoch=4),
            "correlation": F.logit_correlation(t, s),
            "standardized": F.standardize(t),
            "adapter": adapter.compute_loss(t, s),
            "adapter_dkd": adapter_dkd.compute_loss(t, s, labels=y),
        }

    got = jax.jit(compute)(t, s, y)
    eager = losses["kd-adaptive-both"](t, s)  # and once outside jit
    out = {"teacher": tolist(t), "student": tolist(s), "labels": y.tolist(), "losses": {}}
    for name, (value, temperature) in got.pop("losses").items():
        out["losses"][name] = {"value": tolist(value), "temperature": tolist(temperature)}
    out.update({key: tolist(value) for key, value in got.items()})
    out["eager"] = tolist(eager)
    out["value_type"] = type(eager).__module__
    return out


def gradients():
    import jax
    import jax.numpy as jnp

    from tfadakd import functional as F
    from tfadakd.losses import KD
    from tfadakd.temperatures import AdaptiveMaxLogit, Learnable

    t, s, _ = logits(seed=1)
    out = {"teacher": tolist(t), "student": tolist(s)}
    # the adaptive temperature carries no gradient: d(sum KD)/ds equals the gradient at a constant T
    for standardize in (False, True):
        loss = KD(AdaptiveMaxLogit(), standardize=standardize)
        grad = jax.jit(jax.grad(lambda student: jnp.sum(loss(t, student))))(s)
        fixed = np.asarray(loss(t, s, return_temperature=True)[1])

        def at_constant_temperature(student):
            zt, zs = (F.standardize(t), F.standardize(student)) if standardize else (t, student)
            return jnp.sum(F.kd_divergence(zt, zs, fixed))

        key = "standardized" if standardize else "plain"
        out[f"adaptive_{key}"] = tolist(grad)
        out[f"constant_{key}"] = tolist(jax.jit(jax.grad(at_constant_temperature))(s))
        out[f"temperature_{key}"] = tolist(fixed)
        out[f"temperature_grad_{key}"] = tolist(
            jax.jit(jax.grad(lambda student: jnp.sum(AdaptiveMaxLogit()(t, student))))(s)
        )
    # CTKD: gradient reversal with the scheduled factor, on theta (stateless call: JAX is functional)
    scheme = Learnable("global")
    scheme(t[:4], s[:4])

    def total(theta, epoch):
        tau, _ = scheme.stateless_call([theta], [], t[:4], s[:4], epoch=epoch)
        return jnp.sum(tau)

    theta_grad = jax.jit(jax.grad(total))
    out["theta_grad"] = {str(e): float(theta_grad(jnp.asarray(1.0), jnp.asarray(e))) for e in (0, 4, 20)}
    return out


def keras_distiller():
    """keras.distillation.Distiller with a learned CTKD temperature: trains and round-trips (.keras)."""
    import tempfile
    import warnings

    import keras

    import tfadakd

    def mlp(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((12,))
        return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Dense(16, activation="relu")(inputs)))

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 10, 64)
    loss = tfadakd.losses.KD(tfadakd.temperatures.Learnable("global"))
    distiller = keras.distillation.Distiller(
        teacher=mlp(1), student=mlp(0), distillation_losses=tfadakd.keras_distillation.Logits(loss)
    )
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = float(loss.temperature.theta.numpy())
    history = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    path = os.path.join(tempfile.mkdtemp(), "distiller.keras")
    distiller.save(path)
    with warnings.catch_warnings():  # keras.distillation.Distiller comes back uncompiled: Keras warns
        warnings.simplefilter("ignore", UserWarning)
        loaded = keras.models.load_model(path)
    t, s = distiller.teacher(x), distiller.student(x)
    return {
        "theta_before": before,
        "theta_after": float(loss.temperature.theta.numpy()),
        "theta_loaded": float(loaded.distillation_losses[0].loss.temperature.theta.numpy()),
        "loaded_type": type(loaded.distillation_losses[0]).__qualname__,
        "loss": history["loss"],
        "adapter": float(distiller.distillation_losses[0].compute_loss(t, s)),
        "adapter_loaded": float(loaded.distillation_losses[0].compute_loss(t, s)),
        "predictions_equal": bool(np.array_equal(loaded(x), distiller(x))),
    }


def fit(path):
    """Pure distillation (student_loss_weight=0) on a real CIFAR-10 slice, images averaged to 16 x 16."""
    import keras

    import tfadakd

    data = np.load(path)

    def prepare(images):  # uint8 (n, 32, 32, 3) -> float32 (n, 16, 16, 3), 2 x 2 means, centred
        images = images.astype("float32") / 255.0
        return images.reshape(len(images), 16, 2, 16, 2, 3).mean(axis=(2, 4)) - 0.47

    x, y = prepare(data["x"]), data["y"]
    x_test, y_test = prepare(data["x_test"]), data["y_test"]

    def cnn(seed, width):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((16, 16, 3))
        h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
        h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        return keras.Model(inputs, keras.layers.Dense(10)(h))

    def accuracy(model):
        return float(np.mean(np.argmax(model.predict(x_test, batch_size=512, verbose=0), -1) == y_test))

    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    teacher = cnn(0, 16)
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2), loss=sce)
    teacher.fit(x, y, batch_size=128, epochs=8, verbose=0)
    student = cnn(1, 8)
    student_before = accuracy(student)
    distiller = keras.distillation.Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=tfadakd.keras_distillation.Logits(
            tfadakd.losses.KD(temperature="adaptive", standardize=True)
        ),
        student_loss_weight=0.0,
    )
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), loss=sce)
    history = distiller.fit(x, y, batch_size=128, epochs=6, verbose=0).history
    return {
        "train_images": len(x),
        "test_images": len(x_test),
        "teacher_accuracy": accuracy(teacher),
        "student_accuracy_before": student_before,
        "student_accuracy_after": accuracy(student),
        "distillation_loss": history["distillation_loss"],
    }


def feature_terms():
    """tfadakd.methods' feature terms and the correlation loss on fixed inputs (values; the parent compares)."""
    import tfadakd
    from tfadakd.methods import AT, RKD, FitNet

    rng = np.random.default_rng(3)
    t2, s2 = rng.normal(size=(3, 8, 8, 6)).astype("float32"), rng.normal(size=(3, 8, 8, 6)).astype("float32")
    t1, s1 = rng.normal(size=(3, 16, 16, 4)).astype("float32"), rng.normal(size=(3, 8, 8, 2)).astype("float32")
    tp, sp = rng.normal(size=(5, 6)).astype("float32"), rng.normal(size=(5, 3)).astype("float32")
    t, s, _ = logits()
    return {
        "stage1": [tolist(t1), tolist(s1)], "stage2": [tolist(t2), tolist(s2)], "pool": [tolist(tp), tolist(sp)],
        "fitnet": tolist(FitNet()({"stage2": t2}, {"stage2": s2})[0]),
        "at": tolist(AT(("stage1", "stage2"))({"stage1": t1, "stage2": t2}, {"stage1": s1, "stage2": s2})[0]),
        "rkd": tolist(RKD()({"pool": tp}, {"pool": sp})[0]),
        "correlation": tolist(tfadakd.losses.Correlation()(t, s)),
        "logits": [tolist(t), tolist(s)],
        "loaded": "tfadakd.methods" in sys.modules and "tfadakd.distiller" not in sys.modules,
    }


if __name__ == "__main__":
    out_path = sys.argv[1]
    section(imports)
    section(values)
    section(gradients)
    section(keras_distiller)
    section(feature_terms)
    if len(sys.argv) > 2:
        data_path = sys.argv[2]

        def fit_section():
            return fit(data_path)

        fit_section.__name__ = "fit"
        section(fit_section)
    RESULTS["tensorflow_blocked_at_end"] = sys.modules.get("tensorflow", "absent") is None
    with open(out_path, "w") as f:
        json.dump(RESULTS, f)
