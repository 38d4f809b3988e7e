"""Turns run directories or a sweep into a markdown table and plots.

    python apps/report.py --sweep_dir=saved_models/cifar100/sweeps/resnet20_resnet8
    python apps/report.py --run_dirs=saved_models/cifar100/runA,saved_models/cifar100/runB --out_dir=report/

Runs are grouped into variants by their directory name without the `_s<seed>` suffix. Writes
`report.md` (mean +- std of best and last top-1 over seeds, wall time per run, the tuning cost of the
static-temperature grid against one adaptive run) and PNGs: `accuracy.png` (test top-1 per epoch),
`temperature.png` (median and 5-95% band of the per-sample temperature per epoch) and
`correlation.png` (teacher-student logit correlation per epoch).
"""

import glob
import os
import re

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("sweep_dir", None, "A sweep directory: every run directory below it is reported.")
flags.DEFINE_list("run_dirs", [], "Run directories to report (alternative to --sweep_dir).")
flags.DEFINE_string("out_dir", None, "Where report.md and the PNGs go (default: --sweep_dir, else the current directory).")

SEED = re.compile(r"_s(\d+)$")
STATIC = re.compile(r"^kd_T([0-9.]+)$")


def find_runs(root):
    """Run directories (holding metrics.csv) below `root`, sorted."""
    return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(root, "**", "metrics.csv"), recursive=True))


def group(run_dirs):
    """{variant: [run_dir, ...]}, variants named by the run directory without its `_s<seed>` suffix."""
    groups = {}
    for run in run_dirs:
        groups.setdefault(SEED.sub("", os.path.basename(os.path.normpath(run))), []).append(run)
    return groups


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _fmt(mean_std):
    mean, std = mean_std
    return "n/a" if mean is None else f"{mean:.2f} +- {std:.2f}"


def summarize_variants(groups):
    """Per variant: runs, epochs, best/last top-1 mean and std, mean wall time per run (s)."""
    from tfadakd.runs import read_metrics, summarize

    rows = []
    for variant, runs in groups.items():
        summaries = [summarize(run) for run in runs]
        metrics = [read_metrics(run) for run in runs]
        rows.append({
            "variant": variant,
            "runs": len(runs),
            "epochs": sorted({s.get("epochs") for s in summaries}),
            "best_top1": _mean_std([s.get("best_top1") for s in summaries]),
            "last_top1": _mean_std([s.get("last_top1") for s in summaries]),
            "correlation": _last_epoch_mean(metrics, ("logit_correlation",)),
            "temperature": _last_epoch_mean(metrics, ("temperature_p05", "temperature_p50", "temperature_p95")),
            "temperature_range": _range(metrics),
            "wall_time": float(np.mean([s.get("wall_time_seconds", 0.0) for s in summaries])),
            "wall_time_total": float(np.sum([s.get("wall_time_seconds", 0.0) for s in summaries])),
        })
    return rows


def _last_epoch_mean(metrics, columns):
    """Mean over runs (their metrics.csv rows) of the last epoch's `columns`, or None where one lacks them."""
    values = []
    for rows in metrics:
        last = rows[-1] if rows else {}
        if any(last.get(c) is None for c in columns):
            return None
        values.append([last[c] for c in columns])
    return tuple(float(v) for v in np.mean(values, axis=0)) if values else None


def _range(metrics):
    """(smallest temperature_min, largest temperature_max) over every epoch of the runs, or None."""
    rows = [row for run_rows in metrics for row in run_rows]
    low = [row["temperature_min"] for row in rows if row.get("temperature_min") is not None]
    high = [row["temperature_max"] for row in rows if row.get("temperature_max") is not None]
    return (min(low), max(high)) if low and high else None


