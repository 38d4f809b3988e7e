"""tfadakd.inference.inference_copy: the lean inference teacher equals the original, which it leaves alone.

Tolerances come from bfloat16's precision: 8 significand bits, so EPS = 2^-8 is the spacing of
bfloat16 numbers in [1, 2) and one rounding changes a value by at most EPS / 2 relative.

- Under mixed_bfloat16 the copy runs the same bfloat16 weights (cast once instead of at every call,
  with the same round-to-nearest), the same float32 normalization variables and the same layer
  policies (the zoo's float32 logits layer included) as the original: the logits are bit-identical in
  practice (measured: 0.0 for every zoo model). The bound allows one bfloat16 rounding of the largest
  logit (EPS * max|logit|), in case a kernel library rounds a fused op differently for a variable
  than for a cast.
- Against the same weights computed in float32, every layer rounds its activations to bfloat16 (a
  relative error up to EPS / 2 each) and the next layers carry these errors along. Measured here on
  every zoo model (random weights, random normalization statistics, batch 2, 5 classes), the largest
  logit difference is 0.4-3.4 EPS of the largest logit, 5.2 EPS for imagenet_resnet34 (the longest
  chain of 3x3 convolutions here, 33 layers: about sqrt(33) * EPS / 2 = 2.9 EPS for errors of random
  sign, twice that for the largest of 10 logits); keras.applications' MobileNetV3Small 1.9 EPS. The
  bound, 12 EPS (4.7% of the largest logit), leaves a factor 2 above the worst model; a real error (a
  layer in the wrong dtype, normalization statistics rounded to bfloat16 where the original keeps
  float32, a weight not copied) is an exact-equality failure above or a 10-100% difference here. This
  comparison (a third clone of the model) runs on one model per family and on both shipped teachers
  to keep the test fast; the exact comparison runs on every zoo name.
"""

import keras
import numpy as np
import pytest

import tfadakd
from tfadakd.inference import inference_copy

EPS = 2.0 ** -8
MIXED_TOLERANCE = 1 * EPS
FLOAT32_TOLERANCE = 12 * EPS
#: Layers whose weights the copy must store in bfloat16 when they compute in it (listed here, not
#: imported, so that a layer missing from tfadakd.inference.KERNEL_LAYERS fails the test).
STORED_IN_BFLOAT16 = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                      keras.layers.Dense)


