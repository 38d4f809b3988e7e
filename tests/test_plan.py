"""apps/plan.py and `apps/distill.py --dry_run`: the phases a run will go through, their step counts, and
wall-time estimates derived from measured step times."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "apps"))

import plan as plan_lib  # noqa: E402


class FakeClock:
    """A timer that advances by the given steps, one per call."""

    def __init__(self, steps):
        self.now, self.steps = 0.0, itertools.cycle(steps)

    def __call__(self):
        self.now += next(self.steps)
        return self.now


def config(tmp_path, **overrides):
    import common

    values = dict(dataset="cifar10", student="resnet8", teacher="resnet14", teacher_path=None, epochs=5,
                  teacher_epochs=3, batch_size=64, output_dir=str(tmp_path), run_name=None, seed=0, method="kd",
                  temperature="adaptive", standardize=True, student_alone=False, baseline_student=False,
                  export_tflite=(), teacher_cache=None, unsafe_teacher=False)
    return common.Config({**values, **overrides})


class FakeData:
    """What make_plan reads of the pipelines: steps per epoch and the evaluation batches."""

    def __init__(self, steps=10, validation_batches=2, test_batches=3, split=True):
        import tensorflow as tf

        self.steps_per_epoch = steps
        self.validation = tf.data.Dataset.range(validation_batches)
        self.test = tf.data.Dataset.range(test_batches)
        self.reported_test = self.test if split else None
        self.num_classes, self.image_shape = 10, (32, 32, 3)  # the tests plan CIFAR-10 runs


def phases(plan):
    return [(p.name, p.epochs, p.train_steps, p.eval_steps) for p in plan.phases]


def test_phases_and_steps_follow_the_flags(tmp_path):
    import distill

    from tfadakd import models

    student, teacher = (models.flops(models.build(n, num_classes=10)) for n in ("resnet8", "resnet14"))
    missing = distill.make_plan(config(tmp_path), FakeData())
    assert phases(missing) == [("teacher", 3, 10, 5), ("distillation", 5, 10, 5)]
    assert missing.phases[0].train_units == 3 * teacher and missing.phases[1].train_units == 3 * student + teacher

    (tmp_path / "cifar10" / "resnet14").mkdir(parents=True)
    models.build("resnet14", num_classes=10).save(tmp_path / "cifar10" / "resnet14" / "teacher.keras")
    present = distill.make_plan(config(tmp_path, baseline_student=True, export_tflite=("none", "int8")),
                                FakeData(split=False))
    assert phases(present) == [("distillation", 5, 10, 2), ("student alone", 5, 10, 2), ("export", 2, 0, 3)]

    alone = distill.make_plan(config(tmp_path, student_alone=True), FakeData())
    assert phases(alone) == [("student alone", 5, 10, 5)] and alone.phases[0].train_units == 3 * student

    cached = distill.make_plan(config(tmp_path, teacher_cache=str(tmp_path / "cache")), FakeData())
    assert phases(cached) == [("teacher cache", 5, 10, 0), ("distillation", 5, 10, 5)]
    assert cached.phases[1].train_units == 3 * student  # no teacher forward in the steps

    state = tmp_path / "cifar10" / distill.default_run_name(config(tmp_path)) / "checkpoints"
    state.mkdir(parents=True)
    (state / "state.json").write_text('{"epoch": 1, "file": "epoch_0001.weights.h5"}')
    resumed = distill.make_plan(config(tmp_path), FakeData())
    assert phases(resumed) == [("distillation", 3, 10, 5)]  # epochs 3, 4 and 5 are left


def test_estimates_come_from_measured_step_times():
    calls = []
    unit = plan_lib.seconds_per_unit(lambda: calls.append(1), units_per_step=1000, batches=3,
                                     timer=FakeClock([0.0, 0.2, 0.0, 0.4, 0.0, 0.3]))
    assert len(calls) == 4 and unit == pytest.approx(0.3 / 1000)  # median of 0.2, 0.4, 0.3; first call untimed
    phases = [plan_lib.Phase("teacher", 2, 10, 0, 4, 30, 10), plan_lib.Phase("distillation", 3, 10, 5, 4, 40, 10)]
    plan = plan_lib.Plan(phases, "CPU", "float32")
    assert phases[0].units_per_epoch == 4 * 10 * 30 and phases[1].units_per_epoch == 4 * (10 * 40 + 5 * 10)
    assert plan.total_seconds(1e-3) == pytest.approx(2 * 1.2 + 3 * 1.8)
    progress = plan_lib.Progress(plan, timer=FakeClock([1.0]))
    line, values = progress.epoch_done("teacher", 0, 2, seconds=2.4)  # twice the estimate per unit
    assert values["plan_phase_seconds_left"] == pytest.approx(2.4)
    assert values["plan_seconds_left"] == pytest.approx(2.4 + 3 * 1800 * 2.4 / 1200)
    assert "teacher: epoch 1/2" in line


def test_a_long_plan_on_a_cpu_says_so_in_one_line():
    plan = plan_lib.Plan([plan_lib.Phase("teacher", 240, 782, 157, 64, 3e8, 1e8)], "CPU, 2 cores", "float32")
    text = "\n".join(plan.describe(2e-11))  # about 21 hours
    assert "more than 12 hours" in text and "apps/flags/quick.flags" in text and "--teacher_path" in text
    gpu = plan_lib.Plan(plan.phases, "1 x GPU", "float32", accelerator=True)
    assert "more than 12 hours" not in "\n".join(gpu.describe(2e-11))
    assert "more than 12 hours" not in "\n".join(plan.describe(1e-15))


def test_dry_run_prints_the_plan_and_writes_nothing(tfds_data_dir, tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run(
        [sys.executable, str(REPO / "apps" / "distill.py"), "--dry_run", "--dataset=cifar10", "--teacher=resnet8",
         "--student=resnet8", "--epochs=3", "--teacher_epochs=2", "--train_examples=640", "--batch_size=64",
         "--lr_milestones=2", f"--output_dir={out}", "--mixed_precision=none"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=dict(os.environ, TFDS_DATA_DIR=tfds_data_dir, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher: 2 epochs x 10 steps of 64, about" in proc.stdout
    assert "distillation: 3 epochs x 10 steps of 64, about" in proc.stdout and "total: about" in proc.stdout
    assert not out.exists()



def test_the_baseline_beside_a_named_run_gets_a_directory_of_its_own(tmp_path):
    """--baseline_student --run_name=X: the student alone trains in X_alone, not in the distilled run X."""
    import distill

    named = config(tmp_path, run_name="mine", baseline_student=True)
    assert distill.alone_dir_of(named) == str(tmp_path / "cifar10" / "mine_alone")
    assert distill.alone_dir_of(named) != str(tmp_path / "cifar10" / "mine")
    assert distill.alone_dir_of(config(tmp_path, run_name="mine", student_alone=True)) == str(tmp_path / "cifar10" / "mine")
    assert distill.alone_dir_of(config(tmp_path)) == str(tmp_path / "cifar10" / "resnet8_alone_s0")


def test_the_export_table_shows_a_dash_not_nan_without_a_float32_file(capsys):
    import exporting

    row = {"size_bytes": 2048, "size_vs_float32": None, "tflite_top1": 0.5, "argmax_agreement": 1.0,
           "latency_ms_per_image": 1.0}
    exporting.print_report({"source": "run", "test_examples": 10, "interpreter": "litert", "keras_top1": 0.5,
                            "modes": {"int8": row}})
    out = capsys.readouterr().out
    assert "nan" not in out and "int8  2.00  -" in out and "add mode none" in out


def test_a_stop_during_the_cache_build_or_an_export_says_what_stopped_and_how_to_go_on(capsys):
    import os
    import signal

    import common

    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        with common.stop_message("the teacher-logit cache build", "Rerun the same command."):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next statement
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "Stopped by SIGTERM during the teacher-logit cache build. Rerun the same command." in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is handler


@pytest.mark.parametrize("flagfile", sorted((Path(__file__).resolve().parents[1] / "apps" / "flags").glob("*.flags")),
                         ids=lambda p: p.name)
def test_every_shipped_flag_file_passes_the_apps_checks(flagfile, monkeypatch):
    """Each apps/flags/*.flags parses with apps/distill.py's flags and passes every check that needs no data
    (names of models, methods and terms, their options, weights, milestones against the epochs)."""
    from absl import flags as absl_flags

    import common
    import distill

    argv = ["distill.py", f"--flagfile={flagfile}"]
    absl_flags.FLAGS.unparse_flags()
    try:
        absl_flags.FLAGS(argv)
        config = common.Config({f.name: f.value for module in ("distill", "app_flags")
                                for f in absl_flags.FLAGS.get_flags_for_module(module)})
        distill.check(config)
        assert distill.make_terms(config)
    finally:
        absl_flags.FLAGS.unparse_flags()
