"""Turns run directories or a sweep into a markdown table and plots.

    python apps/report.py --sweep_dir=saved_models/cifar100/sweeps/resnet20_resnet8
    python apps/report.py --run_dirs=saved_models/cifar100/runA,saved_models/cifar100/runB --out_dir=report/

Runs are grouped into variants by their directory name without the `_s<seed>` suffix; runs still
training, stopped or failed (config.json without results.json) are named and left out. Writes
`report.md` (mean +- std over seeds of the test top-1 at the epoch chosen on validation and at the last
epoch, the best fixed raw-logit and standardized temperatures chosen by validation, Welch's t of each
adaptive variant against them and its paired t over the seeds both share, a per-seed table, the grids'
tuning cost in runs, hours of training and CPU-hours, the machines and code the runs trained on) and PNGs:
`accuracy.png` (test top-1 per epoch), `temperature.png` (median and 5-95% band of the per-sample
temperature per epoch) and `correlation.png` (teacher-student logit correlation per epoch).
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
STANDARDIZED = re.compile(r"^kd_std_T([0-9.]+)$")


def find_runs(root):
    """Run directories (holding metrics.csv) below `root`, sorted."""
    return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(root, "**", "metrics.csv"), recursive=True))


def split_unfinished(run_dirs):
    """(finished, unfinished) run directories. A run the apps started (it has config.json) but did not
    complete (no results.json yet: still training, stopped, or failed) is unfinished; its partial numbers
    are never reported with the finished runs'."""
    from tfadakd.runs import CONFIG, RESULTS

    def unfinished(run):
        return os.path.exists(os.path.join(run, CONFIG)) and not os.path.exists(os.path.join(run, RESULTS))

    return [r for r in run_dirs if not unfinished(r)], [r for r in run_dirs if unfinished(r)]


def _progress(run):
    """'<epochs logged> of <epochs configured> epochs' for an unfinished run."""
    from tfadakd.files import read_json
    from tfadakd.runs import CONFIG, read_metrics

    try:
        planned = read_json(os.path.join(run, CONFIG), {}).get("epochs", "?")
    except (ValueError, AttributeError):  # a config.json cut short or not ours: the count is unknown
        planned = "?"
    return f"{os.path.basename(os.path.normpath(run))} ({len(read_metrics(run))} of {planned} epochs)"


def group(run_dirs):
    """{variant: [run_dir, ...]}, variants named by the run directory without its `_s<seed>` suffix."""
    groups = {}
    for run in run_dirs:
        groups.setdefault(SEED.sub("", os.path.basename(os.path.normpath(run))), []).append(run)
    return groups


def _seed(run):
    """The seed of a run directory named `<variant>_s<seed>`, or None."""
    match = SEED.search(os.path.basename(os.path.normpath(run)))
    return int(match.group(1)) if match else None


def _environment(run):
    """A run's environment.json records (one dict per start or resume): None without the file (older code),
    [] where it is unreadable (cut short or edited by hand)."""
    from tfadakd.files import read_json
    from tfadakd.runs import ENVIRONMENT

    try:
        records = read_json(os.path.join(run, ENVIRONMENT))
    except ValueError:
        return []
    if records is None:
        return None
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def machines(run_dirs):
    """{description of a machine and code: [run names]}, from each run's environment.json (one record per
    start or resume): a run resumed on another machine is listed under each; a run without the file (older
    code) under "not recorded"."""
    found = {}
    for run in run_dirs:
        records = _environment(run)
        if records is None:
            descriptions = ["not recorded (no environment.json)"]
        else:
            descriptions = list(dict.fromkeys(_machine(r) for r in records)) or [
                "not recorded (environment.json unreadable or empty)"]
        for description in descriptions:
            found.setdefault(description, []).append(os.path.basename(os.path.normpath(run)))
    return found


def _machine(record):
    """One line naming the CPU (model, cores, notable flags), accelerators, precision and code of a record."""
    def get(key):
        value = record.get(key)
        return "unknown" if value is None else str(value)

    features = record.get("cpu_features")
    features = "CPU flags unknown" if not isinstance(features, list) else (
        "/".join(map(str, features)) or "none of the AMX / AVX-512 / AVX2 flags")
    accelerators = ", ".join(map(str, record.get("accelerators") or []))
    code = f"tfadakd {get('tfadakd')}"
    if isinstance(record.get("git_commit"), str):
        dirty = {True: " with uncommitted edits", None: " (uncommitted edits unknown)"}.get(record.get("git_dirty"), "")
        code += f" at commit {record['git_commit'][:10]}{dirty}"
    return (f"{get('cpu_model')}, {get('cpu_cores')} logical CPUs ({features})"
            + (f", {accelerators}" if accelerators else "")
            + f"; {get('precision_policy')}; {code}; TensorFlow {get('tensorflow')}, "
            f"Keras {get('keras')} ({get('backend')} backend)")


def _cores(run):
    """The logical CPUs a run trained on (its environment.json's first record), or None where that is not
    recorded or the run had an accelerator (CPU-hours would then misstate its cost)."""
    record = (_environment(run) or [{}])[0]
    cores = record.get("cpu_cores")
    return cores if isinstance(cores, int) and cores > 0 and not record.get("accelerators") else None


