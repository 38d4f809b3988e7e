"""tfadakd.precision: the default policy follows the CPU's bfloat16 support and the visible devices.

Every test injects the CPU flags and the device list (arguments or monkeypatch), so each has one
expected outcome whatever machine runs it (a CPU with or without AMX, a GPU host).
"""

import re

import keras
import numpy as np
import pytest

import tfadakd
from tfadakd import precision

AMX = {"fpu", "avx512f", "amx_tile", "amx_bf16"}
NO_BF16 = {"fpu", "avx2", "avx512f", "fma"}
GPU = ["PhysicalDevice(name='/physical_device:GPU:0', device_type='GPU')"]


@pytest.fixture
def machine(monkeypatch):
    """Sets what `precision` reads from the machine: `machine(flags, accelerators)`."""

    def set_machine(flags, accelerators):
        monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": set(flags))
        monkeypatch.setattr(precision, "visible_accelerators", lambda: list(accelerators))

    return set_machine


def test_cpu_has_bfloat16_from_flags():
    assert precision.cpu_has_bfloat16({"avx2", "amx_bf16", "amx_tile"})
    assert precision.cpu_has_bfloat16(["avx512f", "avx512_bf16"])
    assert not precision.cpu_has_bfloat16(NO_BF16)
    assert not precision.cpu_has_bfloat16(set())


def test_cpu_has_bfloat16_reads_this_machines_flags_by_default(machine):
    machine(AMX, [])
    assert precision.cpu_has_bfloat16()
    machine(NO_BF16, [])
    assert not precision.cpu_has_bfloat16()


@pytest.mark.parametrize(
    "flags, accelerators, policy",
    [
        (AMX, [], "mixed_bfloat16"),
        ({"avx512_bf16"}, [], "mixed_bfloat16"),
        (NO_BF16, [], "float32"),
        (AMX, GPU, "float32"),  # a GPU is visible: the choice is left to the user
        (NO_BF16, GPU, "float32"),
        (AMX, ["TPU:0"], "float32"),
    ],
)
def test_default_policy_from_injected_flags_and_devices(flags, accelerators, policy):
    assert precision.default_policy(flags, accelerators) == policy


@pytest.mark.parametrize(
    "flags, accelerators, policy",
    [(AMX, [], "mixed_bfloat16"), (NO_BF16, [], "float32"), (AMX, GPU, "float32")],
)
def test_default_policy_and_auto_read_this_machine_by_default(machine, flags, accelerators, policy):
    machine(flags, accelerators)
    assert precision.default_policy() == policy
    assert precision.resolve_policy("auto") == policy


def test_visible_accelerators_lists_gpus_and_tpus(monkeypatch):
    devices = {"GPU": ["gpu0", "gpu1"], "TPU": ["tpu0"], "CPU": ["cpu0"]}
    monkeypatch.setattr(
        precision.tf.config, "list_physical_devices", lambda device_type=None: devices.get(device_type, [])
    )
    assert precision.visible_accelerators() == ["gpu0", "gpu1", "tpu0"]
    devices.update(GPU=[], TPU=[])
    assert precision.visible_accelerators() == []


def test_cpu_flags_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 amx_bf16\nbugs\t: none\n")
    assert precision.cpu_flags(str(info)) == {"fpu", "sse2", "avx512_bf16", "amx_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()


def test_resolve_policy():
    assert precision.resolve_policy("none") == "float32"
    assert precision.resolve_policy("float32") == "float32"
    assert precision.resolve_policy("mixed_float16") == "mixed_float16"
    assert precision.resolve_policy("mixed_bfloat16") == "mixed_bfloat16"
    assert precision.resolve_policy("auto", flags=AMX, accelerators=[]) == "mixed_bfloat16"
    assert precision.resolve_policy("auto", flags=NO_BF16, accelerators=[]) == "float32"
    assert precision.resolve_policy("auto", flags=AMX, accelerators=GPU) == "float32"
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


def test_package_all_names_every_module_of_the_public_api():
    documented = set(re.findall(r"`tfadakd\.(\w+)`", tfadakd.__doc__))
    assert {"precision", "Distiller", "losses"} <= documented
    assert documented <= set(tfadakd.__all__), documented - set(tfadakd.__all__)
    namespace = {}
    exec("from tfadakd import *", namespace)
    assert namespace["precision"] is precision
