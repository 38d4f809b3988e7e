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
    """The members of `NOTABLE_CPU_FLAGS` among `flags`, in that order."""
    return [flag for flag in NOTABLE_CPU_FLAGS if flag in set(flags)]


def git_commit(directory):
    """`(commit, dirty)` of the git checkout holding `directory`, or `(None, None)` outside one.

    `dirty` is True when tracked files anywhere in the checkout differ from the commit (uncommitted edits
    that the run's code, the library or the apps, may include).
    """
    def git(*args):
        return subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


def cpu_count():
    """The cores this process may run on (its affinity where the OS tells it, else `os.cpu_count()`)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _tf_config_task():
    """This process's task in a multi-worker cluster (`"worker:1"`) from TF_CONFIG, or None."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    except (ValueError, AttributeError):
        return None
    return f"{task.get('type')}:{task.get('index')}" if task else None


def describe():
    """A JSON-serializable record of the code and the machine: time (UTC), library version, path and git
    commit, Python / Keras / backend versions, precision policy, CPU model, notable CPU flags, cores, and
    the accelerators TensorFlow sees (on the TensorFlow backend)."""
    import tfadakd
    from tfadakd import precision

    library = os.path.dirname(os.path.abspath(tfadakd.__file__))
    commit, dirty = git_commit(library)
    record = {
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tfadakd": getattr(tfadakd, "__version__", None),
        "library_path": library,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "precision_policy": keras.config.dtype_policy().name,
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features(precision.cpu_flags()),
        "cpu_cores": cpu_count(),
        "platform": platform.platform(),
    }
    task = _tf_config_task()
    if task:
        record["tf_config_task"] = task
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        record["tensorflow"] = tf.__version__
        record["accelerators"] = [f"{d.device_type}:{d.name}" for d in precision.visible_accelerators()]
    return record
