"""Runs a grid of static temperatures and the adaptive scheme(s) on one pair, data and budget, several
seeds each, then writes the report (apps/report.py).

    python apps/sweep.py --flagfile=apps/flags/evidence.flags --seeds=0,1,2

Every run is an `apps/distill.py` process with the sweep's flags plus the variant's overrides, writing
`<output_dir>/<dataset>/sweeps/<sweep_name>/<variant>_s<seed>/`. Finished runs are skipped and
interrupted ones resume, so rerunning the command continues the sweep; with `--archive_dir` (a folder that
outlives the machine) each finished run's small files are copied there and restored from there, so the
sweep also continues on a new machine. All runs share one teacher
(`--teacher_path`, trained first if missing) and, by default, one teacher-logit cache
(`<sweep dir>/teacher_cache`, built by the first distillation run): every distillation run then gets
`--teacher_cache` and the same `--data_seed` (default 0), so the teacher's forward pass is computed once
per epoch for the whole sweep; `--nosweep_teacher_cache` computes it in every run instead. Variants:

| variant | settings |
| --- | --- |
| `student_alone` | cross-entropy only |
| `kd_T<t>` | KD at static T=t on raw logits, CE 0.1 + KD 0.9 (RepDistiller); `static_grid` runs every --static_temperatures |
| `kd_std_T<t>` | logit standardization at a fixed T=t, CE 0.1 + KD 9 (the fair control); `std_grid` runs every --standardized_temperatures |
| `adaptive_both` / `adaptive_teacher` | the paper: standardization + adaptive temperature, CE 0.1 + KD 9 |
| `adaptive_c<c>` | `adaptive_both` with the constant (1+sqrt 3)/2 replaced by c; `adaptive_scale_grid` runs every --adaptive_scales |
| `correlation` | the logit-correlation loss 1 - rho_i (tfadakd.losses.Correlation), CE 0.1 + 8.91 = 9 x 99/100, the adaptive loss's scale on 100 classes |
| `dkd_T4` | DKD at T=4 on raw logits, CE 1 + DKD 1, --dkd_beta from the flags |
| `dkd_adaptive` | DKD on standardized logits with the adaptive temperature, CE 1 + DKD 1 |
"""

import os
import signal
import subprocess
import sys
import time

from absl import app, flags

import common
import distill  # defines the distillation flags the runs take
import report

FLAGS = flags.FLAGS
flags.DEFINE_list("static_temperatures", ["1", "2", "3", "4", "6", "8"], "The static grid on raw logits (static_grid).")
flags.DEFINE_list("standardized_temperatures", ["1", "2", "3", "4"], "The fixed-T grid on standardized logits (std_grid).")
flags.DEFINE_list(
    "adaptive_scales", ["0.306", "0.153"], "The constants c of the adaptive temperature T_i = c max|z| for "
    "adaptive_scale_grid (the paper's is (1+sqrt 3)/2 = 1.366; 0.306 and 0.153 put the median T near 1 and 0.5 on "
    "the CIFAR-100 study, where the paper's constant gives 4.46).")
flags.DEFINE_bool("sweep_teacher_cache", True, "Share one teacher-logit cache (<sweep dir>/teacher_cache) between the "
                  "distillation runs, with one --data_seed for all.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: one run of every variant per seed.")
flags.DEFINE_list(
    "variants", ["student_alone", "static_grid", "kd_std_T2", "adaptive_both", "adaptive_teacher", "dkd_adaptive"],
    "Variants to run (static_grid expands to kd_T<t> for every --static_temperatures, std_grid to kd_std_T<t> for "
    "every --standardized_temperatures, adaptive_scale_grid to adaptive_c<c> for every --adaptive_scales; one member "
    "such as kd_T4, kd_std_T0.5 or adaptive_c0.306 can be named directly; dkd_T4 and correlation are also available).")
