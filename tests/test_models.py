"""Tests of the CIFAR model zoo (tfadakd.models): exact sizes, forward/backward, saving, features, FLOPs."""

import math

import keras
import numpy as np
import pytest

from tfadakd import models
from tfadakd.models import _common

# docs/method.md section 7: trainable parameters of the reference PyTorch zoo, 100 classes.
EXPECTED_PARAMS = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg11": 9_277_284,
    "vgg13": 9_462_180,
    "vgg16": 14_774_436,
    "vgg19": 20_086_692,
    "MobileNetV2": 812_836,
    "ShuffleV1": 949_258,
    "ShuffleV2": 1_355_528,
    "ResNet18": 11_220_132,
    "ResNet50": 23_705_252,
}
ALL = sorted(EXPECTED_PARAMS)
# One train step on the smaller member(s) of each family (the big ones are slow on two cores; their
# forward pass and size are still checked).
TRAINED = ["resnet8", "resnet8x4", "wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2", "ResNet18"]

# .keras round trip: one per family of layer types (the ShuffleNets carry the custom layers).
ROUND_TRIP = ["resnet8", "wrn_16_1", "vgg8", "ShuffleV1", "ShuffleV2"]

_CACHE = {}


def get(name, num_classes=100):
    """Builds each model once per test session."""
    key = (name, num_classes)
    if key not in _CACHE:
        keras.utils.set_random_seed(0)
        _CACHE[key] = models.build(name, num_classes=num_classes)
    return _CACHE[key]


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    y = np.array([3, 7])
    return x, y


def trainable_size(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


# --------------------------------------------------------------------------------------------------
# Names and sizes
# --------------------------------------------------------------------------------------------------
def test_names_lists_every_model():
    assert set(models.names()) == set(ALL) | {"imagenet_resnet18", "imagenet_resnet34", "imagenet_resnet50"}
    assert models.names() == sorted(models.names())
    assert models.MODELS.names() == models.names()


@pytest.mark.parametrize("name", ALL)
def test_param_count_matches_reference(name):
    model = get(name)
    assert trainable_size(model) == EXPECTED_PARAMS[name]
    assert models.count_params(model) == EXPECTED_PARAMS[name]
    # BN moving statistics are the only non-trainable weights (PyTorch buffers).
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert sum(int(np.prod(v.shape)) for v in model.non_trainable_weights) == sum(
        2 * layer.gamma.shape[0] for layer in bn
    )


# --------------------------------------------------------------------------------------------------
# Forward, train, save
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_forward_pass_gives_finite_logits(name, batch):
    model = get(name)
    assert type(model).__name__ == "Functional"
    assert model.name == name
    head = model.get_layer("logits")
    assert isinstance(head, keras.layers.Dense) and head.activation is keras.activations.linear
    out = keras.ops.convert_to_numpy(model(batch[0], training=False))
    assert out.shape == (2, 100)
    assert np.all(np.isfinite(out))
    # Logits, not probabilities.
    assert not np.allclose(out.sum(axis=1), 1.0)


def _train_one_step(model, batch, run_eagerly):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
        run_eagerly=run_eagerly,
    )
    before = [np.array(v) for v in model.trainable_weights]
    loss = model.train_on_batch(batch[0], batch[1])
    assert np.isfinite(loss)
    after = [np.array(v) for v in model.trainable_weights]
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert all(changed), [v.path for v, c in zip(model.trainable_weights, changed) if not c]


@pytest.mark.parametrize("name", TRAINED)
def test_one_train_step_updates_every_weight(name, batch):
    # Eager: tracing a tf.function train step of a 200-layer graph costs ~20 s on two cores.
    keras.utils.set_random_seed(1)
    _train_one_step(models.build(name), batch, run_eagerly=True)  # a fresh copy, the cache stays as built


def test_compiled_train_step(batch):
    keras.utils.set_random_seed(1)
    _train_one_step(models.build("resnet8"), batch, run_eagerly=False)