def markdown(rows, title="Results"):
    """The report's markdown: the table, the best static temperature, and the tuning-cost comparison."""
    lines = [f"# {title}", "", "| variant | runs | epochs | best top-1 (%) | last top-1 (%) | logit correlation, "
             "last epoch | temperature p05 / p50 / p95, last epoch | temperature min - max, all epochs | "
             "wall time per run (s) |",
             "| --- | ---: | --- | --- | --- | ---: | --- | --- | ---: |"]
    for r in rows:
        epochs = ",".join(str(e) for e in r["epochs"])
        correlation = "-" if r.get("correlation") is None else f"{r['correlation'][0]:.3f}"
        temperature = "-" if r.get("temperature") is None else " / ".join(f"{t:.2f}" for t in r["temperature"])
        extremes = "-" if r.get("temperature_range") is None else "{:.2f} - {:.2f}".format(*r["temperature_range"])
        lines.append(f"| {r['variant']} | {r['runs']} | {epochs} | {_fmt(r['best_top1'])} | {_fmt(r['last_top1'])} | "
                     f"{correlation} | {temperature} | {extremes} | {r['wall_time']:.0f} |")
    static = [r for r in rows if STATIC.match(r["variant"]) and r["best_top1"][0] is not None]
    adaptive = [r for r in rows if r["variant"].startswith("adaptive") and r["best_top1"][0] is not None]
    lines.append("")
    if static:
        best = max(static, key=lambda r: r["best_top1"][0])
        grid_time = sum(r["wall_time"] for r in static)
        lines.append(f"Best static temperature of the grid: {best['variant']} ({_fmt(best['best_top1'])} best top-1).")
        lines.append(f"Tuning cost of the grid: {len(static)} temperatures x one run each = {grid_time:.0f} s of training per seed.")
        for r in adaptive:
            lines.append(f"One {r['variant']} run: {r['wall_time']:.0f} s, {100 * r['wall_time'] / grid_time:.0f}% of the grid's training time; "
                         f"{r['best_top1'][0] - best['best_top1'][0]:+.2f} points of best top-1 against the grid's best.")
    return "\n".join(lines) + "\n"


def _curves(runs, column):
    from tfadakd.runs import read_metrics

    series = [[row.get(column) for row in read_metrics(run)] for run in runs]
    series = [s for s in series if s and all(v is not None for v in s)]
    if not series:
        return None
    length = min(len(s) for s in series)
    return np.mean([s[:length] for s in series], axis=0)


def _finish(axis):
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=7)


def plot(groups, out_dir):
    """Writes accuracy.png, temperature.png and correlation.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, column, ylabel, scale in (("accuracy", "val_accuracy", "test top-1 (%)", 100.0),
                                         ("correlation", "logit_correlation", "teacher-student logit correlation", 1.0)):
        figure, axis = plt.subplots(figsize=(7, 4.5))
        for variant, runs in sorted(groups.items()):
            curve = _curves(runs, column)
            if curve is not None:
                axis.plot(np.arange(1, len(curve) + 1), scale * curve, label=variant)
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
        _finish(axis)
        path = os.path.join(out_dir, f"{name}.png")
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for variant, runs in sorted(groups.items()):
        median = _curves(runs, "temperature_p50")
        if median is None:
            continue
        low, high = _curves(runs, "temperature_p05"), _curves(runs, "temperature_p95")
        epochs = np.arange(1, len(median) + 1)
        line = axis.plot(epochs, median, label=f"{variant} (median)")[0]
        axis.fill_between(epochs, low[: len(median)], high[: len(median)], alpha=0.2, color=line.get_color())
    axis.set_xlabel("epoch")
    axis.set_ylabel("per-sample temperature (5-95% band)")
    _finish(axis)
    path = os.path.join(out_dir, "temperature.png")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return paths + [path]


def write_report(run_dirs, out_dir, title="Results"):
    """Writes report.md and the plots for `run_dirs` into `out_dir`; returns the markdown."""
    os.makedirs(out_dir, exist_ok=True)
    groups = group(run_dirs)
    text = markdown(summarize_variants(groups), title)
    plot(groups, out_dir)
    from tfadakd.callbacks import atomic_write_text

    atomic_write_text(os.path.join(out_dir, "report.md"), text)
    return text


def main(argv):
    import common

    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}.")
    if bool(FLAGS.sweep_dir) == bool(FLAGS.run_dirs):
        common.fail("Pass exactly one of --sweep_dir or --run_dirs.")
    runs = find_runs(FLAGS.sweep_dir) if FLAGS.sweep_dir else FLAGS.run_dirs
    missing = [r for r in runs if not os.path.exists(os.path.join(r, "metrics.csv"))]
    if not runs or missing:
        common.fail(f"No metrics.csv in {missing or FLAGS.sweep_dir}: pass run directories written by the apps.")
    out_dir = FLAGS.out_dir or FLAGS.sweep_dir or "."
    print(write_report(runs, out_dir, title=os.path.basename(os.path.normpath(out_dir))))
    print(f"Wrote {out_dir}/report.md, accuracy.png, temperature.png, correlation.png")


if __name__ == "__main__":
    app.run(main)