flags.DEFINE_string("sweep_name", None, "Sweep directory name (default: <teacher>_<student>).")
flags.DEFINE_string(
    "archive_dir", None, "A folder that outlives the machine (a mounted volume, a git checkout): each finished run's "
    "small files (config.json, metrics.csv, results.json, environment.json; no models) are copied to "
    "<archive_dir>/<run>/, and runs finished there are restored into the sweep and skipped, so that the sweep "
    "resumes on a new machine.")

# --dry_run is apps/distill.py's flag: here it prints the runs' commands without running them.
SWEEP_ONLY = ("static_temperatures", "standardized_temperatures", "adaptive_scales", "sweep_teacher_cache", "seeds", "variants",
              "sweep_name", "archive_dir", "dry_run")
#: What --archive_dir keeps of a finished run: everything the report reads, nothing large.
ARCHIVED = ("config.json", "metrics.csv", "results.json", "environment.json")
KD_STATIC = ["--method=kd", "--temperature=static", "--nostandardize", "--student_loss_weight=0.1", "--distillation_loss_weight=0.9"]
PAPER = ["--method=kd", "--temperature=adaptive", "--standardize", "--student_loss_weight=0.1", "--distillation_loss_weight=9"]
STANDARDIZED = ["--method=kd", "--temperature=standardized", "--standardize", "--student_loss_weight=0.1",
                "--distillation_loss_weight=9"]
FIXED = {
    "student_alone": ["--student_alone"],
    "kd_std_T2": STANDARDIZED + ["--standardized_base=2"],
    "adaptive_both": PAPER + ["--temperature_source=both"],
    "adaptive_teacher": PAPER + ["--temperature_source=teacher"],
    "dkd_T4": ["--method=dkd", "--temperature=static", "--static_temperature=4", "--nostandardize",
               "--student_loss_weight=1", "--distillation_loss_weight=1"],
    "dkd_adaptive": ["--method=dkd", "--temperature=adaptive", "--standardize", "--student_loss_weight=1",
                     "--distillation_loss_weight=1"],
    "correlation": ["--method=correlation", "--temperature=adaptive", "--standardize", "--student_loss_weight=0.1",
                    "--distillation_loss_weight=8.91"],
}


def _grid(flag, values):
    for t in values:
        try:
            value = float(t)
        except ValueError:
            common.fail(f"--{flag} must be numbers, got {t!r}.")
        if value <= 0:
            common.fail(f"--{flag} must be positive, got {t!r}.")
    return values


#: One member of a grid named directly (--variants=kd_T4): prefix -> the flags for value v.
SINGLE = {
    "kd_std_T": lambda v: STANDARDIZED + [f"--standardized_base={v}"],
    "kd_T": lambda v: KD_STATIC + [f"--static_temperature={v}"],
    "adaptive_c": lambda v: PAPER + ["--temperature_source=both", f"--temperature_options=scale={v}"],
}


def _single(name):
    """The flags of a variant such as kd_T4, kd_std_T0.5 or adaptive_c0.306, or None if `name` is not one."""
    for prefix, flags_of in SINGLE.items():
        if name.startswith(prefix):
            value = name[len(prefix):]
            try:
                if 0 < float(value) < float("inf"):
                    return flags_of(value)
            except ValueError:
                return None
    return None


def variants():
    """[(name, extra flags)] in run order, each name once; exits on an unknown variant or temperature."""
    result = []
    for name in FLAGS.variants:
        if name == "static_grid":
            result += [(f"kd_T{t}", SINGLE["kd_T"](t)) for t in _grid("static_temperatures", FLAGS.static_temperatures)]
        elif name == "std_grid":
            result += [(f"kd_std_T{t}", SINGLE["kd_std_T"](t))
                       for t in _grid("standardized_temperatures", FLAGS.standardized_temperatures)]
        elif name == "adaptive_scale_grid":
            result += [(f"adaptive_c{c}", SINGLE["adaptive_c"](c)) for c in _grid("adaptive_scales", FLAGS.adaptive_scales)]
        elif name in FIXED:
            result.append((name, FIXED[name]))
        elif _single(name) is not None:
            result.append((name, _single(name)))
        else:
            common.fail(f"Unknown variant {name!r}. Valid: static_grid, std_grid, adaptive_scale_grid, "
                        f"{', '.join(FIXED)}, or one grid member: kd_T<t>, kd_std_T<t>, adaptive_c<c> (a positive "
                        "number, e.g. kd_T4).")
    seen = set()
    return [(n, extra) for n, extra in result if not (n in seen or seen.add(n))]


