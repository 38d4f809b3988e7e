"""Distills a teacher into a student on CIFAR-10/100.

    python apps/distill.py --flagfile=cifar100.flags

Loads the teacher from --teacher_path (trains it first with the teacher flags if it is missing and
--train_teacher_if_missing is on), builds the student from the zoo, and trains it with the chosen
method and temperature scheme. The defaults are the paper's: KD on standardized logits with the
adaptive max-logit temperature, weights CE 0.1 and KD 9. Writes saved_models/<dataset>/<run name>/
(config.json, metrics.csv, tensorboard/, student_best.keras, student_final.keras, results.json);
rerunning the same command resumes an interrupted run.
"""

import os

from absl import app, flags

import common
import export as export_app
import train_teacher

FLAGS = flags.FLAGS

# ---------------------------------------------------------------------------- models
flags.DEFINE_string("teacher", "resnet32x4", "Teacher architecture (zoo name), used to train a missing teacher.")
flags.DEFINE_string("teacher_path", None, "Teacher .keras file (default: <output_dir>/<dataset>/<teacher>/teacher.keras).")
flags.DEFINE_bool("train_teacher_if_missing", True, "Train the teacher first when --teacher_path does not exist.")
flags.DEFINE_integer("teacher_epochs", None, "Epochs for a teacher trained here (default: --epochs).", lower_bound=1)
flags.DEFINE_list("teacher_lr_milestones", None, "Learning-rate milestones for a teacher trained here (default: --lr_milestones).")
flags.DEFINE_float("teacher_learning_rate", None, "Learning rate for a teacher trained here (default: --learning_rate).", lower_bound=0.0)
flags.DEFINE_bool("unsafe_teacher", False, "Allow a teacher .keras file containing arbitrary code (Lambda layers). Only for files you trust.")
flags.DEFINE_string("student", "resnet8x4", "Student architecture (zoo name).")
flags.DEFINE_bool("baseline_student", False, "Also train the student alone (cross-entropy, same budget) and report it.")
flags.DEFINE_list("export_tflite", [], "After training, export the best student to TFLite in these modes (none, float16, dynamic, int8) into <run dir>/export/, with export.json.")
flags.DEFINE_bool("student_alone", False, "Only train the student alone (cross-entropy) into the run directory: the no-distillation baseline.")

# ---------------------------------------------------------------------------- method
flags.DEFINE_string("method", "kd", "Distillation loss: kd or dkd (tfadakd.losses.LOSSES).")
flags.DEFINE_string("temperature", "adaptive", "Temperature scheme: static, adaptive, standardized, learnable, normkd.")
flags.DEFINE_enum("temperature_source", "both", ["both", "teacher"], "Adaptive temperature: max over both logit vectors (reference code) or the teacher's (paper's abstract).")
flags.DEFINE_float("static_temperature", 4.0, "T for --temperature=static.")
flags.DEFINE_float("standardized_base", 2.0, "Base T for --temperature=standardized.")
flags.DEFINE_float("normkd_scale", 2.0, "Scale of the std for --temperature=normkd.")
flags.DEFINE_enum("learnable_mode", "global", ["global", "instance"], "CTKD temperature: one global value or a per-sample MLP.")
flags.DEFINE_integer("learnable_reversal_epochs", 10, "CTKD: epochs of the gradient-reversal cosine schedule.", lower_bound=1)
flags.DEFINE_bool("standardize", True, "Z-score teacher and student logits per sample before the loss (logit standardization).")
flags.DEFINE_float("student_loss_weight", 0.1, "Weight of the cross-entropy on labels.", lower_bound=0.0)
flags.DEFINE_float("distillation_loss_weight", 9.0, "Weight of the distillation loss.", lower_bound=0.0)
flags.DEFINE_float("dkd_alpha", 1.0, "DKD: TCKD weight.", lower_bound=0.0)
flags.DEFINE_float("dkd_beta", 8.0, "DKD: NCKD weight (per-pair values in apps/flags/).", lower_bound=0.0)
flags.DEFINE_integer("dkd_warmup_epochs", 20, "DKD: epochs of linear warm-up.", lower_bound=0)
flags.DEFINE_enum("nan_policy", "raise", ["raise", "skip_batch"], "A batch with NaN/Inf teacher logits, loss or gradients is never applied; raise: stop the run with a message; skip_batch: go on and count it in the skipped_batches log.")


