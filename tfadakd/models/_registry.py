"""The model registry, in its own module so that each family file can register without import cycles."""

from tfadakd.registry import Registry

MODELS = Registry("model")
