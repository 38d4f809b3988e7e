"""apps/report.py on synthetic run directories, and apps/sweep.py's plan (dry run)."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "apps"))

import report  # noqa: E402


def write_run(root, name, accuracies, seconds=10.0, temperatures=None, test=None, correlation_eval=None):
    """A run directory with metrics.csv; `test` (per-epoch test accuracies) marks a run with a validation split;
    `correlation_eval` is the held-out logit correlation logged every epoch."""
    run = root / name
    run.mkdir(parents=True)
    columns = ["epoch", "val_accuracy", "epoch_seconds", "logit_correlation", "temperature_p05", "temperature_p50",
               "temperature_p95", "temperature_min", "temperature_max"] + (["test_accuracy"] if test else []) + (
        ["logit_correlation_eval"] if correlation_eval else [])
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for epoch, acc in enumerate(accuracies):
            t = temperatures[epoch] if temperatures else ""
            writer.writerow({"epoch": epoch, "val_accuracy": acc, "epoch_seconds": seconds, "logit_correlation": 0.5 + 0.1 * epoch,
                             "temperature_p05": t and t - 1, "temperature_p50": t, "temperature_p95": t and t + 1,
                             "temperature_min": t and t - 2, "temperature_max": t and t + 2,
                             **({"test_accuracy": test[epoch]} if test else {}),
                             **({"logit_correlation_eval": correlation_eval + 0.1 * epoch} if correlation_eval else {})})
    return run


@pytest.fixture
def sweep(tmp_path):
    write_run(tmp_path, "kd_T1_s0", [0.10, 0.20], seconds=10)
    write_run(tmp_path, "kd_T1_s1", [0.10, 0.30], seconds=10)
    write_run(tmp_path, "kd_T4_s0", [0.20, 0.40], seconds=12)
    write_run(tmp_path, "kd_T4_s1", [0.30, 0.36], seconds=12)
    write_run(tmp_path, "adaptive_both_s0", [0.25, 0.44], seconds=11, temperatures=[5.0, 6.0])
    write_run(tmp_path, "adaptive_both_s1", [0.25, 0.42], seconds=11, temperatures=[5.0, 7.0])
    return tmp_path


def test_variants_group_seeds_and_report_mean_and_std(sweep):
    groups = report.group(report.find_runs(sweep))
    assert sorted(groups) == ["adaptive_both", "kd_T1", "kd_T4"]
    rows = {r["variant"]: r for r in report.summarize_variants(groups)}
    mean, std = rows["kd_T4"]["test_top1"]
    np.testing.assert_allclose([mean, std], [38.0, np.std([40.0, 36.0], ddof=1)])
    np.testing.assert_allclose(rows["kd_T1"]["test_last_top1"][0], 25.0)
    np.testing.assert_allclose(rows["adaptive_both"]["wall_time"], 22.0)  # 2 epochs x 11 s
    assert rows["kd_T4"]["selection"] == "test"  # no validation split: the old runs chose on the test set


def test_markdown_names_best_fixed_temperature_welch_and_tuning_cost(sweep):
    text = report.markdown(report.summarize_variants(report.group(report.find_runs(sweep))))
    assert ("| kd_T4 | 2 | 2 | 38.00 +- 2.83 (chosen on test) | 38.00 +- 2.83 | 38.00 +- 2.83 | 0.600 | - | - | 24 |"
            in text)
    assert ("| adaptive_both | 2 | 2 | 43.00 +- 1.41 (chosen on test) | 43.00 +- 1.41 | 43.00 +- 1.41 | 0.600 | "
            "5.50 / 6.50 / 7.50 | 3.00 - 9.00 | 22 |" in text)
    assert "Best fixed raw-logit KD temperature (by validation): kd_T4" in text
    # (2 x 20 s + 2 x 24 s) / 3600 s; no environment.json says on how many CPUs.
    assert "2 temperatures, 4 runs, 0.02 hours of training (CPU-hours not known" in text
    t, df = report.welch([44.0, 42.0], [40.0, 36.0])
    np.testing.assert_allclose(t, 5.0 / np.sqrt(2.0 / 2 + 8.0 / 2))  # variances 2 and 8 over 2 runs each
    assert f"- adaptive_both against kd_T4: +5.00 points, Welch's t = {t:+.2f} (df {df:.1f})" in text
    # Paired by seed: differences 44 - 40 and 42 - 36, mean 5, std sqrt(2), t = 5 / (sqrt(2) / sqrt(2)).
    assert "paired by seed: +5.00 +- 1.41 points over 2 seeds, paired t = +5.00 (df 1)." in text
    assert "| kd_T4 | 40.00 | 36.00 |" in text and "| adaptive_both | 44.00 | 42.00 |" in text


def test_tuning_cost_counts_cpu_hours_from_each_runs_recorded_cpus(sweep):
    import json

    for run, cores in (("kd_T1_s0", 2), ("kd_T1_s1", 2), ("kd_T4_s0", 4), ("kd_T4_s1", 2),
                       ("adaptive_both_s0", 2), ("adaptive_both_s1", 2)):
        # The first record counts (the run's start); a resume on another machine is appended after it.
        (sweep / run / "environment.json").write_text(json.dumps([{"cpu_cores": cores}, {"cpu_cores": 16}]))
    text = report.markdown(report.summarize_variants(report.group(report.find_runs(sweep))))
    # Grid: kd_T1 2 x 20 s x 2 CPUs + kd_T4 24 s x 4 + 24 s x 2 CPUs = 224 CPU-seconds = 0.062 CPU-hours.
    assert "2 temperatures, 4 runs, 0.02 hours of training (0.06 CPU-hours)." in text
    assert "one run per seed (2 runs, 0.01 hours of training (0.02 CPU-hours))" in text  # 2 x 22 s x 2 CPUs
    (sweep / "kd_T4_s1" / "environment.json").write_text(json.dumps([{"cpu_cores": 2, "accelerators": ["GPU:0"]}]))
    text = report.markdown(report.summarize_variants(report.group(report.find_runs(sweep))))
    assert "2 temperatures, 4 runs, 0.02 hours of training (CPU-hours not known" in text


def test_validation_split_runs_report_test_at_the_chosen_epoch_and_pick_grids_by_validation(tmp_path):
    # kd_std_T2 is best on validation but not on test: the report must pick it all the same.
    write_run(tmp_path, "kd_std_T2_s0", [0.50, 0.60], test=[0.40, 0.45])
    write_run(tmp_path, "kd_std_T2_s1", [0.50, 0.62], test=[0.41, 0.47])
    write_run(tmp_path, "kd_std_T4_s0", [0.55, 0.58], test=[0.50, 0.52])
    write_run(tmp_path, "kd_std_T4_s1", [0.57, 0.56], test=[0.51, 0.53])
    write_run(tmp_path, "adaptive_both_s0", [0.30, 0.20], test=[0.48, 0.30], correlation_eval=0.1)
    write_run(tmp_path, "adaptive_both_s1", [0.30, 0.40], test=[0.46, 0.50], correlation_eval=0.3)
    rows = {r["variant"]: r for r in report.summarize_variants(report.group(report.find_runs(tmp_path)))}
    assert rows["adaptive_both"]["selection"] == "validation"
    np.testing.assert_allclose(rows["adaptive_both"]["chosen_values"], [48.0, 50.0])  # epochs 0 and 1
    np.testing.assert_allclose(rows["adaptive_both"]["test_last_top1"][0], 40.0)
    np.testing.assert_allclose(rows["kd_std_T4"]["chosen_values"], [52.0, 51.0])  # val best at epochs 1 and 0
    text = report.markdown(list(rows.values()))
    assert "Best fixed standardized KD temperature (by validation): kd_std_T2" in text
    assert "(chosen on test)" not in text
    assert "| 0.600 / 0.300 |" in text  # training / held-out correlation, last epoch: mean of 0.2 and 0.4
    assert "- adaptive_both against kd_std_T2: +3.00 points" in text  # 49 - 46


def test_unfinished_runs_are_named_and_left_out_of_the_numbers(tmp_path, monkeypatch, capsys):
    import json

    for name, accuracies, done in (("kd_T4_s0", [0.20, 0.40], True), ("kd_T4_s1", [0.90, 0.95], False)):
        run = write_run(tmp_path, name, accuracies)
        (run / "config.json").write_text(json.dumps({"epochs": 30}))
        if done:
            (run / "results.json").write_text("{}")
    text = report.write_report(report.find_runs(tmp_path), tmp_path)
    assert "| kd_T4 | 1 | 2 | 40.00 (one run) (chosen on test) |" in text  # the unfinished seed's 95% is not in it
    assert "Left out, unfinished (no results.json yet): kd_T4_s1 (2 of 30 epochs)." in text
    (tmp_path / "kd_T4_s0" / "results.json").unlink()  # nothing finished: refused, naming why
    monkeypatch.setattr(sys, "argv", ["report.py", f"--sweep_dir={tmp_path}"])
    with pytest.raises(SystemExit) as stop:
        report.app.run(report.main)
    assert stop.value.code == 2
    assert "None of the 2 runs has finished" in capsys.readouterr().err


def test_write_report_makes_the_three_plots(sweep):
    report.write_report(report.find_runs(sweep), sweep)
    for name in ("report.md", "accuracy.png", "temperature.png", "correlation.png"):
        assert (sweep / name).stat().st_size > 1000 or name == "report.md"


def test_sweep_dry_run_plans_every_variant_and_seed(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "apps" / "sweep.py"), "--dry_run", "--seeds=0,1", "--static_temperatures=2,4",
         "--variants=student_alone,static_grid,adaptive_teacher,std_grid,kd_std_T2", "--standardized_temperatures=2,3",
         f"--output_dir={tmp_path}", "--dataset=cifar10"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = proc.stdout.strip().splitlines()
    assert len(commands) == 12  # 6 variants (kd_std_T2 once) x 2 seeds
    assert "--standardized_base=3" in commands[5] and commands[5].endswith("kd_std_T3_s0")
    cache = f"--teacher_cache={tmp_path}/cifar10/sweeps/resnet32x4_resnet8x4/teacher_cache"
    assert cache not in commands[0] and all(cache in c and "--data_seed=0" in c for c in commands[1:6])
    assert "--data_seed=0" in commands[0]  # the student alone sees the same augmented views
    assert "--student_alone" in commands[0] and "--run_name=sweeps/resnet32x4_resnet8x4/student_alone_s0" in commands[0]
    assert "--static_temperature=4" in commands[2] and "--nostandardize" in commands[2]
    assert "--temperature_source=teacher" in commands[3] and commands[3].endswith("adaptive_teacher_s0")
    assert all("--dry_run" not in c and "--seeds" not in c for c in commands)
    assert all(f"--teacher_path={tmp_path}/cifar10/resnet32x4/teacher.keras" in c for c in commands)


def test_sweep_plans_the_scale_grid_the_correlation_loss_and_grid_members_named_directly(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "apps" / "sweep.py"), "--dry_run", "--seeds=0", "--adaptive_scales=0.306,0.153",
         "--variants=adaptive_scale_grid,correlation,kd_T4,kd_std_T0.5", f"--output_dir={tmp_path}"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = proc.stdout.strip().splitlines()
    assert [c.rsplit("/", 1)[-1] for c in commands] == [
        "adaptive_c0.306_s0", "adaptive_c0.153_s0", "correlation_s0", "kd_T4_s0", "kd_std_T0.5_s0"]
    assert "--temperature_options=scale=0.306" in commands[0] and "--temperature=adaptive" in commands[0]
    assert "--temperature_options=scale=0.153" in commands[1] and "--distillation_loss_weight=9" in commands[1]
    assert "--method=correlation" in commands[2] and "--distillation_loss_weight=8.91" in commands[2]
    assert "--static_temperature=4" in commands[3] and "--nostandardize" in commands[3]
    assert "--standardized_base=0.5" in commands[4]


def test_sweep_rejects_unknown_variants_and_bad_temperatures(tmp_path):
    for args, message in ((["--variants=magic"], "Unknown variant 'magic'"), (["--static_temperatures=-1"], "positive"),
                          (["--variants=kd_Tinf"], "one grid member: kd_T<t>")):
        proc = subprocess.run([sys.executable, str(REPO / "apps" / "sweep.py"), "--dry_run", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr


def test_sweep_progress_counts_runs_and_estimates_from_finished_ones(tmp_path):
    import json

    import sweep

    # Training time = median epoch time x epochs: 2 x 50 s and 3 x 100 s (one epoch stretched by a pause),
    # whatever results.json's wall time says; a run without results.json is not finished.
    write_run(tmp_path, "kd_T4_s0", [0.1, 0.2], seconds=50.0)
    write_run(tmp_path, "kd_T4_s1", [0.1, 0.2, 0.3], seconds=100.0)
    with open(tmp_path / "kd_T4_s1" / "metrics.csv", "a") as f:
        f.write("3,0.4,5000,,,,,,\n")
    for name in ("kd_T4_s0", "kd_T4_s1"):
        (tmp_path / name / "results.json").write_text(json.dumps({"wall_time_seconds": 99999.0}))
    write_run(tmp_path, "adaptive_both_s0", [0.1], seconds=1000.0)
    names = ["kd_T4_s0", "kd_T4_s1", "adaptive_both_s0", "adaptive_both_s1"]
    assert sweep.progress(tmp_path, names) == "2 of 4 runs done, 2 left, about 8 min left (mean of the finished runs)"
    assert sweep.progress(tmp_path, names[2:]).endswith("no finished run to estimate from yet")


def test_sweep_passes_one_stop_signal_to_its_run_in_its_own_session():
    import os
    import signal
    import threading

    import sweep

    child = ("import os, signal, sys, time\n"
             "got = []\n"
             "signal.signal(signal.SIGTERM, lambda s, f: got.append(s))\n"
             "print(os.getsid(0), flush=True)\n"
             "deadline = time.time() + 30\n"
             "while not got and time.time() < deadline: time.sleep(0.01)\n"
             "time.sleep(0.3)  # a second forwarded signal would arrive here\n"
             "sys.exit(128 + len(got) * 15)\n")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"sweep-child-{os.getpid()}.txt"
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()  # what a scheduler sends the sweep
    handler = signal.getsignal(signal.SIGTERM)
    with open(out, "w") as f:
        saved, sys.stdout = sys.stdout, f
        try:
            proc = sweep.run_forwarding_signals(
                ["sh", "-c", f'exec {sys.executable} -c "$0" > {out}', child])
        finally:
            sys.stdout = saved
    assert proc.returncode == 128 + signal.SIGTERM  # exactly one SIGTERM reached the run
    assert proc.returncode in sweep.STOPPED
    assert int(out.read_text().split()[0]) != os.getsid(0), "the run shares the sweep's session"
    assert signal.getsignal(signal.SIGTERM) is handler
    out.unlink()


def test_training_time_leaves_out_an_epoch_stretched_by_a_pause(tmp_path):
    write_run(tmp_path, "kd_T4_s0", [0.2, 0.3, 0.4], seconds=10)
    rows = (tmp_path / "kd_T4_s0" / "metrics.csv").read_text().splitlines()
    fields = rows[2].split(",")
    fields[2] = "1000.0"  # epoch 1 ran while the process was stopped for 990 s
    rows[2] = ",".join(fields)
    (tmp_path / "kd_T4_s0" / "metrics.csv").write_text("\n".join(rows) + "\n")
    row, = report.summarize_variants(report.group(report.find_runs(tmp_path)))
    assert row["wall_time"] == 30.0  # 3 epochs x the median 10 s, not 1020 s


@pytest.fixture
def sweep_main(monkeypatch):
    """Runs apps/sweep.py's main in this process with the given flags; its runs are faked: each writes a finished
    run directory (metrics.csv, config.json, environment.json, results.json) instead of training. Returns
    (run(argv) -> None, the list of run names started)."""
    import json

    from absl import flags as absl_flags

    import sweep

    started = []

    def fake_run(command):
        name = next(a.split("=", 1)[1] for a in command if a.startswith("--run_name="))
        output = next(a.split("=", 1)[1] for a in command if a.startswith("--output_dir="))
        run = write_run(Path(output) / "cifar10", name, [0.2, 0.3], test=[0.25, 0.35])
        for file, value in (("config.json", {"run": name}), ("environment.json", [{"cpu_model": "fake"}]),
                            ("results.json", {"test_top1_selected": 35.0})):
            (run / file).write_text(json.dumps(value))
        started.append(run.name)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(sweep, "run_forwarding_signals", fake_run)

    def run(*args):
        argv = ["sweep.py", "--dataset=cifar10", "--seeds=0", "--variants=student_alone,kd_std_T2", *args]
        monkeypatch.setattr(sys, "argv", argv)
        absl_flags.FLAGS.unparse_flags()
        absl_flags.FLAGS(argv)
        try:
            sweep.main(["sweep.py"])
        finally:
            absl_flags.FLAGS.unparse_flags()

    return run, started


def test_an_archived_sweep_resumes_on_a_new_machine_without_training_again(tmp_path, sweep_main):
    run, started = sweep_main
    archive = tmp_path / "archive"
    run(f"--output_dir={tmp_path / 'first'}", f"--archive_dir={archive}")
    assert started == ["student_alone_s0", "kd_std_T2_s0"]
    for name in started:  # the small files only, byte for byte
        original = tmp_path / "first" / "cifar10" / "sweeps" / "resnet32x4_resnet8x4" / name
        assert sorted(p.name for p in (archive / name).iterdir()) == sorted(
            ["config.json", "environment.json", "metrics.csv", "results.json"])
        assert all((archive / name / f).read_bytes() == (original / f).read_bytes() for f in ("metrics.csv", "results.json"))
    (archive / "kd_std_T2_s0" / "results.json").unlink()  # a copy cut short: not finished, trained again

    run(f"--output_dir={tmp_path / 'second'}", f"--archive_dir={archive}")  # a new machine: nothing but the archive
    assert started[2:] == ["kd_std_T2_s0"]
    second = tmp_path / "second" / "cifar10" / "sweeps" / "resnet32x4_resnet8x4"
    assert (second / "student_alone_s0" / "results.json").exists() and (second / "report.md").exists()
    assert (archive / "kd_std_T2_s0" / "results.json").exists()  # archived again once finished


def test_a_run_unfinished_here_but_finished_in_the_archive_is_refused_naming_both(tmp_path, sweep_main, capsys):
    run, started = sweep_main
    archive = tmp_path / "archive"
    run(f"--output_dir={tmp_path / 'first'}", f"--archive_dir={archive}")
    partial = write_run(tmp_path / "second" / "cifar10" / "sweeps" / "resnet32x4_resnet8x4", "student_alone_s0", [0.1])
    with pytest.raises(SystemExit) as exit_info:
        run(f"--output_dir={tmp_path / 'second'}", f"--archive_dir={archive}")
    assert exit_info.value.code == 2 and len(started) == 2
    err = capsys.readouterr().err
    assert f"Remove {partial} to use the archived run, or remove {archive / 'student_alone_s0'}" in err


def test_an_archive_dir_under_a_file_is_refused_before_any_run_trains(tmp_path, sweep_main, capsys):
    run, started = sweep_main
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as exit_info:
        run(f"--output_dir={tmp_path / 'out'}", f"--archive_dir={tmp_path / 'notes.txt' / 'archive'}")
    assert exit_info.value.code == 2 and started == []
    assert "notes.txt/archive cannot hold the finished runs (Not a directory)" in capsys.readouterr().err


def test_a_run_stops_when_its_sweep_is_killed_outright(tmp_path):
    """kill -9 of the sweep: its run (in a session of its own) receives SIGTERM and ends, holding no lock."""
    import os
    import signal
    import time

    marker = tmp_path / "child.txt"
    child = ("import os, signal, sys, time\n"
             f"signal.signal(signal.SIGTERM, lambda s, f: (open({str(marker)!r}, 'a').write('term'), sys.exit(143)))\n"
             f"open({str(marker)!r}, 'w').write(str(os.getpid()) + ' ')\n"
             "time.sleep(60)\n")
    parent = ("import sys\n"
              f"sys.path.insert(0, {str(REPO / 'apps')!r})\n"
              "import sweep\n"
              f"sweep.run_forwarding_signals([sys.executable, '-c', {child!r}])\n")
    sweep_process = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO)
    deadline = time.time() + 60
    while not (marker.exists() and marker.read_text().strip()) and time.time() < deadline:
        time.sleep(0.1)
    pid = int(marker.read_text().split()[0])
    sweep_process.kill()
    sweep_process.wait()
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the run outlived its sweep")
    assert marker.read_text().endswith("term")
