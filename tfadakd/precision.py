"""Choosing the Keras precision policy: the fastest correct one for the machine.

Measured here (`docs/performance.md`): on a CPU with bfloat16 instructions (AMX or AVX512_BF16),
`mixed_bfloat16` makes the CIFAR distillation step 1.7x (resnet20 -> resnet8) to 2.9x (resnet32x4 ->
resnet8x4) faster than float32, at the same accuracy on a real CIFAR-100 run; without those
instructions bfloat16 is emulated and slower. On GPUs the choice (float16 with loss scaling, or
bfloat16 on recent GPUs) is left to the user.

Example:

```python
policy = tfadakd.precision.default_policy()     # "mixed_bfloat16" on an AMX CPU, else "float32"
keras.mixed_precision.set_global_policy(policy)
```
"""

from __future__ import annotations

import tensorflow as tf

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
#: CPU flags (as in /proc/cpuinfo) of native bfloat16 matrix instructions.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (a set of strings; empty where /proc/cpuinfo is not readable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bfloat16(flags=None):
    """Whether the CPU has native bfloat16 matrix instructions (AMX-BF16 or AVX512_BF16)."""
    flags = cpu_flags() if flags is None else set(flags)
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)


def visible_accelerators():
    """The GPUs and TPUs TensorFlow sees, as a list of `tf.config.PhysicalDevice` (empty on a CPU host)."""
    return tf.config.list_physical_devices("GPU") + tf.config.list_physical_devices("TPU")


def default_policy(flags=None, accelerators=None):
    """`"mixed_bfloat16"` when training runs on a CPU with native bfloat16 instructions and no GPU or
    TPU is visible, `"float32"` otherwise.

    Arguments:
        flags: CPU flags to decide from (default: this machine's, from /proc/cpuinfo).
        accelerators: the visible GPUs / TPUs to decide from (default: `visible_accelerators()`);
            any non-empty sequence means "not a CPU-only machine".
    """
    accelerators = visible_accelerators() if accelerators is None else list(accelerators)
    return "mixed_bfloat16" if not accelerators and cpu_has_bfloat16(flags) else "float32"


def resolve_policy(name, flags=None, accelerators=None):
    """Maps a policy name, `"auto"` (see `default_policy`) or `"none"` (float32) to a Keras policy name.

    Arguments:
        name: `"auto"`, `"none"` or one of `POLICIES`.
        flags, accelerators: passed to `default_policy` for `"auto"` (default: this machine's).

    Raises:
        ValueError: naming the valid choices.
    """
    if name == "auto":
        return default_policy(flags, accelerators)
    if name == "none":
        return "float32"
    if name not in POLICIES:
        raise ValueError(f"Unknown precision policy {name!r}. Valid: auto, none, {', '.join(POLICIES)}.")
    return name