def make_temperature():
    import tfadakd

    options = {
        "static": {"temperature": FLAGS.static_temperature},
        "adaptive": {"source": FLAGS.temperature_source},
        "standardized": {"base": FLAGS.standardized_base},
        "normkd": {"scale": FLAGS.normkd_scale},
        "learnable": {"mode": FLAGS.learnable_mode, "reversal_epochs": FLAGS.learnable_reversal_epochs},
    }
    return tfadakd.temperatures.TEMPERATURES.build(FLAGS.temperature, **options.get(FLAGS.temperature, {}))


def make_loss():
    import tfadakd

    options = {"dkd": {"alpha": FLAGS.dkd_alpha, "beta": FLAGS.dkd_beta, "warmup_epochs": FLAGS.dkd_warmup_epochs}}
    return tfadakd.losses.LOSSES.build(
        FLAGS.method, temperature=make_temperature(), standardize=FLAGS.standardize, **options.get(FLAGS.method, {})
    )


def default_run_name():
    standardized = "_std" if FLAGS.standardize else ""
    return f"{FLAGS.student}_from_{FLAGS.teacher}_{FLAGS.method}_{FLAGS.temperature}{standardized}_s{FLAGS.seed}"


def load_teacher(path):
    import keras

    try:
        return keras.models.load_model(path, safe_mode=not FLAGS.unsafe_teacher)
    except Exception as error:  # noqa: BLE001 - any failure to read the file is reported the same way
        common.fail(
            f"Cannot load the teacher from {path}: {type(error).__name__}: {error}\nThe file may be truncated, "
            "not a .keras model, or (with a Lambda layer) refused by Keras' safe mode; retrain it with "
            "apps/train_teacher.py, delete it to have it retrained here, or pass --unsafe_teacher for a file you trust."
        )


def top1(model, dataset):
    """Top-1 accuracy (%) of a logits model on a dataset, computed directly."""
    import numpy as np

    correct = total = 0
    for x, y in dataset:
        predictions = np.argmax(model.predict_on_batch(x), axis=-1)
        correct += int(np.sum(predictions == np.asarray(y)))
        total += len(predictions)
    return 100.0 * correct / max(total, 1)


