"""The operators of a `.tflite` file, read from its flatbuffer: which ones, and whether all are builtin.

Reads the file directly (no interpreter), so it also inspects files that the interpreter cannot load
(Flex ops without the Flex delegate, custom ops without their kernels). The flatbuffer schema comes from
`tfadakd._compat.tflite_schema`.

Example:

```python
from tfadakd import export

sorted(set(export.tflite_operators("student_int8.tflite")))   # ['ADD', 'CONV_2D', 'FULLY_CONNECTED', ...]
export.check_builtin_only("student_int8.tflite")              # raises on a Flex (SELECT_TF_OPS) op
```
"""

from __future__ import annotations

import collections
import os
from typing import List, Tuple

from tfadakd import _compat
from tfadakd.export.modes import PathLike


def _read_operators(path: PathLike) -> List[Tuple[str, bool]]:
    """(name, is_builtin) of every operator of every subgraph, in file order."""
    schema = _compat.tflite_schema()
    with open(os.fspath(path), "rb") as f:
        buffer = f.read()
    if len(buffer) < 8 or buffer[4:8] != b"TFL3":
        raise ValueError(f"{os.fspath(path)!r} is not a TFLite flatbuffer (no 'TFL3' identifier).")
    model = schema.Model.GetRootAs(buffer, 0)
    builtin_names = {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }
    codes = []
    for i in range(model.OperatorCodesLength()):
        opcode = model.OperatorCodes(i)
        code = max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM:
            custom = opcode.CustomCode()
            custom = custom.decode("utf-8") if isinstance(custom, bytes) else str(custom)
            codes.append((custom, False))
        else:
            codes.append((builtin_names.get(code, f"BUILTIN_{code}"), True))
    operators = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            operators.append(codes[subgraph.Operators(o).OpcodeIndex()])
    return operators


def tflite_operators(path: PathLike) -> List[str]:
    """Lists the operator of every node of a `.tflite` file, in execution order.

    Reads the flatbuffer directly, so it works on files that the interpreter cannot load (e.g.
    with Flex ops and no Flex delegate). Builtin operators have their schema names (`"CONV_2D"`,
    `"FULLY_CONNECTED"`, ...); custom operators their custom code (Flex ops start with `"Flex"`,
    e.g. `"FlexMatrixInverse"`).

    Example:

    ```python
    ops = tflite_operators("resnet8_int8.tflite")
    sorted(set(ops))  # ['ADD', 'CONV_2D', 'FULLY_CONNECTED', 'MEAN', ...]
    ```

    Arguments:
        path: A `.tflite` file (or a `TFLiteExport`).

    Returns:
        A list of operator names, one per node (all subgraphs).

    Raises:
        ValueError: if the file is not a TFLite flatbuffer.
    """
    return [name for name, _ in _read_operators(path)]


def check_builtin_only(path: PathLike) -> List[str]:
    """Checks that a `.tflite` file uses builtin TFLite operators only.

    Flex ops (from `SELECT_TF_OPS`, which Keras' `model.export(format="litert")` allows by
    default) need the TensorFlow Flex delegate, which edge runtimes do not ship; other custom ops
    need their own kernels registered.

    Example:

    ```python
    check_builtin_only("student_int8.tflite")  # ['ADD', 'CONV_2D', ...] or raises
    ```

    Arguments:
        path: A `.tflite` file (or a `TFLiteExport`).

    Returns:
        The sorted distinct operator names, when all are builtin.

    Raises:
        ValueError: naming each non-builtin operator and how many times it appears, and marking
            the Flex / SELECT_TF_OPS ones.
    """
    operators = _read_operators(path)
    custom = collections.Counter(name for name, builtin in operators if not builtin)
    if custom:
        described = ", ".join(
            f"{name} x{count}" + (" (Flex / SELECT_TF_OPS)" if name.startswith("Flex") else " (custom)")
            for name, count in sorted(custom.items())
        )
        raise ValueError(
            f"{os.fspath(path)!r} uses {sum(custom.values())} non-builtin TFLite operator(s): "
            f"{described}. Runtimes without the Flex delegate or these custom kernels cannot run "
            f"it. Convert with target_spec.supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS] (as "
            f"tfadakd.export.to_tflite does) and replace the layers that need TensorFlow ops."
        )
    return sorted({name for name, _ in operators})

