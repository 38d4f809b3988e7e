"""Tests of tfadakd.export on a resnet8 briefly trained on real CIFAR-10.

The model trains once per module (3 epochs over 2,000 images, about 100 steps); every quantization
mode is then converted once and checked for numbers: float32 parity with Keras, int8 argmax
agreement on 1,000 real test images, builtin-only operators, sizes, and SavedModel reload parity.
"""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tfadakd import data, export, models  # noqa: E402

NUM_CLASSES = 10
TRAIN_EXAMPLES = 2000
TEST_EXAMPLES = 1000
CALIBRATION_EXAMPLES = 300
INPUT_SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def trained_model(tfds_data_dir):
    keras.utils.set_random_seed(0)
    train = data.load_cifar(
        "cifar10", "train", batch_size=64, data_dir=tfds_data_dir,
        num_examples=TRAIN_EXAMPLES, augment=False, seed=0,
    )
    model = models.build("resnet8", num_classes=NUM_CLASSES)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(train, epochs=3, shuffle=False, verbose=0)  # the pipeline shuffles
    return model


@pytest.fixture(scope="module")
def test_set(tfds_data_dir):
    ds = data.load_cifar("cifar10", "test", batch_size=250, data_dir=tfds_data_dir,
                         num_examples=TEST_EXAMPLES)
    images, labels = zip(*ds.as_numpy_iterator())
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture(scope="module")
def calibration(tfds_data_dir):
    return data.calibration_images("cifar10", n=CALIBRATION_EXAMPLES, data_dir=tfds_data_dir)


@pytest.fixture(scope="module")
def keras_logits(trained_model, test_set):
    return trained_model.predict(test_set[0], batch_size=250, verbose=0)


