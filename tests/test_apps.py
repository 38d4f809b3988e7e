"""The apps end to end on tiny slices of real CIFAR-10, the resume after a kill, and bad flags."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "apps"))
TINY = ["--dataset=cifar10", "--train_examples=192", "--test_examples=128", "--batch_size=64", "--verbose=2",
        "--lr_milestones=1"]


def run_app(app, *args, data_dir=None, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if data_dir:
        env["TFDS_DATA_DIR"] = data_dir
    return subprocess.run(
        [sys.executable, str(REPO / "apps" / app), *args], capture_output=True, text=True, timeout=timeout,
        cwd=REPO, env=env,
    )


@pytest.fixture(scope="module")
def teacher(tfds_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = run_app("train_teacher.py", "--model=resnet8", "--epochs=1", f"--output_dir={out}", *TINY, data_dir=tfds_data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, out / "cifar10" / "resnet8" / "teacher.keras", proc


def test_train_teacher_writes_the_run_directory(teacher):
    out, path, proc = teacher
    run = path.parent
    assert path.is_file()
    for name in ("config.json", "metrics.csv", "results.json", "student_best.keras", "student_final.keras"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 1 and 0 <= results["best_top1"] <= 100 and "best_top5" in results
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "resnet8" and config["train_examples"] == 192 and config["weight_decay"] == 5e-4
    assert "Finished" in proc.stdout


def test_distill_end_to_end_with_baseline(teacher, tfds_data_dir):
    out, path, _ = teacher
    proc = run_app(
        "distill.py", f"--teacher_path={path}", "--teacher=resnet8", "--student=resnet8", "--epochs=2",
        "--baseline_student", f"--output_dir={out}", "--temperature=adaptive", "--temperature_source=teacher",
        "--export_tflite=none", *TINY, data_dir=tfds_data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "cifar10" / "resnet8_from_resnet8_kd_adaptive_std_s0"
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 2
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("temperature", "temperature_p05", "temperature_p50", "temperature_p95", "logit_correlation",
                   "distillation_loss", "student_loss", "val_accuracy", "val_top5", "epoch_seconds"):
        assert column in header, column
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    assert "plan_seconds_left" in header and "plan_phase_seconds_left" in header
    assert "distillation: 2 epochs x 3 steps of 64" in proc.stdout and "[plan] distillation: epoch 2/2" in proc.stdout
    assert "total: about" in proc.stdout  # the estimate after the first batches
    assert json.loads((run / "config.json").read_text())["temperature_source"] == "teacher"
    assert (out / "cifar10" / "resnet8_alone_s0" / "results.json").is_file()
    for label in ("teacher resnet8", "student resnet8 alone", "student resnet8 distilled"):
        assert label in proc.stdout
    exported = json.loads((run / "export.json").read_text())["modes"]["none"]
    assert (run / "export" / "student_none.tflite").is_file()
    assert exported["argmax_agreement"] == 1.0 and exported["max_abs_logit_diff"] < 1e-4
    assert "CONV_2D" in exported["operators"] and not any("Flex" in op for op in exported["operators"])


def start_until(args, path, tfds_data_dir, output):
    """Starts the app `args` and returns its process once `path` exists (or it ended, or 300 s passed)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFDS_DATA_DIR=tfds_data_dir)
    process = subprocess.Popen([sys.executable, str(REPO / "apps" / args[0]), *args[1:]], cwd=REPO, env=env,
                               stdout=output, stderr=output, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not path.exists():
        time.sleep(0.02)
    return process


def test_killed_run_resumes_from_the_last_completed_epoch(teacher, tfds_data_dir, tmp_path):
    _, path, _ = teacher
    args = ["distill.py", f"--teacher_path={path}", "--teacher=resnet8", "--student=resnet8", "--epochs=4",
            f"--output_dir={tmp_path}", "--run_name=killed", *TINY[:-2], "--train_examples=640", "--verbose=0",
            "--lr_milestones=3"]
    state = tmp_path / "cifar10" / "killed" / "checkpoints" / "state.json"
    process = start_until(args, state, tfds_data_dir, output=subprocess.DEVNULL)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert killed_at < 3, "the run finished before it could be killed"
    proc = run_app(*args, data_dir=tfds_data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = state.parent.parent
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 4 and results["resumed_from_epoch"] == killed_at + 1
    epochs = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2", "3"]
    assert json.loads(state.read_text())["epoch"] == 3
    assert not list(run.glob("**/*.tmp-*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs=0"], "epochs"),
        (["--no_such_flag=1"], "no_such_flag"),
        (["--flagfile=/nonexistent.flags"], "nonexistent.flags"),
        (["--method=fitnets"], "Unknown --method 'fitnets'. Valid names: at, correlation, dkd, fitnet, kd, rkd"),
        (["--terms=kd:9,fitnet"], "--terms takes name:weight pairs with a finite weight >= 0, got 'fitnet'"),
        (["--terms=kd:9", "--term_option=fitnet.stage=stage3"], "--term_option names ['fitnet'], which are not among"),
        (["--temperature=hot"], "Valid names: adaptive, learnable, normkd, standardized, static"),
        (["--student=resnet9"], "Unknown --student 'resnet9'"),
        (["--temperature=standardized", "--nostandardize"], "standardize=True"),
        (["--lr_milestones=5,3"], "increasing"),
        (["--export_tflite=int4"], "Unknown --export_tflite mode(s) ['int4']"),
        (["--quantization=int8"], "Unknown command line flag 'quantization'"),  # apps/export.py's flag
        (["--model=resnet8"], "Unknown command line flag 'model'"),  # apps/train_teacher.py's flag
        (["--temperature_options=hot"], "--temperature_options takes name=value pairs, got 'hot'"),
        (["--temperature=static", "--temperature_options=scale=2"], "keyword arguments passed to Static: {'scale': 2}"),
        (["--plugins=no_such_plugin_module"], "--plugins: cannot import 'no_such_plugin_module'"),
        (["--validation_examples=50000"], "--validation_examples=50000 leaves no training image"),
        (["--static_temperature=-1", "--temperature=static"], "Static `temperature` must be a finite number > 0, got -1.0"),
        (["--learning_rate=nan"], "--learning_rate=nan: must be a finite number"),
        (["--distillation_loss_weight=inf"], "--distillation_loss_weight=inf: must be a finite number"),
        (["--epochs=30"], "--lr_milestones=150,180,210 lies beyond the 30 epochs of the run: the learning rate would "
                          "never drop there. Scale the milestones to the epochs (e.g. --lr_milestones=19,22,26)"),
        (["--epochs=3", "--teacher_epochs=2", "--lr_milestones=2", "--teacher_lr_milestones=3"],
         "--teacher_lr_milestones=3 lies beyond the 2 epochs"),
    ],
)
def test_bad_flags_fail_with_a_clear_message(args, message):
    proc = run_app("distill.py", *args, "--output_dir=/nonexistent-never-written", timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_missing_teacher_without_training_says_what_to_do(tfds_data_dir, tmp_path):
    proc = run_app("distill.py", f"--teacher_path={tmp_path}/none.keras", "--notrain_teacher_if_missing",
                   f"--output_dir={tmp_path}", *TINY, data_dir=tfds_data_dir, timeout=120)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "apps/train_teacher.py" in proc.stderr


PLUGIN = """
import tfadakd


class HalfStatic(tfadakd.temperatures.Static):
    def call(self, teacher_logits, student_logits, epoch=None):
        return 0.5 * super().call(teacher_logits, student_logits, epoch)


tfadakd.temperatures.TEMPERATURES.register("half_static", HalfStatic)
"""


def test_registered_scheme_runs_from_the_app_with_a_validation_split(teacher, tfds_data_dir, tmp_path):
    """A scheme registered by a plugin module runs with generic options; the epoch is chosen on validation."""
    out, path, _ = teacher
    (tmp_path / "my_scheme.py").write_text(PLUGIN)
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tmp_path) + (os.pathsep + env_path if env_path else "")
    try:
        proc = run_app("distill.py", f"--teacher_path={path}", "--teacher=resnet8", "--student=resnet8",
                       "--epochs=2", f"--output_dir={tmp_path}", "--plugins=my_scheme", "--temperature=half_static",
                       "--temperature_options=temperature=6", "--nostandardize", "--validation_examples=64",
                       *TINY, data_dir=tfds_data_dir)
    finally:
        os.environ.pop("PYTHONPATH") if env_path is None else os.environ.update(PYTHONPATH=env_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "cifar10" / "resnet8_from_resnet8_kd_half_static_s0"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [float(r["temperature"]) for r in rows] == [3.0, 3.0]  # 0.5 * 6, the plugin's scheme
    val, test = [float(r["val_accuracy"]) for r in rows], [float(r["test_accuracy"]) for r in rows]
    results = json.loads((run / "results.json").read_text())
    chosen = int(np.argmax(val))
    assert results["best_epoch"] == chosen and results["test_top1_selected"] == pytest.approx(100 * test[chosen])
    assert results["test_top1_last"] == pytest.approx(100 * test[-1])
    config = json.loads((run / "config.json").read_text())
    assert config["validation_examples"] == 64 and config["temperature_options"] == ["temperature=6"]
    assert "chosen on validation" in proc.stdout


def test_validation_split_is_disjoint_deterministic_and_not_augmented(tfds_data_dir):
    import tensorflow as tf

    import common
    import tfadakd

    config = common.Config({"dataset": "cifar10", "data_dir": tfds_data_dir, "manual_dir": None, "batch_size": 50,
                            "train_examples": 0, "validation_examples": 100, "test_examples": 50, "seed": 3,
                            "data_seed": None})
    assert common.train_split_name(config, common.open_data(config)) == "train[:49900]"
    data = common.datasets(config, tf.distribute.get_strategy())
    assert data.steps_per_epoch == 998 and data.reported_test is data.test  # ceil(49,900 / 50)
    raw = tfadakd.data.load_cifar("cifar10", "train[49900:]", batch_size=100, augment=False, shuffle=False,
                                  data_dir=tfds_data_dir)
    validation = np.concatenate([x for x, _ in data.validation])
    np.testing.assert_array_equal(validation, next(iter(raw))[0].numpy())  # the last 100, as they are
    np.testing.assert_array_equal(validation, np.concatenate([x for x, _ in common.datasets(
        config.replace(seed=4), tf.distribute.get_strategy()).validation]))
    assert tfadakd.data.num_examples("cifar10", common.train_split_name(config, common.open_data(config))) + 100 == 50000
    no_split = common.datasets(config.replace(validation_examples=0), tf.distribute.get_strategy())
    assert no_split.validation is no_split.test and no_split.reported_test is None


def test_config_is_frozen():
    import common

    config = common.Config({"epochs": 5, "lr_milestones": ["3", "4"]})
    with pytest.raises(AttributeError, match="frozen"):
        config.epochs = 6
    assert config.replace(epochs=6).epochs == 6 and config.epochs == 5
    assert config.lr_milestones == ("3", "4") and config.as_dict()["lr_milestones"] == ["3", "4"]
    with pytest.raises(AttributeError, match="no flag --nope"):
        config.nope


def test_a_shipped_teacher_is_checked_against_its_sha256(tmp_path, capsys):
    import hashlib

    import distill

    path = tmp_path / "teacher.keras"
    path.write_bytes(b"weights")
    distill.verify_shipped(str(path))  # no .sha256 beside it: nothing to check
    (tmp_path / "teacher.keras.sha256").write_text(hashlib.sha256(b"weights").hexdigest() + "  teacher.keras\n")
    distill.verify_shipped(str(path))
    path.write_bytes(b"weightz")
    with pytest.raises(SystemExit) as exit:
        distill.verify_shipped(str(path))
    assert exit.value.code == 2 and "does not match its SHA-256" in capsys.readouterr().err


def test_teacher_cache_is_built_once_and_reused_by_the_next_run(teacher, tfds_data_dir, tmp_path):
    _, path, _ = teacher
    cache = tmp_path / "cache"
    common_args = [f"--teacher_path={path}", "--teacher=resnet8", "--student=resnet8", "--epochs=2",
                   f"--output_dir={tmp_path}", f"--teacher_cache={cache}", "--data_seed=0", *TINY]
    first = run_app("distill.py", *common_args, "--seed=0", data_dir=tfds_data_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "computing epochs 1-2" in first.stdout and "teacher cache: 2 epochs x 3 steps" in first.stdout
    manifest = json.loads((cache / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["0", "1"] and manifest["data_seed"] == 0
    second = run_app("distill.py", *common_args, "--seed=1", "--run_name=second", data_dir=tfds_data_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reusing 2 epochs" in second.stdout and "teacher cache:" not in second.stdout
    assert json.loads((tmp_path / "cifar10" / "second" / "results.json").read_text())["epochs"] == 2
    other = run_app("distill.py", *common_args[:-len(TINY) - 1], "--data_seed=5", *TINY, "--run_name=third",
                    data_dir=tfds_data_dir)
    assert other.returncode == 2 and "another data_seed: 0, this run needs 5" in other.stderr
    assert "Traceback" not in other.stderr and not (tmp_path / "cifar10" / "third" / "metrics.csv").exists()
    (cache / "manifest.json").write_text("[]")  # valid JSON, no manifest
    damaged = run_app("distill.py", *common_args, "--run_name=fourth", data_dir=tfds_data_dir)
    assert damaged.returncode == 2 and "holds no manifest" in damaged.stderr and "Traceback" not in damaged.stderr


def test_a_rerun_with_other_flags_is_refused_naming_them(teacher, tfds_data_dir):
    out, path, _ = teacher
    run = path.parent
    files = lambda: {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}  # noqa: E731
    before = files()
    proc = run_app("train_teacher.py", "--model=resnet8", "--epochs=1", f"--output_dir={out}", *TINY,
                   "--learning_rate=0.9", data_dir=tfds_data_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "learning_rate: 0.05 -> 0.9" in proc.stderr and "--run_name" in proc.stderr
    assert files() == before


def test_a_resume_with_a_changed_teacher_file_is_refused(teacher, tfds_data_dir, tmp_path):
    import shutil

    import keras

    import tfadakd  # noqa: F401  (registers the zoo's layers for load_model)

    _, path, _ = teacher
    copy = tmp_path / "teacher.keras"
    shutil.copy(path, copy)
    args = [f"--teacher_path={copy}", "--teacher=resnet8", "--student=resnet8", f"--output_dir={tmp_path}",
            "--run_name=run", *TINY]
    first = run_app("distill.py", *args, "--epochs=1", data_dir=tfds_data_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    model = keras.models.load_model(copy)
    model.layers[-1].bias.assign(model.layers[-1].bias + 1.0)  # the teacher overwritten in place
    model.save(copy)
    proc = run_app("distill.py", *args, "--epochs=2", data_dir=tfds_data_dir)
    assert proc.returncode == 2 and "teacher_sha256:" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "cifar10" / "run" / "results.json").read_text())["epochs"] == 1


def test_sigterm_stops_the_app_at_a_batch_boundary_and_the_rerun_resumes_there(teacher, tfds_data_dir, tmp_path):
    _, path, _ = teacher
    args = ["distill.py", f"--teacher_path={path}", "--teacher=resnet8", "--student=resnet8", "--epochs=3",
            f"--output_dir={tmp_path}", "--run_name=stopped", *TINY[:-2], "--train_examples=1280", "--verbose=2",
            "--lr_milestones=2"]
    state = tmp_path / "cifar10" / "stopped" / "checkpoints" / "state.json"
    process = start_until(args, state, tfds_data_dir, output=subprocess.PIPE)
    process.send_signal(signal.SIGTERM)  # during epoch 2 (20 batches), or at the latest during its end
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Stopped on SIGTERM" in stderr and "Rerun the same command to resume" in stderr
    assert "Traceback" not in stderr
    stopped = json.loads(state.read_text())
    assert stopped["epoch"] < 2, "the run finished before the signal"

    proc = run_app(*args, data_dir=tfds_data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = (f"at epoch {stopped['epoch'] + 2} after its batch {stopped['step']} of 3" if stopped["step"]
             else f"at epoch {stopped['epoch'] + 2} of 3")
    assert f"Resuming {state.parent.parent} {where}." in proc.stdout
    assert json.loads((state.parent.parent / "results.json").read_text())["epochs"] == 3
    assert sorted(p.name for p in state.parent.iterdir()) == ["epoch-1.weights.h5", "epoch-2.weights.h5", "state.json"]


def _mount_tmpfs(folder, size):
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a small tmpfs, which only root can mount")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.decode().strip()})")


@pytest.mark.parametrize("size, writer", [("1000k", "checkpoints/epoch-0.weights.h5"), ("8000k", "export/student_")])
def test_a_really_full_disk_ends_with_exit_2_and_every_file_intact(teacher, tfds_data_dir, tmp_path, size, writer):
    import hashlib

    _, path, _ = teacher
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, size)
    args = [f"--teacher_path={path}", "--teacher=resnet8", "--student=resnet8", "--epochs=2", f"--output_dir={disk}",
            "--run_name=full", *TINY]
    try:
        if writer.startswith("export"):
            # Train with room to spare, then shrink the disk to what the run holds plus less than the export
            # needs (about 420 kB here), so that the export, and only it, meets the full disk.
            proc = run_app("distill.py", *args, data_dir=tfds_data_dir)
            assert proc.returncode == 0, proc.stderr[-3000:]
            used = int(subprocess.run(["du", "-sk", str(disk)], capture_output=True, text=True).stdout.split()[0])
            remount = subprocess.run(["mount", "-o", f"remount,size={used + 150}k", "tmpfs", str(disk)],
                                     capture_output=True, text=True)
            assert remount.returncode == 0, remount.stderr
        proc = run_app("distill.py", *args, "--export_tflite=none,int8", data_dir=tfds_data_dir)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "No space left on device" in proc.stderr and writer in proc.stderr, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr and "Segmentation" not in proc.stderr
        run = disk / "cifar10" / "full"
        assert not list(run.glob("**/*.tmp-*"))
        state = json.loads((run / "checkpoints" / "state.json").read_text()) if writer.startswith("export") else None
        if state:  # training finished before the disk filled up: its checkpoint is complete and verified
            named = run / "checkpoints" / state["file"]
            assert hashlib.sha256(named.read_bytes()).hexdigest() == state["sha256"][state["file"]]
            assert not (run / "export" / "student_none.tflite").exists() or \
                (run / "export.json").exists()  # no partial .tflite under its final name
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_export_of_a_damaged_run_directory_exits_2_naming_the_file(teacher, tmp_path):
    import shutil

    _, path, _ = teacher
    run = tmp_path / "run"
    shutil.copytree(path.parent, run, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", ".lock"))
    (run / "config.json").write_text('{"dataset": "cifar10", ')  # cut mid-write by something else
    proc = run_app("export.py", f"--run_dir={run}", "--quantization=none")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{run / 'config.json'} is damaged" in proc.stderr and "--dataset=" in proc.stderr

    (run / "config.json").write_text('{"dataset": "cifar10"}')
    data = (run / "student_best.keras").read_bytes()
    (run / "student_best.keras").write_bytes(data[: len(data) // 2])
    proc = run_app("export.py", f"--run_dir={run}", "--quantization=none")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"Cannot load the student {run / 'student_best.keras'}" in proc.stderr
    assert "not a readable .keras archive: it is truncated or damaged" in proc.stderr
    assert "--student_file=final" in proc.stderr and not (run / "export.json").exists()


def test_the_student_is_the_same_whether_its_teacher_was_trained_in_the_process_or_loaded(tfds_data_dir, tmp_path):
    """The same command twice: the first trains the missing teacher, then distils; the second finds the
    teacher and only distils. The students are identical, bit for bit."""
    args = ["--teacher=resnet8", "--student=resnet8", "--epochs=1", "--teacher_epochs=1", f"--output_dir={tmp_path}",
            *TINY, "--lr_milestones="]  # and a constant learning rate, as the apps' messages suggest
    first = run_app("distill.py", *args, "--run_name=first", data_dir=tfds_data_dir)
    assert first.returncode == 0 and "not found: training resnet8" in first.stdout, first.stderr[-3000:]
    second = run_app("distill.py", *args, "--run_name=second", data_dir=tfds_data_dir)
    assert second.returncode == 0 and "not found" not in second.stdout, second.stderr[-3000:]
    import keras

    students = [keras.models.load_model(tmp_path / "cifar10" / name / "student_final.keras") for name in ("first", "second")]
    assert len(students[0].weights) == len(students[1].weights) > 0
    for a, b in zip(students[0].weights, students[1].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_feature_and_logit_terms_together_through_the_app(teacher, tfds_data_dir, tmp_path):
    """--terms=kd:9,fitnet:100 with a stage chosen by --term_option: both losses logged; the teacher-logit
    cache is not used (the teacher's features are read), and the run says so."""
    _, path, _ = teacher
    proc = run_app("distill.py", f"--teacher_path={path}", "--teacher=resnet8", "--student=resnet8", "--epochs=1",
                   "--terms=kd:9,fitnet:100", "--term_option=fitnet.stage=stage3", f"--output_dir={tmp_path}",
                   f"--teacher_cache={tmp_path / 'cache'}", "--run_name=terms", *TINY, data_dir=tfds_data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not used, the terms read the teacher's intermediate features" in proc.stdout
    assert not (tmp_path / "cache").exists()
    header = (tmp_path / "cifar10" / "terms" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"kd_loss", "fitnet_loss", "temperature", "logit_correlation", "student_loss"} <= set(header)
    config = json.loads((tmp_path / "cifar10" / "terms" / "config.json").read_text())
    assert config["terms"] == ["kd:9", "fitnet:100"] and config["term_option"] == ["fitnet.stage=stage3"]
