"""tfadakd.precision: the default policy follows the CPU's bfloat16 support."""

import keras
import numpy as np
import pytest

import tfadakd
from tfadakd import precision


def test_cpu_has_bfloat16_from_flags():
    assert precision.cpu_has_bfloat16({"avx2", "amx_bf16", "amx_tile"})
    assert precision.cpu_has_bfloat16(["avx512f", "avx512_bf16"])
    assert not precision.cpu_has_bfloat16({"avx2", "avx512f", "fma"})
    assert not precision.cpu_has_bfloat16(set())


def test_default_policy_on_a_cpu_only_machine():
    assert precision.default_policy({"amx_bf16"}) == "mixed_bfloat16"
    assert precision.default_policy({"avx2"}) == "float32"


def test_cpu_flags_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 amx_bf16\nbugs\t: none\n")
    assert precision.cpu_flags(str(info)) == {"fpu", "sse2", "avx512_bf16", "amx_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()


def test_resolve_policy():
    assert precision.resolve_policy("none") == "float32"
    assert precision.resolve_policy("mixed_float16") == "mixed_float16"
    assert precision.resolve_policy("auto") in ("float32", "mixed_bfloat16")
    with pytest.raises(ValueError, match=r"'fp8'.*Valid: auto, none"):
        precision.resolve_policy("fp8")


def test_zoo_models_under_mixed_bfloat16_compute_in_bf16_and_output_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tfadakd.models.build("resnet8", num_classes=10)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"
    logits = model(np.zeros((2, 32, 32, 3), "float32"))
    assert logits.dtype == "float32"
