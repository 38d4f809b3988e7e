"""What an export is: the quantization modes, the path type, and `TFLiteExport`, what `to_tflite` returns.

Shared by the conversion (`tfadakd.export.conversion`), the operator checks (`tfadakd.export.operators`) and
the interpreter (`tfadakd.export.interpreter`); all of it is public as `tfadakd.export.<name>`.

Example:

```python
from tfadakd import export

for mode in export.QUANTIZATION_MODES:               # "none", "float16", "dynamic", "int8"
    result = export.to_tflite(model, f"student_{mode}.tflite", mode, representative_data=calibration)
    print(result.quantization, result.size_bytes, os.fspath(result))
```
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

QUANTIZATION_MODES = ("none", "float16", "dynamic", "int8")
"""Valid values of `to_tflite(..., quantization=...)`:

- `"none"`: float32 weights and activations.
- `"float16"`: weights stored as float16 (about half the size), dequantized to float32 at load or
  run time; float32 input and output.
- `"dynamic"`: dynamic-range quantization: int8 weights, activations quantized on the fly by the
  kernels that support it; float32 input and output; no calibration data.
- `"int8"`: full integer quantization calibrated on representative data: int8 weights and
  activations, builtin int8 kernels only, int8 input and output tensors (quantize the input and
  dequantize the output with each tensor's `(scale, zero_point)`; `predict_tflite` does it).
"""

DEFAULT_MAX_CALIBRATION_SAMPLES = 1000


def check_quantization(quantization) -> str:
    """`quantization` itself if it is one of `QUANTIZATION_MODES`, else a ValueError listing them."""
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"Unknown quantization {quantization!r}. Valid values: "
            f"{', '.join(repr(m) for m in QUANTIZATION_MODES)}."
        )
    return quantization


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """What `to_tflite` wrote. Path-like: pass it wherever a path is expected.

    Attributes:
        path: The `.tflite` file.
        quantization: One of `QUANTIZATION_MODES`.
        size_bytes: The file's size.
        batch_size: The exported batch dimension (`None` for dynamic).
        calibration_samples: Number of representative samples used (`int8` only, else 0).
    """

    path: str
    quantization: str
    size_bytes: int
    batch_size: Optional[int] = None
    calibration_samples: int = 0

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path
