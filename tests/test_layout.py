"""The library's module layout: the split packages keep their public names, no module imports the package
root it sits in, and Keras / TensorFlow internals are imported by `tfadakd/_compat.py` only."""

import ast
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

import tfadakd  # noqa: E402
from tfadakd import data, export  # noqa: E402
from tfadakd.data import cifar  # noqa: E402

LIBRARY = Path(tfadakd.__file__).resolve().parent
PRIVATE_MODULES = ("keras.src", "tensorflow.python", "tensorflow.lite.python")


def imports_of(path):
    """(line, imported module name) of every import statement of a Python file, docstrings aside."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def library_modules():
    return sorted(p for p in LIBRARY.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("name", [
    "DEFAULT_MAX_CALIBRATION_SAMPLES", "PathLike", "QUANTIZATION_MODES", "TFLiteExport", "check_builtin_only",
    "evaluate_tflite", "float32_model", "interpreter_backend", "load_interpreter", "predict_tflite",
    "tflite_operators", "to_saved_model", "to_tflite",
])
def test_export_keeps_its_public_names(name):
    assert getattr(tfadakd.export, name) is getattr(export, name)
    assert name in export.__all__


def test_cifar_keeps_its_public_names_here_and_in_data():
    for name in cifar.__all__:
        assert hasattr(cifar, name), name
        if name != "prepared_builder":
            assert getattr(data, name) is getattr(cifar, name), name
    assert callable(cifar.index_augmentation)


def test_prepared_builder_is_public_and_says_what_is_missing(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="download=False"):
        cifar.prepared_builder("cifar10", tmp_path, download=False)


def test_no_library_module_imports_the_package_root():
    offenders = [f"{path.relative_to(LIBRARY.parent)}:{node.lineno}" for path in library_modules()
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import)
                 and any(alias.name == "tfadakd" for alias in node.names)]
    assert not offenders, f"`import tfadakd` inside the library (import the submodule instead): {offenders}"


def test_private_keras_and_tensorflow_modules_only_in_compat():
    offenders = [f"{path.relative_to(LIBRARY.parent)}:{line} {name}" for path in library_modules()
                 if path.name != "_compat.py" for line, name in imports_of(path)
                 if name.startswith(PRIVATE_MODULES)]
    assert not offenders, f"private Keras / TensorFlow modules outside tfadakd/_compat.py: {offenders}"
