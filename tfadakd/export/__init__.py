"""Export to TFLite (LiteRT) and SavedModel, operator checks, and evaluation through the interpreter.

The path from a trained Keras model to an edge file:

```python
import tfadakd
from tfadakd import export

model = tfadakd.models.build("resnet8", num_classes=10)
...  # train or distill
calibration = tfadakd.data.calibration_images("cifar10", n=300)
result = export.to_tflite(model, "resnet8_int8.tflite", "int8", representative_data=calibration)
export.check_builtin_only(result)  # raises if a Flex (SELECT_TF_OPS) op slipped in
test = tfadakd.data.load_cifar("cifar10", split="test", batch_size=100)
print(export.evaluate_tflite(result, test))  # {"top1": ..., "top5": ..., "latency_ms_per_image": ...}
```

One module per step, every public name also here as `tfadakd.export.<name>`:

- `tfadakd.export.modes`: `QUANTIZATION_MODES`, `TFLiteExport` (what `to_tflite` returns), `PathLike`.
- `tfadakd.export.conversion`: `to_tflite`, `to_saved_model`, `float32_model`, through a temporary
  SavedModel and `tf.lite.TFLiteConverter`, builtin TFLite ops only (no Flex).
- `tfadakd.export.calibration`: the representative data of an `"int8"` export, gathered and checked.
- `tfadakd.export.operators`: `tflite_operators`, `check_builtin_only`, read from the flatbuffer.
- `tfadakd.export.interpreter`: `load_interpreter`, `interpreter_backend`, `predict_tflite`,
  `evaluate_tflite`, with the LiteRT interpreter (`ai_edge_litert`) when installed, else `tf.lite`.

The library never reads flags: `apps/` and `benchmarks/` parse them and call these functions.
"""

from tfadakd.export.conversion import float32_model, to_saved_model, to_tflite
from tfadakd.export.interpreter import evaluate_tflite, interpreter_backend, load_interpreter, predict_tflite
from tfadakd.export.modes import DEFAULT_MAX_CALIBRATION_SAMPLES, QUANTIZATION_MODES, PathLike, TFLiteExport
from tfadakd.export.operators import check_builtin_only, tflite_operators

__all__ = [
    "DEFAULT_MAX_CALIBRATION_SAMPLES",
    "PathLike",
    "QUANTIZATION_MODES",
    "TFLiteExport",
    "check_builtin_only",
    "evaluate_tflite",
    "float32_model",
    "interpreter_backend",
    "load_interpreter",
    "predict_tflite",
    "tflite_operators",
    "to_saved_model",
    "to_tflite",
]