def progress(sweep_dir, run_names):
    """'k of N runs done, M left, about T left': T from the mean training time of the finished runs (median
    epoch time x epochs, as in the report, so that pauses of the machine and resumes do not inflate it)."""
    import plan as plan_lib
    from tfadakd.runs import RESULTS, read_metrics

    done = [report.training_seconds(read_metrics(os.path.join(sweep_dir, n))) for n in run_names
            if os.path.exists(os.path.join(sweep_dir, n, RESULTS))]
    left = len(run_names) - len(done)
    estimate = (f"about {plan_lib.format_duration(left * sum(done) / len(done))} left (mean of the finished runs)"
                if done else "no finished run to estimate from yet")
    return f"{len(done)} of {len(run_names)} runs done, {left} left, {estimate}"


def archive(run_dir, archive_dir):
    """Copies a finished run's `ARCHIVED` files (those it has) to `<archive_dir>/<run>/`, each atomically, so
    that a copy cut short never looks finished: results.json goes last."""
    from tfadakd.files import atomic_write_bytes

    target = os.path.join(archive_dir, os.path.basename(os.path.normpath(run_dir)))
    os.makedirs(target, exist_ok=True)
    for name in sorted(ARCHIVED, key=lambda n: n == "results.json"):
        source = os.path.join(run_dir, name)
        if os.path.exists(source):
            with open(source, "rb") as f:
                atomic_write_bytes(os.path.join(target, name), f.read())


def restore(run_dir, archive_dir):
    """Brings a run finished in `archive_dir` into `run_dir` (which then counts as finished); returns whether it
    did. A run that trained here but did not finish while the archive holds it finished is refused: the two
    cannot both be right, and removing one is the user's choice."""
    archived = os.path.join(archive_dir, os.path.basename(os.path.normpath(run_dir)))
    if not os.path.exists(os.path.join(archived, "results.json")) or os.path.exists(os.path.join(run_dir, "results.json")):
        return False
    if os.path.exists(os.path.join(run_dir, "metrics.csv")):
        common.fail(f"{run_dir} has trained without finishing, but {archived} holds the same run finished. Remove "
                    f"{run_dir} to use the archived run, or remove {archived} to finish this one.")
    archive(archived, os.path.dirname(os.path.normpath(run_dir)))
    return True


def passthrough_args(argv):
    """The command line minus the sweep-only flags: what every run gets before its overrides."""
    keep = []
    for arg in argv[1:]:
        name = arg.lstrip("-").split("=", 1)[0]
        if name.startswith("no") and name[2:] in SWEEP_ONLY:
            continue
        if name not in SWEEP_ONLY:
            keep.append(arg)
    return keep


#: A run's exit status after a graceful stop on SIGTERM / SIGINT (128 + the signal, apps/common.fit_run).
STOPPED = (128 + signal.SIGTERM, 128 + signal.SIGINT)


