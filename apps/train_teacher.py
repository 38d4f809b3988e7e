"""Trains a zoo model on CIFAR-10/100 with the reference recipe, e.g. a teacher for distillation.

    python apps/train_teacher.py --model=resnet32x4 --dataset=cifar100

Recipe defaults (METHOD.md section 5): SGD momentum 0.9, lr 0.05 x0.1 at epochs 150/180/210, batch 64,
240 epochs, coupled weight decay 5e-4. Writes saved_models/<dataset>/<model>/ (metrics.csv,
tensorboard/, student_best.keras, student_final.keras, results.json) and teacher.keras (the final
model) there; rerunning the same command resumes an interrupted run.
"""

import os

from absl import app, flags

import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet32x4", "Zoo model to train (see tfadakd.models.names()).")
flags.DEFINE_string("save_path", None, "Where to write the final model (default: <run dir>/teacher.keras).")


def train_model(strategy, train, test, model_name, run_dir, epochs, learning_rate, config, save_path=None,
                lr_milestones=None):
    """Trains `model_name` from scratch with cross-entropy into `run_dir`; returns (results, model)."""
    import keras

    import tfadakd

    with strategy.scope():
        model = common.build_model(model_name, tfadakd.data.num_classes(FLAGS.dataset))
        model.compile(
            optimizer=common.optimizer(strategy, learning_rate, lr_milestones),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=common.metrics(),
            jit_compile=FLAGS.jit_compile,
        )
    results = common.fit_run(model, train, test, run_dir, epochs, config=config, verbose=FLAGS.verbose)
    if save_path:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
            tfadakd.callbacks.atomic_save(model.save, save_path)
        except OSError as error:
            common.fail(f"{error}\nThe run itself is complete in {run_dir}; fix the folder or free disk "
                        "space and rerun the same command to write the model.")
    return results, model


def main(argv):
    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}; flags look like --name=value.")
    import tfadakd

    if FLAGS.model not in tfadakd.models.names() and not FLAGS.model.startswith("wrn_"):
        common.fail(f"Unknown --model {FLAGS.model!r}. Valid names: {', '.join(tfadakd.models.names())}.")
    common.milestones()
    common.writable(FLAGS.output_dir)
    if FLAGS.save_path:
        common.writable(os.path.dirname(os.path.abspath(FLAGS.save_path)))
    strategy = common.setup()
    train, test = common.datasets(strategy)
    run_dir = common.run_dir(FLAGS.model)
    save_path = FLAGS.save_path or os.path.join(run_dir, "teacher.keras")
    results, _ = train_model(
        strategy, train, test, FLAGS.model, run_dir, FLAGS.epochs, FLAGS.learning_rate, common.flag_config(), save_path
    )
    common.print_table(
        [{"model": FLAGS.model, "epochs": results.get("epochs"), "best top-1": results.get("best_top1"),
          "last top-1": results.get("last_top1"), "saved": save_path}],
        f"Finished {run_dir}",
    )


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