def _cost(seconds, core_seconds, runs):
    """`runs` runs, their hours of training and, where every run recorded its CPU count, their CPU-hours."""
    text = f"{runs} run{'s' if runs != 1 else ''}, {seconds / 3600:.2f} hours of training"
    return text + (" (CPU-hours not known: a run lacks its CPU count or had an accelerator)" if core_seconds is None
                   else f" ({core_seconds / 3600:.2f} CPU-hours)")


def _mean_std(values):
    """(mean, sample std) of the values that are not None; the std is None for a single value (no spread
    can be measured from one seed)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def _fmt(mean_std):
    mean, std = mean_std
    if mean is None:
        return "n/a"
    return f"{mean:.2f} (one run)" if std is None else f"{mean:.2f} +- {std:.2f}"


def summarize_variants(groups):
    """Per variant: runs, epochs, test top-1 at the chosen and at the last epoch, best validation top-1
    (mean, std and the per-run values), temperatures, correlation, training time per run (s: median epoch time x epochs,
    so pauses of the machine are not counted).

    Runs that logged the test set beside a validation split (`test_accuracy`) report the test top-1 at
    the epoch chosen on validation; older runs, whose validation data was the test set, report their
    best epoch, chosen on the test set (`selection` says which)."""
    from tfadakd.runs import read_metrics, summarize

    rows = []
    for variant, runs in groups.items():
        summaries = [summarize(run) for run in runs]
        metrics = [read_metrics(run) for run in runs]
        cores = [_cores(run) for run in runs]
        on_validation = all("test_top1_selected" in s for s in summaries)
        chosen = [s.get("test_top1_selected") if on_validation else s.get("best_top1") for s in summaries]
        last = [s.get("test_top1_last") if on_validation else s.get("last_top1") for s in summaries]
        rows.append({
            "variant": variant,
            "runs": len(runs),
            "epochs": sorted({s.get("epochs") for s in summaries}),
            "selection": "validation" if on_validation else "test",
            "chosen_values": [v for v in chosen if v is not None],
            "per_seed": {_seed(r): v for r, v in zip(runs, chosen) if v is not None and _seed(r) is not None},
            "test_top1": _mean_std(chosen),
            "test_last_top1": _mean_std(last),
            "best_val_top1": _mean_std([s.get("best_top1") for s in summaries]),
            "correlation": _last_epoch_mean(metrics, ("logit_correlation",)),
            "correlation_eval": _last_epoch_mean(metrics, ("logit_correlation_eval",)),
            "temperature": _last_epoch_mean(metrics, ("temperature_p05", "temperature_p50", "temperature_p95")),
            "temperature_range": _range(metrics),
            "wall_time": float(np.mean([training_seconds(m) for m in metrics])),
            "wall_time_total": float(np.sum([training_seconds(m) for m in metrics])),
            "core_seconds_total": None if None in cores else float(np.sum(
                [training_seconds(m) * c for m, c in zip(metrics, cores)])),
        })
    return rows


def training_seconds(rows):
    """A run's training time: its median epoch time x its epochs, so that epochs stretched by pauses of the
    machine (a SIGSTOPped run, a resume's start-up) do not count."""
    seconds = [r["epoch_seconds"] for r in rows if r.get("epoch_seconds") is not None]
    return float(np.median(seconds) * len(rows)) if seconds else 0.0


def welch(a, b):
    """Welch's t statistic and degrees of freedom for mean(a) - mean(b), or None with fewer than 2 values each."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return None
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(t), float(df)


def paired(a, b):
    """Mean and sample std of a - b over the seeds both {seed: value} dicts hold, with the paired t
    statistic (df = seeds - 1), or None with fewer than 2 common seeds. Runs of one seed share the
    student's initialization, so the seed-to-seed spread that both variants share cancels."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = np.array([a[s] - b[s] for s in seeds], float)
    sd = d.std(ddof=1)
    t = float(d.mean() / (sd / np.sqrt(len(d)))) if sd > 0 else None
    return float(d.mean()), float(sd), t, len(d)


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


def _best_of(rows, pattern):
    """The grid member (variant row) with the best mean validation top-1: chosen without the test set."""
    members = [r for r in rows if pattern.match(r["variant"]) and r["best_val_top1"][0] is not None]
    return max(members, key=lambda r: r["best_val_top1"][0]) if members else None, members


def markdown(rows, title="Results", unfinished=(), where=None):
    """The report's markdown: the table, the best fixed temperatures, Welch's t and the tuning cost;
    `unfinished` (descriptions of unfinished runs, `_progress`) are named as left out; `where` (`machines`)
    says which machine and code each run trained on."""
    lines = [f"# {title}", "", "| variant | runs | epochs | test top-1 at the chosen epoch (%) | test top-1, last epoch (%) "
             "| best validation top-1 (%) | logit correlation, last epoch (training / held-out batches) "
             "| temperature p05 / p50 / p95, last epoch "
             "| temperature min - max, all epochs | wall time per run (s) |",
             "| --- | ---: | --- | --- | --- | --- | ---: | --- | --- | ---: |"]
    for r in rows:
        epochs = ",".join(str(e) for e in r["epochs"])
        correlation = "-" if r.get("correlation") is None else f"{r['correlation'][0]:.3f}"
        if r.get("correlation_eval") is not None:
            correlation += f" / {r['correlation_eval'][0]:.3f}"
        temperature = "-" if r.get("temperature") is None else " / ".join(f"{t:.2f}" for t in r["temperature"])
        extremes = "-" if r.get("temperature_range") is None else "{:.2f} - {:.2f}".format(*r["temperature_range"])
        chosen = _fmt(r["test_top1"]) + ("" if r["selection"] == "validation" else " (chosen on test)")
        lines.append(f"| {r['variant']} | {r['runs']} | {epochs} | {chosen} | {_fmt(r['test_last_top1'])} | "
                     f"{_fmt(r['best_val_top1'])} | {correlation} | {temperature} | {extremes} | {r['wall_time']:.0f} |")
    lines += ["", "The epoch of each run is chosen on its validation split; grid members are compared by mean "
              "validation top-1 (never by test top-1)."]
    seeds = sorted({s for r in rows for s in r.get("per_seed", {})})
    if seeds:
        lines += ["", "Per seed, test top-1 at the chosen epoch (%):", "",
                  "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "| --- |" + " ---: |" * len(seeds)]
        for r in rows:
            values = [r.get("per_seed", {}).get(s) for s in seeds]
            lines.append(f"| {r['variant']} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in values) + " |")
    if where:
        total = sum(r["runs"] for r in rows)
        lines += ["", "Where the runs trained (each run's environment.json):", ""]
        for description, names in where.items():
            runs = f"all {total} runs" if len(names) == total and len(where) == 1 else (
                f"{len(names)} run{'s' if len(names) > 1 else ''}: {', '.join(sorted(names))}")
            lines.append(f"- {description}: {runs}")
    if unfinished:
        lines += ["", "Left out, unfinished (no results.json yet): " + ", ".join(unfinished) + "."]
    adaptive = [r for r in rows if r["variant"].startswith("adaptive") and r["test_top1"][0] is not None]
    for label, pattern in (("raw-logit KD temperature", STATIC), ("standardized KD temperature", STANDARDIZED)):
        best, members = _best_of(rows, pattern)
        if best is None:
            continue
        core_seconds = [m["core_seconds_total"] for m in members]
        cost = _cost(sum(m["wall_time_total"] for m in members),
                     None if None in core_seconds else sum(core_seconds), sum(m["runs"] for m in members))
        lines += ["", f"Best fixed {label} (by validation): {best['variant']}, test top-1 {_fmt(best['test_top1'])}. "
                  f"Tuning cost of its grid: {len(members)} temperatures, {cost}."]
        for r in adaptive:
            stats = welch(r["chosen_values"], best["chosen_values"])
            t = "n/a (fewer than 2 runs)" if stats is None else f"Welch's t = {stats[0]:+.2f} (df {stats[1]:.1f})"
            pair = paired(r.get("per_seed", {}), best.get("per_seed", {}))
            by_seed = "" if pair is None else (
                f"; paired by seed: {pair[0]:+.2f} +- {pair[1]:.2f} points over {pair[3]} seeds, paired t = "
                + ("n/a (no spread)" if pair[2] is None else f"{pair[2]:+.2f} (df {pair[3] - 1})"))
            lines.append(f"- {r['variant']} against {best['variant']}: {r['test_top1'][0] - best['test_top1'][0]:+.2f} "
                         f"points, {t}; one run per seed ("
                         f"{_cost(r['wall_time_total'], r['core_seconds_total'], r['runs'])}){by_seed}.")
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
    test_logged = any(_curves(runs, "test_accuracy") is not None for runs in groups.values())
    accuracy = ("test_accuracy", "test top-1 (%)") if test_logged else ("val_accuracy", "validation top-1 (%)")
    for name, column, ylabel, scale in (("accuracy", accuracy[0], accuracy[1], 100.0),
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
    """Writes report.md and the plots for the finished runs of `run_dirs` into `out_dir` (unfinished ones
    are named, not reported); returns the markdown."""
    os.makedirs(out_dir, exist_ok=True)
    run_dirs, unfinished = split_unfinished(run_dirs)
    groups = group(run_dirs)
    text = markdown(summarize_variants(groups), title, [_progress(r) for r in unfinished], machines(run_dirs))
    plot(groups, out_dir)
    from tfadakd.files import atomic_write_text

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
    if not split_unfinished(runs)[0]:
        common.fail(f"None of the {len(runs)} runs has finished (no results.json yet): nothing to report. Wait for "
                    "one to finish, or resume a stopped one with the command that started it.")
    out_dir = FLAGS.out_dir or FLAGS.sweep_dir or "."
    print(write_report(runs, out_dir, title=os.path.basename(os.path.normpath(out_dir))))
    print(f"Wrote {out_dir}/report.md, accuracy.png, temperature.png, correlation.png")


if __name__ == "__main__":
    app.run(main)
