"""How close is the adaptive loss to a correlation loss on real models? Per sample, on held-out images:

    adaptive_i    = T_i^2 KL(softmax(zt_i / T_i) || softmax(zs_i / T_i)),  T_i = (1+sqrt 3)/2 max |z|  (the paper)
    correlation_i = ((N - 1) / N) (1 - rho(t_i, s_i))                                              (its reading)

and the distribution of the relative difference adaptive_i / correlation_i - 1 (quantiles), the Pearson
correlation of the two over the samples, and both means. Written to --out as JSON and printed.

    python apps/approximation.py --dataset=cifar100 --teacher_model=saved_models/cifar100/resnet32/teacher.keras \
        --student_model=RUN/student_best.keras --split='train[-5000:]' --out=approximation.json

--split defaults to the last 5,000 training images: the validation split of the study's runs (never trained on).
"""

import json
import os

from absl import app, flags

import app_flags
import common

FLAGS = flags.FLAGS
app_flags.define_data_flags()
flags.DEFINE_string("teacher_model", None, "The teacher's .keras file.")
flags.DEFINE_string("student_model", None, "The student's .keras file (a run's student_best.keras).")
flags.DEFINE_string("split", "train[-5000:]", "The images, in their evaluation view (a tfds split slice).")
flags.DEFINE_integer("forward_batch_size", 250, "Images per forward pass.", lower_bound=1)
flags.DEFINE_string("out", None, "Where to write the JSON summary (default: print only).")

QUANTILES = (1, 5, 25, 50, 75, 95, 99)


def summarize(teacher_logits, student_logits):
    """The per-sample comparison of the module docstring, as a JSON-ready dict."""
    import numpy as np

    import tfadakd

    kd = tfadakd.losses.KD(tfadakd.temperatures.AdaptiveMaxLogit(), standardize=True)
    adaptive, temperature = kd(teacher_logits, student_logits, return_temperature=True)
    adaptive = np.asarray(adaptive, "float64")
    classes = teacher_logits.shape[-1]
    correlation = (classes - 1) / classes * np.asarray(tfadakd.losses.Correlation()(teacher_logits, student_logits),
                                                       "float64")
    relative = adaptive / np.maximum(correlation, 1e-12) - 1.0
    return {
        "examples": int(len(adaptive)),
        "classes": int(classes),
        "adaptive_mean": float(adaptive.mean()),
        "correlation_mean": float(correlation.mean()),
        "ratio_of_means": float(adaptive.mean() / correlation.mean()),
        "pearson_over_samples": float(np.corrcoef(adaptive, correlation)[0, 1]),
        "relative_difference_quantiles": {f"p{q:02d}": float(np.percentile(relative, q)) for q in QUANTILES},
        "relative_difference_mean_abs": float(np.abs(relative).mean()),
        "temperature_quantiles": {f"p{q:02d}": float(np.percentile(np.asarray(temperature), q)) for q in (5, 50, 95)},
    }


def main(argv):
    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}; flags look like --name=value.")
    for flag in ("teacher_model", "student_model"):
        path = getattr(FLAGS, flag)
        if not path or not os.path.exists(path):
            common.fail(f"--{flag}={path} does not exist: pass a .keras file.")
    import keras
    import numpy as np

    source = common.open_data(common.Config.from_flags())
    images = source.evaluation(FLAGS.split, batch_size=FLAGS.forward_batch_size)
    teacher, student = (keras.models.load_model(p) for p in (FLAGS.teacher_model, FLAGS.student_model))
    teacher_logits, student_logits = [], []
    for x, _ in images:
        teacher_logits.append(np.asarray(teacher(x, training=False), "float32"))
        student_logits.append(np.asarray(student(x, training=False), "float32"))
    summary = {"teacher": FLAGS.teacher_model, "student": FLAGS.student_model, "dataset": FLAGS.dataset,
               "split": FLAGS.split, **summarize(np.concatenate(teacher_logits), np.concatenate(student_logits))}
    text = json.dumps(summary, indent=2)
    print(text)
    if FLAGS.out:
        from tfadakd.files import atomic_write_text

        atomic_write_text(FLAGS.out, text + "\n")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
