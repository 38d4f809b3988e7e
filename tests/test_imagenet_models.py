"""Tests of the ImageNet ResNets of the zoo (tfadakd/models/imagenet_resnet.py): torchvision's sizes,
PyTorch's output grid, features, a forward pass and the .keras round trip."""

import math

import keras
import numpy as np
import pytest

from tfadakd import models

# torchvision's `num_params` (sum of p.numel() over model.parameters(): conv kernels, BN weight and
# bias, fc weight and bias; BN running statistics are buffers), 1,000 classes.
TORCHVISION_PARAMS = {
    "imagenet_resnet18": 11_689_512,
    "imagenet_resnet34": 21_797_672,
    "imagenet_resnet50": 25_557_032,
}
# torchvision's "GFLOPS" at 224x224 (multiply-accumulates, the convention of `models.flops`).
TORCHVISION_GMACS = {"imagenet_resnet18": 1.81, "imagenet_resnet34": 3.66, "imagenet_resnet50": 4.09}
ARCH = {
    "imagenet_resnet18": ("basic", (2, 2, 2, 2)),
    "imagenet_resnet34": ("basic", (3, 4, 6, 3)),
    "imagenet_resnet50": ("bottleneck", (3, 4, 6, 3)),
}
NAMES = sorted(TORCHVISION_PARAMS)
FEATURES = ("stem", "stage1", "stage2", "stage3", "stage4")
STRIDES = {"stem": 2, "stage1": 4, "stage2": 8, "stage3": 16, "stage4": 32}

_CACHE = {}


def get(name, num_classes=1000, size=224):
    """Builds each configuration once per test session (through the registry)."""
    key = (name, num_classes, size)
    if key not in _CACHE:
        keras.utils.set_random_seed(0)
        _CACHE[key] = models.build(name, num_classes=num_classes, input_shape=(size, size, 3))
    return _CACHE[key]


def size(weights):
    return sum(int(np.prod(v.shape)) for v in weights)


def hand_count(block, num_blocks, num_classes=1000):
    """torchvision's parameter count, from the architecture (conv k*k*in*out, BN 2*C, fc in*out + out)."""
    total = 7 * 7 * 3 * 64 + 2 * 64
    expansion = 4 if block == "bottleneck" else 1
    cin = 64
    for s, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
        for b in range(n):
            out = planes * expansion
            if block == "basic":
                total += 9 * cin * planes + 2 * planes + 9 * planes * planes + 2 * planes
            else:
                total += cin * planes + 2 * planes + 9 * planes * planes + 2 * planes + planes * out + 2 * out
            if (s > 0 and b == 0) or cin != out:
                total += cin * out + 2 * out  # 1x1 projection + BN
            cin = out
    return total + cin * num_classes + num_classes


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")


# --------------------------------------------------------------------------------------------------
# Names and sizes
# --------------------------------------------------------------------------------------------------
def test_registered_without_clashing_with_the_cifar_resnets():
    names = models.names()
    assert set(NAMES) <= set(names)
    assert {"ResNet18", "ResNet50"} <= set(names)  # the CIFAR-adapted ones stay what they are
    # No two names differ only in case (run folders are named after the model).
    assert len({n.lower() for n in names}) == len(names)


@pytest.mark.parametrize("name", NAMES)
def test_trainable_params_equal_torchvision(name):
    model = get(name)
    assert model.name == name
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)
    assert size(model.trainable_weights) == TORCHVISION_PARAMS[name] == hand_count(*ARCH[name])
    assert models.count_params(model) == TORCHVISION_PARAMS[name]
    # The only non-trainable weights are the BN moving statistics (PyTorch's buffers).
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert size(model.non_trainable_weights) == sum(2 * layer.gamma.shape[0] for layer in bn)
    assert models.flops(model) / 1e9 == pytest.approx(TORCHVISION_GMACS[name], abs=0.005)


def test_builder_defaults_are_imagenet():
    from tfadakd.models import imagenet_resnet

    model = models.MODELS.get("imagenet_resnet18")()
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)
    assert imagenet_resnet.IMAGENET_INPUT_SHAPE == (224, 224, 3)
    with pytest.raises(ValueError, match="num_blocks"):
        imagenet_resnet.imagenet_resnet("basic", (2, 2, 2))
    with pytest.raises(ValueError, match="block"):
        imagenet_resnet.imagenet_resnet("dense", (2, 2, 2, 2))


