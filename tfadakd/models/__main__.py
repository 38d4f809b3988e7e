"""Prints the model table of docs/models.md: `python -m tfadakd.models`.

Builds every registered model for 100 classes and 32x32x3 inputs, counts its trainable parameters and
its multiply-accumulates (`tfadakd.models.flops`), and prints a Markdown table.
"""

from __future__ import annotations

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def table(num_classes: int = 100) -> str:
    """Returns the Markdown table (name, family file, trainable params, MFLOPs) for every model."""
    import keras

    from tfadakd import models

    families = {}
    for name in models.names():
        builder = models.MODELS.get(name)
        families[name] = builder.__module__.rsplit(".", 1)[-1] + ".py"
    rows = ["| model | file | trainable params | MFLOPs (MACs) |", "| --- | --- | ---: | ---: |"]
    order = ["resnet.py", "wrn.py", "vgg.py", "mobilenetv2.py", "shufflenet.py", "resnetv2.py"]

    def key(name):  # family order, then natural order of the name ("resnet8" < "resnet8x4" < "resnet14")
        rank = order.index(families[name]) if families[name] in order else len(order)
        digits = [int(t) for t in re.findall(r"\d+", name)]
        return rank, name.lower().rstrip("0123456789x"), digits, name

    for name in sorted(models.names(), key=key):
        model = models.build(name, num_classes=num_classes)
        rows.append(f"| {name} | {families[name]} | {models.count_params(model):,} | {models.flops(model) / 1e6:.2f} |")
        del model
        keras.backend.clear_session()
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
