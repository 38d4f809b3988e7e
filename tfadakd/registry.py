"""A small name -> builder registry, shared by models, losses and temperature schemes."""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional


class Registry:
    """Maps names to builder callables, so that apps and configs choose by name.

    Adding an architecture or a method is one file plus one registration line.

    Example:

    ```python
    MODELS = Registry("model")

    @MODELS.register("resnet8")
    def resnet8(num_classes=100, input_shape=(32, 32, 3)):
        ...

    model = MODELS.build("resnet8", num_classes=10)
    ```

    Arguments:
        kind: What the registry holds ("model", "temperature scheme", ...); used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: Dict[str, Callable] = {}

    def register(self, name: str, builder: Optional[Callable] = None):
        """Registers `builder` under `name`; usable as a decorator when `builder` is omitted.

        Raises:
            ValueError: if `name` is already registered.
        """

        def _register(fn: Callable) -> Callable:
            if name in self._builders:
                raise ValueError(f"A {self.kind} named {name!r} is already registered.")
            self._builders[name] = fn
            return fn

        return _register if builder is None else _register(builder)

    def names(self) -> List[str]:
        """Returns the registered names, sorted."""
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterable[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable:
        """Returns the builder registered under `name`.

        Raises:
            ValueError: naming the unknown value and listing the valid names.
        """
        try:
            return self._builders[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Valid names: {', '.join(self.names())}."
            ) from None

    def build(self, name: str, *args, **kwargs):
        """Calls the builder registered under `name` with the given arguments."""
        return self.get(name)(*args, **kwargs)