@pytest.fixture(scope="module")
def exported(trained_model, calibration, tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    files = {}
    for mode in export.QUANTIZATION_MODES:
        files[mode] = export.to_tflite(
            trained_model, root / f"resnet8_{mode}.tflite", mode,
            representative_data=calibration if mode == "int8" else None,
        )
    return files


# --------------------------------------------------------------------------------------------------
# Every mode.


@pytest.mark.parametrize("mode", export.QUANTIZATION_MODES)
def test_file_loads_runs_with_right_io(mode, exported, test_set):
    result = exported[mode]
    assert isinstance(result, export.TFLiteExport)
    assert result.quantization == mode and result.batch_size is None
    assert os.path.isfile(result) and result.size_bytes == os.path.getsize(result)
    assert result.calibration_samples == (CALIBRATION_EXAMPLES if mode == "int8" else 0)

    interpreter = export.load_interpreter(result)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    expected = np.int8 if mode == "int8" else np.float32
    assert inp["dtype"] == expected and out["dtype"] == expected
    assert list(inp["shape_signature"]) == [-1, *INPUT_SHAPE]  # dynamic batch
    assert list(out["shape_signature"]) == [-1, NUM_CLASSES]
    scale, _ = inp["quantization"]
    assert (scale > 0) == (mode == "int8")

    logits = export.predict_tflite(result, test_set[0][:37], batch_size=16)
    assert logits.shape == (37, NUM_CLASSES) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("mode", export.QUANTIZATION_MODES)
def test_builtin_ops_only(mode, exported):
    ops = export.tflite_operators(exported[mode])
    assert not [op for op in ops if op.startswith("Flex")]
    assert export.check_builtin_only(exported[mode]) == sorted(set(ops))
    # BatchNorm folded into the convolutions: only these ops remain.
    assert {"CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"} <= set(ops)
    assert set(ops) <= {"CONV_2D", "ADD", "PAD", "MEAN", "FULLY_CONNECTED", "DEQUANTIZE"}
    assert ("DEQUANTIZE" in ops) == (mode == "float16")
    # The flatbuffer reading agrees with the interpreter's own node list (before delegation).
    interpreter = export.load_interpreter(exported[mode])
    assert ops == [op["op_name"] for op in interpreter._get_ops_details()]


# --------------------------------------------------------------------------------------------------
# Numbers.


def test_float32_parity_with_keras(exported, test_set, keras_logits):
    logits = export.predict_tflite(exported["none"], test_set[0])
    assert np.max(np.abs(logits - keras_logits)) <= 1e-4


@pytest.mark.parametrize("mode, max_abs_diff", [("float16", 0.05), ("dynamic", 0.5)])
def test_float16_and_dynamic_close_to_keras(mode, max_abs_diff, exported, test_set, keras_logits):
    logits = export.predict_tflite(exported[mode], test_set[0])
    assert np.max(np.abs(logits - keras_logits)) <= max_abs_diff
    assert np.mean(logits.argmax(-1) == keras_logits.argmax(-1)) >= 0.98


def test_int8_argmax_agreement(exported, test_set, keras_logits):
    logits = export.predict_tflite(exported["int8"], test_set[0])
    keras_top = keras_logits.argmax(-1)
    disagree = logits.argmax(-1) != keras_top
    agreement = 1.0 - disagree.mean()
    assert len(keras_top) >= 500
    assert agreement >= 0.97, f"int8 agrees with Keras on {agreement:.3f} of {len(keras_top)} images"
    # Flips happen only between near-tied classes, or where logits above the range calibrated on the
    # 300 train images saturate at 127 and the top classes tie; never on a confident prediction.
    top2 = np.sort(keras_logits, axis=-1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    output_scale = export.load_interpreter(exported["int8"]).get_output_details()[0]["quantization"][0]
    tied = np.sum(logits == logits.max(axis=-1, keepdims=True), axis=-1) > 1
    assert np.all(((margins < 8 * output_scale) | tied)[disagree])
    # Dequantized logits stay close in general.
    assert np.mean(np.abs(logits - keras_logits)) <= 4 * output_scale


def test_sizes(exported):
    sizes = {mode: result.size_bytes for mode, result in exported.items()}
    assert sizes["float16"] <= 0.55 * sizes["none"]
    assert sizes["dynamic"] <= 0.32 * sizes["none"]
    # The weights (flatbuffer buffers) of the int8 file take about a quarter of the float32 ones.
    payload = {mode: _buffer_bytes(exported[mode]) for mode in ("none", "int8")}
    assert payload["int8"] <= 0.27 * payload["none"]
    # The whole file adds fixed overhead, large for a 79k-parameter model: per-channel scales and
    # int64 zero points (12 bytes for each of ~700 channels) and tensor names; measured 0.302.
    assert sizes["int8"] <= 0.31 * sizes["none"]


def _buffer_bytes(path):
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, "rb") as f:
        model = schema.Model.GetRootAs(f.read(), 0)
    return sum(model.Buffers(i).DataLength() for i in range(model.BuffersLength()))


def test_evaluate_tflite(exported, trained_model, tfds_data_dir, test_set, keras_logits):
    ds = data.load_cifar("cifar10", "test", batch_size=100, data_dir=tfds_data_dir, num_examples=500)
    labels = test_set[1][:500]
    keras_top1 = np.mean(keras_logits[:500].argmax(-1) == labels)

    result = export.evaluate_tflite(exported["none"], ds)
    assert result["num_examples"] == 500 and result["batch_size"] == 100
    assert result["file_size_bytes"] == os.path.getsize(exported["none"])
    assert result["input_dtype"] == "float32"
    assert result["interpreter"] == export.interpreter_backend()
    assert 0 < result["latency_ms_per_image"] < 1000
    assert abs(result["top1"] - keras_top1) <= 1 / 500
    ranked = np.argsort(-keras_logits[:500], axis=-1)[:, :5]
    keras_top5 = np.mean(np.any(ranked == labels[:, None], axis=-1))
    assert abs(result["top5"] - keras_top5) <= 1 / 500 and result["top5"] >= result["top1"]

    int8 = export.evaluate_tflite(exported["int8"], ds, max_examples=130, batch_size=1)
    assert int8["num_examples"] == 130 and int8["batch_size"] == 1 and int8["input_dtype"] == "int8"
    int8_logits = export.predict_tflite(exported["int8"], test_set[0][:130])
    assert int8["top1"] == pytest.approx(np.mean(int8_logits.argmax(-1) == labels[:130]))

    with pytest.raises(ValueError, match="max_examples"):
        export.evaluate_tflite(exported["none"], ds, max_examples=0)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_litert_matches_tf_lite_interpreter(exported, test_set):
    pytest.importorskip("ai_edge_litert")
    images = test_set[0][:64]
    for mode in ("none", "int8"):
        interpreter = tf.lite.Interpreter(model_path=os.fspath(exported[mode]))
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(inp["index"], [len(images), *INPUT_SHAPE])
        interpreter.allocate_tensors()
        x = images
        if mode == "int8":
            scale, zero_point = inp["quantization"]
            x = np.clip(np.round(images / scale) + zero_point, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if mode == "int8":
            scale, zero_point = out["quantization"]
            y = (y.astype(np.float32) - zero_point) * scale
        ours = export.predict_tflite(exported[mode], images)
        tolerance = 1e-5 if mode == "none" else 1.01 * out["quantization"][0]  # one int8 step
        assert np.max(np.abs(ours - y)) <= tolerance


# --------------------------------------------------------------------------------------------------
# Options.


def test_representative_data_forms_give_the_same_file(trained_model, calibration, exported, tmp_path):
    reference = open(exported["int8"], "rb").read()
    dataset = tf.data.Dataset.from_tensor_slices(
        (calibration, np.zeros(len(calibration), np.int32))
    ).batch(64)
    generator = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))  # noqa: E731
    for name, form in [("dataset", dataset), ("generator", generator)]:
        result = export.to_tflite(trained_model, tmp_path / f"{name}.tflite", "int8", form)
        assert result.calibration_samples == CALIBRATION_EXAMPLES
        assert open(result, "rb").read() == reference, name


