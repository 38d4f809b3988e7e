"""Shared pytest fixtures.

`tfds_data_dir` gives tests a tensorflow-datasets data dir holding the real `cifar10` and `cifar100`:

1. `$TFDS_DATA_DIR`, if it already holds both (the Makefile exports `~/.cache/tfadakd/tfds`);
2. else `~/.cache/tfadakd/tfds`, built once (idempotently) by `../shared/cifar/prepare.py` when that
   script exists beside the repository (machines without internet);
3. else the tests that need it are skipped, with the reason shown by `pytest -ra`, unless
   `TFADAKD_REQUIRE_DATA=1` (set by `.ci/run`), where they fail instead.

This file imports nothing heavy (no TensorFlow), so subprocess-based tests stay unaffected.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Hide TensorFlow's C++ INFO/WARNING banners (errors still show); an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO_ROOT.parent / "shared" / "cifar"
CACHE_ROOT = Path.home() / ".cache" / "tfadakd"
CACHE_TFDS = CACHE_ROOT / "tfds"
CACHE_BIN = CACHE_ROOT / "cifar-bin"
DATASETS = ("cifar10", "cifar100")


def _holds_prepared(data_dir, names=DATASETS):
    """True if `data_dir` has a prepared tfds version 3.x of every dataset in `names` (no tfds import)."""
    if not data_dir:
        return False
    root = Path(data_dir).expanduser()
    return all(any(root.glob(f"{name}/3.*/dataset_info.json")) for name in names)


def _prepare_into_cache():
    """Runs prepare.py into CACHE_ROOT once, under a file lock (parallel pytest workers)."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / ".prepare.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no lock
            pass
        if _holds_prepared(CACHE_TFDS):
            return
        cmd = [sys.executable, str(SHARED_CIFAR / "prepare.py"),
               "--bin_dir", str(CACHE_BIN), "--tfds_data_dir", str(CACHE_TFDS)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not _holds_prepared(CACHE_TFDS):
            pytest.fail(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


@pytest.fixture(scope="session")
def tfds_data_dir():
    """A tfds data dir (str) holding prepared `cifar10` and `cifar100`; skips the test if there is none."""
    env = os.environ.get("TFDS_DATA_DIR")
    if _holds_prepared(env):
        return str(Path(env).expanduser())
    if _holds_prepared(CACHE_TFDS):
        return str(CACHE_TFDS)
    if (SHARED_CIFAR / "prepare.py").is_file():
        _prepare_into_cache()
        return str(CACHE_TFDS)
    if os.environ.get("TFADAKD_REQUIRE_DATA") == "1":
        pytest.fail(
            "TFADAKD_REQUIRE_DATA=1 (set by .ci/run) but no prepared CIFAR was found in TFDS_DATA_DIR, "
            f"{CACHE_TFDS}, or through {SHARED_CIFAR / 'prepare.py'}: real-data tests must run in CI."
        )
    pytest.skip(
        "real CIFAR data not available: set TFDS_DATA_DIR to a tfds data dir holding prepared cifar10 and "
        "cifar100 (e.g. run `python -c \"import tensorflow_datasets as tfds; tfds.load('cifar10'); "
        "tfds.load('cifar100')\"` on a machine with internet), or provide ../shared/cifar/prepare.py "
        f"beside the repository (looked for {SHARED_CIFAR / 'prepare.py'})"
    )
