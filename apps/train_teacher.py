"""Trains a zoo model on CIFAR-10/100 with the reference recipe, e.g. a teacher for distillation.

    python apps/train_teacher.py --model=resnet32x4 --dataset=cifar100

Recipe defaults (docs/method.md, the training recipe): SGD momentum 0.9, lr 0.05 x0.1 at epochs
150/180/210, batch 64, 240 epochs, coupled weight decay 5e-4. Writes saved_models/<dataset>/<model>/
(metrics.csv, tensorboard/, student_best.keras, student_final.keras, results.json) and teacher.keras (the
final model) there; rerunning the same command resumes an interrupted run. With --validation_examples=N
the best epoch is chosen on the last N training images, which are never trained on.
"""

import os

from absl import app, flags

import app_flags
import common

FLAGS = flags.FLAGS
app_flags.define_data_flags()
app_flags.define_training_flags()
flags.DEFINE_string("model", "resnet32x4", "Zoo model to train (see tfadakd.models.names()).")
flags.DEFINE_string("save_path", None, "Where to write the final model (default: <run dir>/teacher.keras).")


def main(argv):
    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}; flags look like --name=value.")
    config = common.Config.from_flags()
    common.check_model_name("model", config.model)
    common.milestones(config)
    common.writable(config.output_dir)
    if config.save_path:
        common.writable(os.path.dirname(os.path.abspath(config.save_path)))
    strategy = common.setup(config)
    data = common.datasets(config, strategy)
    run_dir = common.run_dir(config, config.model)
    save_path = config.save_path or os.path.join(run_dir, "teacher.keras")
    results, _ = common.train_model(
        config, strategy, data, config.model, run_dir, config.epochs, config.learning_rate, config.as_dict(), save_path
    )
    common.print_table([{"model": config.model, "epochs": results.get("epochs"), **common.top1_columns(results),
                         "saved": save_path}], f"Finished {run_dir}")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