def main(argv):
    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}; flags look like --name=value.")
    import keras

    import tfadakd

    for flag, registry in (("method", tfadakd.losses.LOSSES), ("temperature", tfadakd.temperatures.TEMPERATURES)):
        if getattr(FLAGS, flag) not in registry:
            common.fail(f"Unknown --{flag} {getattr(FLAGS, flag)!r}. Valid names: {', '.join(registry.names())}.")
    for flag in ("student", "teacher"):
        name = getattr(FLAGS, flag)
        if name not in tfadakd.models.names() and not name.startswith("wrn_"):
            common.fail(f"Unknown --{flag} {name!r}. Valid names: {', '.join(tfadakd.models.names())}.")
    try:
        make_loss()  # validate the method options before any training
    except ValueError as error:
        common.fail(str(error))
    if FLAGS.student_loss_weight == 0 and FLAGS.distillation_loss_weight == 0:
        common.fail("--student_loss_weight and --distillation_loss_weight cannot both be 0.")
    common.writable(FLAGS.output_dir)
    common.milestones()
    unknown = sorted(set(FLAGS.export_tflite) - set(tfadakd.export.QUANTIZATION_MODES))
    if unknown:
        common.fail(f"Unknown --export_tflite mode(s) {unknown}. Valid: {', '.join(tfadakd.export.QUANTIZATION_MODES)}.")
    if FLAGS.teacher_lr_milestones:
        common.milestones("teacher_lr_milestones")

    strategy = common.setup()
    train, test = common.datasets(strategy)
    if FLAGS.student_alone:
        run_dir = common.run_dir(f"{FLAGS.student}_alone_s{FLAGS.seed}")
        results, _ = train_teacher.train_model(
            strategy, train, test, FLAGS.student, run_dir, FLAGS.epochs, FLAGS.learning_rate,
            {"model": FLAGS.student, **common.flag_config()},
        )
        common.print_table([{"model": f"student {FLAGS.student} alone", "best top-1": results.get("best_top1"),
                             "last top-1": results.get("last_top1"), "run": run_dir}], "Finished")
        return
    teacher_path = FLAGS.teacher_path or os.path.join(FLAGS.output_dir, FLAGS.dataset, FLAGS.teacher, "teacher.keras")
    if not os.path.exists(teacher_path):
        if not FLAGS.train_teacher_if_missing:
            common.fail(
                f"The teacher {teacher_path} does not exist. Train it with `python apps/train_teacher.py "
                f"--model={FLAGS.teacher} --dataset={FLAGS.dataset}`, pass --teacher_path, or allow "
                "--train_teacher_if_missing."
            )
        epochs = FLAGS.teacher_epochs or FLAGS.epochs
        print(f"Teacher {teacher_path} not found: training {FLAGS.teacher} for {epochs} epochs first.")
        train_teacher.train_model(
            strategy, train, test, FLAGS.teacher, os.path.dirname(teacher_path), epochs,
            FLAGS.teacher_learning_rate or FLAGS.learning_rate,
            {"model": FLAGS.teacher, **common.flag_config()}, save_path=teacher_path,
            lr_milestones=common.milestones("teacher_lr_milestones") if FLAGS.teacher_lr_milestones else None,
        )

    run_dir = common.run_dir(default_run_name())
    with strategy.scope():
        teacher = load_teacher(teacher_path)
        student = common.build_model(FLAGS.student, tfadakd.data.num_classes(FLAGS.dataset))
        try:
            distiller = tfadakd.Distiller(
                student, teacher, make_loss(), FLAGS.student_loss_weight, FLAGS.distillation_loss_weight,
                nan_policy=FLAGS.nan_policy,
            )
        except ValueError as error:
            common.fail(f"{error} (teacher: {teacher_path})")
        distiller.compile(
            optimizer=common.optimizer(strategy),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=common.metrics(),
            jit_compile=FLAGS.jit_compile,
        )
    results = common.fit_run(
        distiller, train, test, run_dir, FLAGS.epochs, model_to_save=student,
        config={"teacher_path": teacher_path, **common.flag_config()}, verbose=FLAGS.verbose,
    )

    rows = [{"model": f"teacher {FLAGS.teacher}", "top-1 (%)": top1(teacher, test), "run": teacher_path}]
    if FLAGS.baseline_student:
        alone_dir = os.path.join(FLAGS.output_dir, FLAGS.dataset, f"{FLAGS.student}_alone_s{FLAGS.seed}")
        alone, _ = train_teacher.train_model(
            strategy, train, test, FLAGS.student, alone_dir, FLAGS.epochs, FLAGS.learning_rate,
            {"model": FLAGS.student, **common.flag_config()},
        )
        rows.append({"model": f"student {FLAGS.student} alone", "top-1 (%)": alone.get("last_top1"), "run": alone_dir})
    rows.append({"model": f"student {FLAGS.student} distilled", "top-1 (%)": results.get("last_top1"), "run": run_dir})
    common.print_table(rows, f"{FLAGS.dataset}, {results.get('epochs')} epochs, {FLAGS.method} + {FLAGS.temperature} temperature (last-epoch top-1)")
    if FLAGS.export_tflite:
        export_app.print_report(export_app.export_run(run_dir, FLAGS.export_tflite, FLAGS.dataset,
                                                      test_examples=FLAGS.test_examples or None))
    print(f"\nbest distilled top-1: {results.get('best_top1', float('nan')):.2f}% at epoch {results.get('best_epoch')}; "
          f"results: {os.path.join(run_dir, 'results.json')}")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
