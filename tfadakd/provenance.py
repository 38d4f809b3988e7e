"""Provenance: what code and which machine produced a run, recorded so that results name their machine.

A study that spans several machines (a sweep resumed on another host, runs on CPUs with and without
bfloat16 instructions) must say which run ran where. `fit_run` appends one `describe()` record to the run's
`environment.json` every time the run starts or resumes; `apps/report.py` lists the distinct machines.

Example:

```python
record = tfadakd.provenance.describe()
print(record["cpu_model"], record["cpu_features"], record["precision_policy"], record["git_commit"])
```
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys

import keras
import tensorflow as tf

#: The CPU flags worth naming next to a figure: they decide the precision policy and the speed of a step.
NOTABLE_CPU_FLAGS = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")


def cpu_model(path="/proc/cpuinfo"):
    """The CPU's model name from /proc/cpuinfo (`platform.processor()` where that file is not readable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_features(flags):
    """The members of `NOTABLE_CPU_FLAGS` among `flags`, in that order; None when `flags` is empty (the
    flags could not be read, e.g. without /proc/cpuinfo), so that "unknown" is not taken for "none"."""
    flags = set(flags)
    return [flag for flag in NOTABLE_CPU_FLAGS if flag in flags] if flags else None


def git_commit(directory):
    """`(commit, dirty)` of the git checkout that tracks `directory`'s `__init__.py` (the library's own
    checkout, not one it merely sits in, such as a project holding a virtual environment), or
    `(None, None)` when there is none or git cannot tell (not installed, too slow, refused).

    `dirty` is True when tracked files anywhere in that checkout differ from the commit (uncommitted edits
    that the run's code, the library or the apps, may include), None when git could not say.
    """
    def git(*args):
        return subprocess.run(["git", "--no-optional-locks", "-C", directory, *args], capture_output=True,
                              text=True, timeout=10)

    try:
        if git("ls-files", "--error-unmatch", "--", "__init__.py").returncode != 0:
            return None, None
        head = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None, None
    if head.returncode != 0:
        return None, None
    try:
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return head.stdout.strip(), None
    return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None


def cpu_count():
    """The logical CPUs this process may run on (its affinity where the OS tells it, else `os.cpu_count()`;
    a container's CPU quota is not seen)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _tf_config_task():
    """This process's task in a multi-worker cluster (`"worker:1"`) from TF_CONFIG, or None."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task")
    except (ValueError, AttributeError):  # not JSON, or not an object: not ours to judge here
        return None
    return f"{task.get('type')}:{task.get('index')}" if isinstance(task, dict) and task else None


def _library_version():
    """`tfadakd.__version__`, read without importing the package root from inside it (Python registers the
    package in `sys.modules` before it imports any of its submodules, this one included)."""
    package = sys.modules.get(__name__.rpartition(".")[0])
    return getattr(package, "__version__", None)


def describe():
    """A JSON-serializable record of the code and the machine: time (UTC), library version, path and git
    commit, Python / TensorFlow / Keras versions and backend, precision policy, CPU model, notable CPU flags,
    the logical CPUs this process may use, the accelerators TensorFlow sees, and the multi-worker task."""
    from tfadakd import precision

    library = os.path.dirname(os.path.abspath(__file__))  # the tfadakd package's folder: this module sits in it
    commit, dirty = git_commit(library)
    record = {
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tfadakd": _library_version(),
        "library_path": library,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "precision_policy": keras.config.dtype_policy().name,
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features(precision.cpu_flags()),
        "cpu_cores": cpu_count(),
        "accelerators": [f"{d.device_type}:{d.name}" for d in precision.visible_accelerators()],
        "platform": platform.platform(),
    }
    task = _tf_config_task()
    if task:
        record["tf_config_task"] = task
    return record
