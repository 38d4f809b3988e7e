"""Split strings (`"train"`, `"train[:1000]"`, `"validation[-10%:]"`) resolved against known split sizes.

The same slice syntax as tensorflow-datasets, for every data source (tfds, image folders).

Example:

>>> resolve("train[-500:]", {"train": 2000, "validation": 100})
('train', 1500, 2000)
"""

import types


def resolve(split, sizes):
    """Returns `(base split, start, stop)` of a split string over `sizes` (split name -> examples).

    Arguments:
        split: a split name of `sizes`, or a tfds slice of one (`"train[:80%]"`); no `+` combinations.
        sizes: dict of the data set's split names and their example counts.

    Raises:
        ValueError: naming the split and the valid names.
    """
    import tensorflow_datasets as tfds

    names = ", ".join(repr(s) for s in sizes)
    if not isinstance(split, str):
        raise ValueError(f"Invalid split {split!r}: expected one of {names}, or a slice such as 'train[:1000]'.")
    infos = {name: types.SimpleNamespace(num_examples=count) for name, count in sizes.items()}
    try:
        instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
    except (ValueError, KeyError, AssertionError) as error:
        raise ValueError(f"Invalid split {split!r}: expected one of {names}, or a slice such as 'train[:1000]' "
                         f"({error}).") from None
    if len(instructions) != 1:
        raise ValueError(f"Invalid split {split!r}: combining splits is not supported; use one of {names}.")
    ins = instructions[0]
    start = 0 if ins.from_ is None else ins.from_
    stop = sizes[ins.splitname] if ins.to is None else ins.to
    return ins.splitname, start, max(start, stop)
