"""environment.json: every start or resume of a run records the code and the machine, and the report lists them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfadakd
from tfadakd import provenance
from tfadakd.runs import ENVIRONMENT, fit_run, record_environment

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "apps"))

import report  # noqa: E402

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Test CPU @ 2.00GHz
flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16 sse4_2
"""


def tiny_run(run_dir, epochs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).normal(size=(32, 4)).astype("float32"), np.arange(32) % 3
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    return fit_run(model, data, data, run_dir, epochs=epochs, verbose=0)


def read(run_dir):
    with open(Path(run_dir) / ENVIRONMENT) as f:
        return json.load(f)


def test_each_start_and_each_resume_appends_one_record_and_a_finished_run_none(tmp_path):
    tiny_run(tmp_path, epochs=1)
    tiny_run(tmp_path, epochs=2)  # resumes at epoch 1
    tiny_run(tmp_path, epochs=2)  # finished: nothing trains, nothing recorded
    records = read(tmp_path)
    assert [r["initial_epoch"] for r in records] == [0, 1]
    record = records[0]
    assert record["tfadakd"] == tfadakd.__version__
    assert record["library_path"] == str(REPO / "tfadakd")
    assert record["precision_policy"] == "float32" and record["backend"] == "tensorflow"
    assert record["cpu_features"] == provenance.cpu_features(tfadakd.precision.cpu_flags())
    assert record["tensorflow"] == tf.__version__
    assert len(record["accelerators"]) == len(tfadakd.precision.visible_accelerators())
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the suite runs from a git checkout
        assert record["git_commit"] == head.stdout.strip()


def test_cpu_model_and_notable_flags_are_read_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert provenance.cpu_model(str(path)) == "Intel(R) Xeon(R) Test CPU @ 2.00GHz"
    flags = tfadakd.precision.cpu_flags(str(path))
    assert provenance.cpu_features(flags) == ["amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"]
    assert provenance.cpu_features({"fpu", "sse4_2"}) == []  # read, and none of them
    assert provenance.cpu_features(tfadakd.precision.cpu_flags(str(tmp_path / "missing"))) is None  # unknown


@pytest.fixture
def git(tmp_path, monkeypatch):
    """A git command on a fresh repository in tmp_path, isolated from any checkout and git setting around it."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    command = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    return lambda *args: subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout.strip()


def test_git_commit_is_the_librarys_own_checkout_and_dirty_with_uncommitted_edits(tmp_path, git):
    library, venv = tmp_path / "lib", tmp_path / "venv" / "site-packages" / "lib"
    for folder in (library, venv):
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("x = 1\n")
    assert provenance.git_commit(str(library)) == (None, None)  # not a checkout
    git("init", "-q")
    (tmp_path / "app.py").write_text("y = 1\n")
    git("add", "app.py", "lib/__init__.py")
    git("commit", "-q", "-m", "one")
    commit = git("rev-parse", "HEAD")
    assert provenance.git_commit(str(library)) == (commit, False)
    assert provenance.git_commit(str(venv)) == (None, None)  # inside the checkout, but not tracked by it
    (tmp_path / "app.py").write_text("y = 2\n")  # an edit outside the library folder still counts
    assert provenance.git_commit(str(library)) == (commit, True)


def test_a_multi_worker_task_is_named(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert provenance.describe()["tf_config_task"] == "worker:1"
    for value in (None, "not json", '["a list"]', '{"task": "worker"}'):  # nothing to name, and no crash
        if value is None:
            monkeypatch.delenv("TF_CONFIG")
        else:
            monkeypatch.setenv("TF_CONFIG", value)
        assert "tf_config_task" not in provenance.describe()


def test_a_start_refused_for_empty_data_records_nothing(tmp_path):
    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 4), "float32"), np.zeros((0,), "int64"))).batch(4)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="no batch"):
        fit_run(model, empty, empty, tmp_path, epochs=1, verbose=0)
    assert not (tmp_path / ENVIRONMENT).exists()


def test_an_unreadable_environment_json_is_kept_aside_and_a_new_list_started(tmp_path):
    (tmp_path / ENVIRONMENT).write_text('{"edited": "by hand"')
    records = record_environment(str(tmp_path), 3, 5)
    assert [(r["initial_epoch"], r["initial_step"]) for r in records] == [(3, 5)]
    assert read(tmp_path) == records
    assert (tmp_path / (ENVIRONMENT + ".unreadable")).read_text() == '{"edited": "by hand"'


def write_environment(run, *cpus):
    run.mkdir(parents=True)
    records = [{"initial_epoch": i, "cpu_model": cpu, "cpu_cores": 2, "cpu_features": ["amx_bf16"],
                "precision_policy": "mixed_bfloat16", "tfadakd": "0.1.0", "git_commit": "0123456789abcdef",
                "git_dirty": False, "tensorflow": "2.20.0", "keras": "3.12.0", "backend": "tensorflow"}
               for i, cpu in enumerate(cpus)]
    (run / ENVIRONMENT).write_text(json.dumps(records))
    return run


def test_the_report_lists_each_machine_with_its_runs_and_runs_without_a_record(tmp_path):
    a = write_environment(tmp_path / "kd_T4_s0", "CPU A")
    b = write_environment(tmp_path / "kd_T4_s1", "CPU A", "CPU B")  # resumed on another machine
    old = tmp_path / "kd_T4_s2"
    old.mkdir()
    odd = tmp_path / "kd_T4_s3"
    odd.mkdir()
    (odd / ENVIRONMENT).write_text("[1, 2]")
    where = report.machines([a, b, old, odd])
    line_a, line_b, missing, unreadable = where
    assert line_a.startswith("CPU A, 2 logical CPUs (amx_bf16); mixed_bfloat16; tfadakd 0.1.0 at commit 0123456789;")
    assert (where[line_a], where[line_b]) == (["kd_T4_s0", "kd_T4_s1"], ["kd_T4_s1"])
    assert where[missing] == ["kd_T4_s2"] and missing == "not recorded (no environment.json)"
    assert where[unreadable] == ["kd_T4_s3"] and "unreadable or empty" in unreadable
    assert report._machine({}) == ("unknown, unknown logical CPUs (CPU flags unknown); unknown; tfadakd unknown; "
                                   "TensorFlow unknown, Keras unknown (unknown backend)")
    rows = [{"variant": "student_alone", "runs": 3, "epochs": [1], "selection": "validation", "test_top1": (1.0, 0.0),
             "test_last_top1": (1.0, 0.0), "best_val_top1": (1.0, 0.0), "wall_time": 1.0}]
    text = report.markdown(rows, where=where)
    assert f"- {line_b}: 1 run: kd_T4_s1\n" in text
    assert f"- {line_a}: all 3 runs" in report.markdown(rows, where={line_a: ["x", "y", "z"]})