def test_custom_layers_run_in_a_tf_function():
    inputs = keras.Input((4, 4, 6))
    x = models.GroupedConv2D(6, 1, groups=3, use_bias=False)(inputs)
    x = models.ChannelShuffle(3)(x)
    x = models.ChannelSlice(1, 5)(x)
    model = keras.Model(inputs, x)
    data = np.random.default_rng(0).normal(size=(2, 4, 4, 6)).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(data), np.array(model(data)), atol=1e-6)
    assert model.predict_on_batch(data).shape == (2, 4, 4, 4)


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_keras_file_round_trip(name, batch, tmp_path):
    model = get(name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    a = keras.ops.convert_to_numpy(model(batch[0], training=False))
    b = keras.ops.convert_to_numpy(loaded(batch[0], training=False))
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2", "ResNet18"])
def test_num_classes_changes_only_the_head(name, batch):
    m100, m10 = get(name), get(name, num_classes=10)
    w100 = {w.path: tuple(w.shape) for w in m100.weights}
    w10 = {w.path: tuple(w.shape) for w in m10.weights}
    assert w100.keys() == w10.keys()
    differing = sorted(p for p in w100 if w100[p] != w10[p])
    assert differing == ["logits/bias", "logits/kernel"]
    features = w100["logits/kernel"][0]
    assert trainable_size(m100) - trainable_size(m10) == 90 * (features + 1)
    assert m10(batch[0], training=False).shape == (2, 10)


# --------------------------------------------------------------------------------------------------
# Errors and the WRN pattern
# --------------------------------------------------------------------------------------------------
def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        models.build("resnet9000")
    message = str(err.value)
    assert "resnet9000" in message
    for name in ALL:
        assert name in message


@pytest.mark.parametrize("bad", [0, -3, 2.5, "100", True])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        models.build("resnet8", num_classes=bad)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        models.build("resnet8", input_shape=(32, 32))


def wrn_params(depth, k, num_classes=100):
    """Trainable parameters of WRN-depth-k, counted by hand from the architecture."""
    n = (depth - 4) // 6
    total = 3 * 9 * 16  # stem conv
    in_ch = 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += 2 * in_ch + 9 * in_ch * width + 2 * width + 9 * width * width
            if in_ch != width:
                total += in_ch * width  # 1x1 shortcut
            in_ch = width
    return total + 2 * in_ch + in_ch * num_classes + num_classes


def test_wrn_formula_agrees_with_reference_rows():
    for depth, k in ((16, 1), (16, 2), (40, 1), (40, 2)):
        assert wrn_params(depth, k) == EXPECTED_PARAMS[f"wrn_{depth}_{k}"]


def test_wrn_pattern_builds_any_size():
    model = models.build("wrn_28_10")
    assert model.name == "wrn_28_10"
    assert trainable_size(model) == wrn_params(28, 10) == 36_536_884
    small = models.build("wrn_10_3", num_classes=10)
    assert trainable_size(small) == wrn_params(10, 3, 10)
    assert "wrn_28_10" not in models.names()


@pytest.mark.parametrize(
    "name, match", [("wrn_15_2", "6n\\+4.*15"), ("wrn_4_2", "6n\\+4.*4"), ("wrn_16_0", "width.*0")]
)
def test_wrn_bad_depth_or_width(name, match):
    with pytest.raises(ValueError, match=match):
        models.build(name)


# --------------------------------------------------------------------------------------------------
# Initialization (the reference zoo's)
# --------------------------------------------------------------------------------------------------
def _std(layer):
    return float(np.std(np.array(layer.weights[0])))


def test_batch_norm_matches_pytorch_defaults():
    for name in ("resnet20", "wrn_16_2", "vgg8", "MobileNetV2", "ShuffleV2", "ResNet18"):
        for layer in get(name).layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                assert layer.momentum == pytest.approx(0.9) and layer.epsilon == pytest.approx(1e-5)
                np.testing.assert_array_equal(np.array(layer.gamma), 1.0)
                np.testing.assert_array_equal(np.array(layer.beta), 0.0)


def test_no_regularizers_and_no_conv_bias_except_vgg():
    for name in ALL:
        for layer in get(name).layers:
            for attr in ("kernel_regularizer", "bias_regularizer", "depthwise_regularizer",
                         "gamma_regularizer", "beta_regularizer"):
                assert getattr(layer, attr, None) is None, (name, layer.name, attr)
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
                assert layer.use_bias == name.startswith("vgg"), (name, layer.name)


def test_he_fan_out_init():
    # resnet32x4, last stage: 3x3 convs with 256 outputs -> std sqrt(2 / (9 * 256)).
    layer = get("resnet32x4").get_layer("stage3_block4_conv2")
    assert _std(layer) == pytest.approx(math.sqrt(2 / (9 * 256)), rel=0.03)
    # Depthwise (MobileNetV2): PyTorch's fan-out of a (C, 1, 3, 3) kernel is 9 * C.
    dw = get("MobileNetV2").get_layer("group5_block1_dw_conv")
    channels = dw.kernel.shape[2]
    assert _std(dw) == pytest.approx(math.sqrt(2 / (9 * channels)), rel=0.05)


def test_dense_init_follows_each_reference():
    # ResNets: PyTorch's default Linear, kernel and bias U(+-1/sqrt(fan_in)).
    head = get("resnet32x4").get_layer("logits")
    bound = 1 / math.sqrt(256)
    assert np.abs(np.array(head.kernel)).max() <= bound
    assert _std(head) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    bias = np.array(head.bias)
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > bound / 2
    # WRN: default kernel, zero bias.
    np.testing.assert_array_equal(np.array(get("wrn_40_2").get_layer("logits").bias), 0.0)
    # VGG and MobileNetV2: N(0, 0.01), zero bias; VGG conv biases zero.
    for name in ("vgg13", "MobileNetV2"):
        head = get(name).get_layer("logits")
        assert _std(head) == pytest.approx(0.01, rel=0.05)
        np.testing.assert_array_equal(np.array(head.bias), 0.0)
    np.testing.assert_array_equal(np.array(get("vgg13").get_layer("block3_conv1").bias), 0.0)


def test_shufflenets_keep_pytorch_default_init():
    model = get("ShuffleV2")
    conv = model.get_layer("stage3_block2_conv1")  # 1x1, 232 -> 232
    bound = 1 / math.sqrt(232)
    assert np.abs(np.array(conv.kernel)).max() <= bound
    assert _std(conv) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    dw = model.get_layer("stage3_block2_dw_conv")  # PyTorch fan-in of a depthwise 3x3 kernel is 9
    assert np.abs(np.array(dw.kernel)).max() <= 1 / 3
    assert _std(dw) == pytest.approx(1 / 3 / math.sqrt(3), rel=0.05)


# --------------------------------------------------------------------------------------------------
# PyTorch semantics of padding, shuffling and grouped convs
# --------------------------------------------------------------------------------------------------
def test_strided_conv_pads_symmetrically_like_pytorch():
    inputs = keras.Input((4, 4, 1))
    out = _common.conv(inputs, 1, 3, 2, name="c", kernel_initializer="ones")
    m = keras.Model(inputs, out)
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    y = np.array(m(x))[0, :, :, 0]
    img = x[0, :, :, 0]
    # PyTorch Conv2d(3, stride=2, padding=1): windows start at -1 and 1.
    np.testing.assert_allclose(y, [[img[0:2, 0:2].sum(), img[0:2, 1:4].sum()],
                                   [img[1:4, 0:2].sum(), img[1:4, 1:4].sum()]])


def test_shufflev1_shortcut_pool_counts_padding_like_pytorch():
    model = get("ShuffleV1")
    pad = model.get_layer("stage1_block0_shortcut_pad")
    pool = model.get_layer("stage1_block0_shortcut_pool")
    inputs = keras.Input((4, 4, 24))
    m = keras.Model(inputs, pool(pad(inputs)))
    y = np.array(m(np.ones((1, 4, 4, 24), "float32")))[0, :, :, 0]
    # AvgPool2d(3, stride=2, padding=1) with count_include_pad=True: the corner sees 4 of 9 ones.
    np.testing.assert_allclose(y, [[4 / 9, 6 / 9], [6 / 9, 1.0]], rtol=1e-6)


def test_channel_shuffle_matches_pytorch_view_permute():
    n, h, w, c, g = 2, 3, 3, 12, 3
    x_nchw = np.random.default_rng(0).normal(size=(n, c, h, w)).astype("float32")
    ref = x_nchw.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    out = np.array(_common.ChannelShuffle(g)(x_nchw.transpose(0, 2, 3, 1)))
    np.testing.assert_array_equal(out, ref.transpose(0, 2, 3, 1))


def test_grouped_conv_equals_per_group_matmul():
    rng = np.random.default_rng(0)
    layer = _common.GroupedConv2D(6, 1, groups=3, use_bias=False)
    x = rng.normal(size=(1, 2, 2, 9)).astype("float32")
    y = np.array(layer(x))
    k = np.array(layer.kernel)[0, 0]  # (3, 6): in/groups x out
    ref = np.concatenate([x[..., 3 * i:3 * i + 3] @ k[:, 2 * i:2 * i + 2] for i in range(3)], axis=-1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert layer.kernel.shape == (1, 1, 3, 6)


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------
FEATURE_SHAPES = {
    "resnet20": {"stem": (32, 32, 16), "stage1": (32, 32, 16), "stage2": (16, 16, 32), "stage3": (8, 8, 64),
                 "pool": (64,)},
    "resnet8x4": {"stem": (32, 32, 32), "stage1": (32, 32, 64), "stage2": (16, 16, 128),
                  "stage3": (8, 8, 256), "pool": (256,)},
    "wrn_16_2": {"stem": (32, 32, 16), "stage1": (32, 32, 32), "stage2": (16, 16, 64), "stage3": (8, 8, 128),
                 "pool": (128,)},
    "vgg8": {"stem": (32, 32, 64), "stage1": (16, 16, 128), "stage2": (8, 8, 256), "stage3": (4, 4, 512),
             "stage4": (4, 4, 512), "pool": (512,)},
    "MobileNetV2": {"stem": (16, 16, 16), "stage1": (16, 16, 12), "stage2": (8, 8, 16), "stage3": (4, 4, 48),
                    "stage4": (2, 2, 160), "pool": (1280,)},
    "ShuffleV1": {"stem": (32, 32, 24), "stage1": (16, 16, 240), "stage2": (8, 8, 480), "stage3": (4, 4, 960),
                  "pool": (960,)},
    "ShuffleV2": {"stem": (32, 32, 24), "stage1": (16, 16, 116), "stage2": (8, 8, 232), "stage3": (4, 4, 464),
                  "pool": (1024,)},
    "ResNet18": {"stem": (32, 32, 64), "stage1": (32, 32, 64), "stage2": (16, 16, 128), "stage3": (8, 8, 256),
                 "stage4": (4, 4, 512), "pool": (512,)},
    "ResNet50": {"stem": (32, 32, 64), "stage1": (32, 32, 256), "stage2": (16, 16, 512),
                 "stage3": (8, 8, 1024), "stage4": (4, 4, 2048), "pool": (2048,)},
}


@pytest.mark.parametrize("name", sorted(FEATURE_SHAPES))
def test_feature_extractor_returns_named_stages(name, batch):
    model = get(name)
    fx = models.feature_extractor(model)
    expected = dict(FEATURE_SHAPES[name], logits=(100,))
    out = fx(batch[0], training=False)
    assert set(out) == set(expected)
    for key, shape in expected.items():
        assert tuple(out[key].shape) == (2,) + shape, key
    np.testing.assert_allclose(np.array(out["logits"]), np.array(model(batch[0], training=False)), atol=1e-5)
    # The extractor shares the model's weights.
    assert fx.get_layer("logits") is model.get_layer("logits")


def test_feature_extractor_preact_and_errors(batch):
    model = get("resnet20")
    out = models.feature_extractor(model, ["stage3_preact", "stage3"])(batch[0], training=False)
    np.testing.assert_allclose(np.maximum(np.array(out["stage3_preact"]), 0), np.array(out["stage3"]), atol=1e-6)
    with pytest.raises(ValueError, match="stage9"):
        models.feature_extractor(model, ["stage9"])
    wrn_out = models.feature_extractor(get("wrn_16_2"), ["stage1_preact"])(batch[0], training=False)
    assert tuple(wrn_out["stage1_preact"].shape) == (2, 32, 32, 32)


# --------------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------------
def test_flops_resnet20_hand_computed():
    def conv(h, k, cin, cout):  # multiply-accumulates of a conv with an h x h output
        return h * h * k * k * cin * cout

    expected = conv(32, 3, 3, 16)  # stem
    expected += 6 * conv(32, 3, 16, 16)  # stage 1: 3 blocks x 2 convs
    expected += conv(16, 3, 16, 32) + 5 * conv(16, 3, 32, 32) + conv(16, 1, 16, 32)  # stage 2 + shortcut
    expected += conv(8, 3, 32, 64) + 5 * conv(8, 3, 64, 64) + conv(8, 1, 32, 64)  # stage 3 + shortcut
    expected += 64 * 100  # Dense
    assert expected == 40_818_944  # "41 MFLOPs" in the literature
    assert models.flops(get("resnet20")) == expected


def test_flops_counts_grouped_depthwise_and_dense():
    inputs = keras.Input((8, 8, 6))
    x = _common.GroupedConv2D(12, 1, groups=3, use_bias=False)(inputs)  # 64 * 6/3 * 12
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)  # 16 * 9 * 12
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5)(x)  # 12 * 5
    assert models.flops(keras.Model(inputs, x)) == 64 * 2 * 12 + 16 * 9 * 12 + 12 * 5