def _stop_when_parent_dies():
    """In the child, before it runs: ask Linux to send it SIGTERM when the sweep dies, even by SIGKILL, so
    that a run never outlives its sweep holding the run's lock (it stops at a batch boundary with a
    checkpoint, and the rerun sweep resumes it). Elsewhere nothing is done."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def run_forwarding_signals(command):
    """Runs `command` in its own process group, passing it this process's SIGTERM / SIGINT exactly once.

    A terminal's Ctrl-C reaches the sweep only, and a scheduler's SIGTERM to the sweep reaches the run,
    which stops at a batch boundary with a checkpoint (a second signal would stop it at once). If the sweep
    is killed outright (SIGKILL), the run receives SIGTERM from the kernel and stops the same way.
    """
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=_stop_when_parent_dies)

    def forward(signum, frame):
        if child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return child


def main(argv):
    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}; flags look like --name=value.")
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError:
        common.fail(f"--seeds must be integers, got {','.join(FLAGS.seeds)!r}.")
    plan = variants()
    name = FLAGS.sweep_name or f"{FLAGS.teacher}_{FLAGS.student}"
    sweep_dir = os.path.join(FLAGS.output_dir, common.dataset_dir(FLAGS), "sweeps", name)
    teacher_path = distill.teacher_path_of(FLAGS)
    base = passthrough_args(sys.argv) + [f"--teacher_path={teacher_path}", f"--output_dir={FLAGS.output_dir}"]
    shared = []
    if FLAGS.sweep_teacher_cache:
        cache = FLAGS.teacher_cache or os.path.join(sweep_dir, "teacher_cache")
        data_seed = 0 if FLAGS.data_seed is None else FLAGS.data_seed
        shared = [f"--teacher_cache={cache}", f"--data_seed={data_seed}"]
        if not FLAGS.dry_run:
            print(f"[sweep] one teacher-logit cache for every distillation run: {cache} (data seed {data_seed} for "
                  "all runs; built by the first one). --nosweep_teacher_cache runs the teacher in every step instead.")
    if FLAGS.archive_dir and not FLAGS.dry_run:  # before any run trains, not after the first one
        from tfadakd.runs import ensure_writable

        try:
            ensure_writable(FLAGS.archive_dir)
        except OSError as error:
            cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
            common.fail(f"--archive_dir={FLAGS.archive_dir} cannot hold the finished runs ({cause.strerror or cause}): "
                        "pass a writable folder that exists or can be created, not a file or a path under one.")
    distill_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distill.py")
    started = time.time()
    for seed in seeds:
        for variant, extra in plan:
            run_name = f"{variant}_s{seed}"
            cache_flags = shared[1:] if variant == "student_alone" else shared  # the same data seed for all
            command = [sys.executable, distill_py, *base, *extra, *cache_flags, f"--seed={seed}",
                       f"--run_name={os.path.join('sweeps', name, run_name)}"]
            if FLAGS.dry_run:
                print(" ".join(command))
                continue
            run_dir = os.path.join(sweep_dir, run_name)
            if FLAGS.archive_dir and restore(run_dir, FLAGS.archive_dir):
                print(f"[sweep] {run_name}: finished in {FLAGS.archive_dir}, restored and skipped")
                continue
            if os.path.exists(os.path.join(run_dir, "results.json")):
                if FLAGS.archive_dir:
                    archive(run_dir, FLAGS.archive_dir)
                print(f"[sweep] {run_name}: finished, skipped")
                continue
            print(f"[sweep] {run_name}: running ({time.time() - started:.0f} s into the sweep); "
                  f"{progress(sweep_dir, [f'{v}_s{s}' for s in seeds for v, _ in plan])}", flush=True)
            proc = run_forwarding_signals(command)
            if proc.returncode in STOPPED:
                print(f"\n[sweep] {run_name} stopped on {signal.Signals(proc.returncode - 128).name} with a "
                      "checkpoint; rerun the sweep to resume it there.", file=sys.stderr)
                sys.exit(proc.returncode)
            if proc.returncode != 0:
                common.fail(f"{run_name} failed (exit {proc.returncode}); rerun the sweep to resume it. Command: {' '.join(command)}")
            if FLAGS.archive_dir:
                archive(run_dir, FLAGS.archive_dir)
            report.write_report(report.find_runs(sweep_dir), sweep_dir, title=name)
    if not FLAGS.dry_run:
        print(report.write_report(report.find_runs(sweep_dir), sweep_dir, title=name))
        print(f"Report: {sweep_dir}/report.md")


if __name__ == "__main__":
    app.run(main)