def test_fixed_batch_one(trained_model, exported, test_set, tmp_path):
    result = export.to_tflite(trained_model, tmp_path / "sub" / "b1.tflite", batch_size=1)
    assert result.batch_size == 1
    inp = export.load_interpreter(result).get_input_details()[0]
    assert list(inp["shape_signature"]) == [1, *INPUT_SHAPE]
    images = test_set[0][:7]  # runs image by image
    np.testing.assert_allclose(
        export.predict_tflite(result, images), export.predict_tflite(exported["none"], images), atol=1e-5
    )


def test_saved_model_reload_parity(trained_model, test_set, keras_logits, tmp_path):
    path = export.to_saved_model(trained_model, tmp_path / "saved")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    reloaded = tf.saved_model.load(path)
    images = test_set[0][:200]
    np.testing.assert_allclose(reloaded.serve(images).numpy(), keras_logits[:200], atol=1e-5)
    (outputs,) = reloaded.signatures["serving_default"](tf.constant(images)).values()
    np.testing.assert_allclose(outputs.numpy(), keras_logits[:200], atol=1e-5)


def test_mixed_bfloat16_model_exports_through_a_float32_copy(trained_model, test_set, keras_logits, tmp_path):
    assert export.float32_model(trained_model) is trained_model  # float32: no copy
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bf16 = models.build("resnet8", num_classes=NUM_CLASSES)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    bf16.set_weights(trained_model.get_weights())
    copy = export.float32_model(bf16)
    assert copy is not bf16 and all(layer.compute_dtype == "float32" for layer in copy._flatten_layers())
    assert bf16.compute_dtype == "bfloat16"  # the trained model is left as it is
    images = test_set[0][:200]
    path = export.to_tflite(bf16, tmp_path / "bf16.tflite").path  # the converter rejects bf16 convolutions
    np.testing.assert_allclose(export.predict_tflite(path, images), keras_logits[:200], atol=1e-4)


# --------------------------------------------------------------------------------------------------
# Errors (cheap: raised before any conversion work).


def test_int8_refuses_without_representative_data(trained_model, tmp_path):
    with pytest.raises(ValueError, match="quantization='int8' needs representative_data") as info:
        export.to_tflite(trained_model, tmp_path / "x.tflite", "int8")
    assert "calibration_images" in str(info.value)
    assert not (tmp_path / "x.tflite").exists()


def test_unknown_quantization(trained_model, tmp_path):
    with pytest.raises(ValueError, match="Unknown quantization 'int4'") as info:
        export.to_tflite(trained_model, tmp_path / "x.tflite", "int4")
    assert "'none', 'float16', 'dynamic', 'int8'" in str(info.value)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((8, 28, 28, 3), np.float32), "shape"),
        (np.zeros((8, 32, 32, 3), np.uint8), "raw pixels"),
        (np.zeros((0, 32, 32, 3), np.float32), "empty"),
    ],
)
def test_bad_representative_data(bad, message, trained_model, tmp_path):
    with pytest.raises(ValueError, match=message):
        export.to_tflite(trained_model, tmp_path / "x.tflite", "int8", representative_data=bad)


def test_representative_data_ignored_outside_int8_warns(calibration, tmp_path):
    tiny = keras.Sequential([keras.Input(INPUT_SHAPE), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(3)])
    with pytest.warns(UserWarning, match="only used by quantization='int8'"):
        result = export.to_tflite(tiny, tmp_path / "tiny.tflite", "dynamic", calibration)
    assert export.load_interpreter(result).get_input_details()[0]["dtype"] == np.float32


def test_check_builtin_only_rejects_flex(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec((1, 3, 3), tf.float32)])
    def inverse(x):
        return tf.linalg.inv(x) + 1.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions([inverse.get_concrete_function()], inverse)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path / "flex.tflite"
    path.write_bytes(converter.convert())
    assert export.tflite_operators(path) == ["FlexMatrixInverse", "ADD"]
    with pytest.raises(ValueError, match=r"FlexMatrixInverse x1 \(Flex / SELECT_TF_OPS\)"):
        export.check_builtin_only(path)


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        export.tflite_operators(path)


def test_model_without_single_input(tmp_path):
    a, b = keras.Input((4,)), keras.Input((4,))
    two_inputs = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match="exactly one input"):
        export.to_tflite(two_inputs, tmp_path / "x.tflite")