#: Also compared with float32 (see the module docstring): the shipped teachers' architectures and one
#: model per family (grouped and depthwise convolutions, channel shuffles, plain stacks, wide blocks).
FLOAT32_CHECKED = ("resnet32", "resnet32x4", "wrn_16_2", "vgg8", "MobileNetV2", "ShuffleV1", "imagenet_resnet18")


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _realistic_normalization(model, seed=0):
    """Gives every batch norm statistics and affine parameters that bfloat16 cannot represent exactly
    (a fresh model's 0 / 1 would hide statistics rounded to bfloat16)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                               rng.uniform(0.5, 2.0, c)])


def _float32_twin(model):
    """The model with every layer in float32 and the same weights (the float32 reference)."""
    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):  # a keras.ops operation
            return layer
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    twin.set_weights(model.get_weights())
    return twin


def _logits(model, x):
    return keras.ops.convert_to_numpy(keras.ops.cast(model(x, training=False), "float32")).astype("float64")


def _check_copy(model, x, float32=True):
    """Returns the copy's relative logit differences (vs the model, vs its float32 twin, 0 unless `float32`)
    after the checks that do not depend on a tolerance: float32 logits, frozen, weights stored as intended,
    original untouched."""
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    trainable_before = model.trainable
    lean = inference_copy(model)
    out = lean(x, training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert lean.trainable is False and lean.trainable_weights == []
    for layer in lean._flatten_layers(include_self=False):
        dtypes = {w.dtype for w in layer.weights}
        if isinstance(layer, keras.layers.BatchNormalization):
            assert dtypes == {"float32"}, (layer.name, dtypes)
        elif isinstance(layer, STORED_IN_BFLOAT16) and layer.compute_dtype == "bfloat16":
            assert dtypes == {"bfloat16"}, (layer.name, dtypes)
    lean_logits = keras.ops.convert_to_numpy(out).astype("float64")
    original = _logits(model, x)
    reference = _logits(_float32_twin(model), x) if float32 else lean_logits
    after = [keras.ops.convert_to_numpy(w) for w in model.weights]
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(before, after)), "original changed"
    assert model.trainable == trainable_before
    scale = np.max(np.abs(original))
    assert scale > 0 and np.all(np.isfinite(lean_logits))
    return np.max(np.abs(lean_logits - original)) / scale, np.max(np.abs(lean_logits - reference)) / scale


@pytest.mark.parametrize("name", tfadakd.models.names())
def test_zoo_copy_equals_the_original_and_its_float32_twin(name, mixed_bfloat16):
    keras.utils.set_random_seed(0)
    model = tfadakd.models.build(name, num_classes=5)
    _realistic_normalization(model)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    vs_mixed, vs_float32 = _check_copy(model, x, float32=name in FLOAT32_CHECKED)
    assert vs_mixed <= MIXED_TOLERANCE, f"{name}: {vs_mixed / EPS:.2f} EPS from the mixed_bfloat16 original"
    assert vs_float32 <= FLOAT32_TOLERANCE, f"{name}: {vs_float32 / EPS:.2f} EPS from float32"


def _small_functional(num_classes=5):
    """A teacher not from the zoo: Keras' own BatchNormalization, a nested Sequential block, a shared
    layer, a float32 head."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    block = keras.Sequential([keras.layers.Conv2D(8, 3, padding="same"), keras.layers.BatchNormalization(),
                              keras.layers.ReLU()], name="block")
    x = keras.layers.Add()([x, block(x)])
    x = keras.layers.SeparableConv2D(16, 3, strides=2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, dtype="float32")(x), name="small")


def test_non_zoo_functional_teacher(mixed_bfloat16):
    keras.utils.set_random_seed(0)
    model = _small_functional()
    _realistic_normalization(model)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    vs_mixed, vs_float32 = _check_copy(model, x)
    assert vs_mixed <= MIXED_TOLERANCE and vs_float32 <= FLOAT32_TOLERANCE, (vs_mixed / EPS, vs_float32 / EPS)
    lean = inference_copy(model)
    assert lean.get_layer("block").get_layer(index=0).kernel.dtype == "bfloat16"  # the nested model is copied too


def test_keras_applications_teacher(mixed_bfloat16):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=5,
                                                classifier_activation=None, include_preprocessing=False)
    _realistic_normalization(model)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    vs_mixed, vs_float32 = _check_copy(model, x)
    assert vs_mixed <= MIXED_TOLERANCE and vs_float32 <= FLOAT32_TOLERANCE, (vs_mixed / EPS, vs_float32 / EPS)


def test_a_float32_model_runs_in_bfloat16():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    _realistic_normalization(model)
    lean = inference_copy(model)
    assert [w.dtype for w in lean.weights] == ["bfloat16", "bfloat16"] + ["float32"] * 4 + ["bfloat16"] * 2
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    expected = _logits(model, x)
    got = keras.ops.convert_to_numpy(lean(x)).astype("float64")
    assert 0 < np.max(np.abs(got - expected)) <= FLOAT32_TOLERANCE * np.max(np.abs(expected))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)


def test_refusals_name_the_value_and_the_fix():
    model = _Subclassed()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match=r"subclassed _Subclassed.*keras.Model\(inputs, outputs\)"):
        inference_copy(model)
    functional = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"compute_dtype='float32'.*bfloat16, float16"):
        inference_copy(functional, compute_dtype="float32")
    with pytest.raises(ValueError, match=r"not built"):
        inference_copy(keras.Sequential([keras.layers.Dense(3)]))
    half = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, dtype="mixed_float16")])
    with pytest.raises(ValueError, match=r"computes in float16.*compute_dtype='float16'"):
        inference_copy(half)