# --------------------------------------------------------------------------------------------------
# Shapes and PyTorch's grid
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_feature_maps_at_224_have_strides_2_to_32(name):
    model = get(name)
    expansion = 4 if ARCH[name][0] == "bottleneck" else 1
    channels = {"stem": 64, "stage1": 64 * expansion, "stage2": 128 * expansion,
                "stage3": 256 * expansion, "stage4": 512 * expansion}
    for feature in FEATURES:
        side = 224 // STRIDES[feature]
        assert tuple(model.get_layer(feature).output.shape) == (None, side, side, channels[feature]), feature
        if feature != "stem":  # the residual sum before the stage's last ReLU
            assert tuple(model.get_layer(f"{feature}_preact").output.shape) == (None, side, side, channels[feature])
    assert tuple(model.get_layer("stem_pool").output.shape) == (None, 56, 56, 64)
    assert tuple(model.get_layer("pool").output.shape) == (None, 512 * expansion)


def test_stem_pads_symmetrically_like_pytorch():
    model = get("imagenet_resnet18")
    assert model.get_layer("stem_conv_pad").padding == ((3, 3), (3, 3))
    assert model.get_layer("stem_conv").padding == "valid" and model.get_layer("stem_conv").strides == (2, 2)
    assert model.get_layer("stem_pool_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("stem_pool").padding == "valid"
    # MaxPool2d(3, 2, padding=1) on a ReLU output: zero padding gives PyTorch's (-inf padded) maxima.
    x = np.maximum(np.random.default_rng(1).normal(size=(1, 6, 6, 1)), 0).astype("float32")
    pool = keras.Sequential([model.get_layer("stem_pool_pad"), model.get_layer("stem_pool")])
    y = np.array(pool(x))[0, :, :, 0]
    padded = np.pad(x[0, :, :, 0], 1, constant_values=-np.inf)
    ref = np.array([[padded[2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(3)] for i in range(3)])
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("name", ["imagenet_resnet18", "imagenet_resnet50"])
def test_small_input_features_and_logits(name, images):
    model = get(name, num_classes=10, size=64)
    expansion = 4 if ARCH[name][0] == "bottleneck" else 1
    out = models.feature_extractor(model)(images, training=False)
    assert set(out) == set(FEATURES) | {"pool", "logits"}
    for feature in FEATURES:
        side = 64 // STRIDES[feature]
        assert tuple(out[feature].shape)[:3] == (2, side, side), feature
    assert tuple(out["stage4"].shape) == (2, 2, 2, 512 * expansion)
    assert tuple(out["pool"].shape) == (2, 512 * expansion)
    assert tuple(out["logits"].shape) == (2, 10)
    # The head is the only difference from the 1,000-class model.
    assert size(get(name).trainable_weights) - size(model.trainable_weights) == 990 * (512 * expansion + 1)


# --------------------------------------------------------------------------------------------------
# Forward pass, initialization, saving
# --------------------------------------------------------------------------------------------------
def test_resnet18_forward_gives_finite_logits(images):
    model = get("imagenet_resnet18", size=64)
    assert model.output_shape == (None, 1000)
    out = keras.ops.convert_to_numpy(model(images, training=False))
    assert out.shape == (2, 1000)
    assert np.all(np.isfinite(out))
    assert not np.allclose(out.sum(axis=1), 1.0)  # logits, not probabilities
    assert not np.allclose(out[0], out[1])


def test_torchvision_init():
    model = get("imagenet_resnet34")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert not layer.use_bias, layer.name
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.momentum == pytest.approx(0.9) and layer.epsilon == pytest.approx(1e-5)
            np.testing.assert_array_equal(np.array(layer.gamma), 1.0)
            np.testing.assert_array_equal(np.array(layer.beta), 0.0)
    # He-normal fan-out: stage4 3x3 convs with 512 outputs.
    kernel = np.array(model.get_layer("stage4_block1_conv2").kernel)
    assert float(np.std(kernel)) == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.03)
    # PyTorch's default Linear: U(+-1/sqrt(512)) kernel and bias.
    head = model.get_layer("logits")
    assert np.abs(np.array(head.kernel)).max() <= 1 / math.sqrt(512)
    assert np.abs(np.array(head.bias)).max() <= 1 / math.sqrt(512)


def test_resnet18_keras_file_round_trip(images, tmp_path):
    model = get("imagenet_resnet18", size=64)
    path = tmp_path / "imagenet_resnet18.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.name == "imagenet_resnet18"
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    a = keras.ops.convert_to_numpy(model(images, training=False))
    b = keras.ops.convert_to_numpy(loaded(images, training=False))
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
