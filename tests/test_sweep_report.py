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


def write_run(root, name, accuracies, seconds=10.0, temperatures=None):
    run = root / name
    run.mkdir(parents=True)
    columns = ["epoch", "val_accuracy", "epoch_seconds", "logit_correlation", "temperature_p05", "temperature_p50",
               "temperature_p95", "temperature_min", "temperature_max"]
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for epoch, acc in enumerate(accuracies):
            t = temperatures[epoch] if temperatures else ""
            writer.writerow({"epoch": epoch, "val_accuracy": acc, "epoch_seconds": seconds, "logit_correlation": 0.5 + 0.1 * epoch,
                             "temperature_p05": t and t - 1, "temperature_p50": t, "temperature_p95": t and t + 1,
                             "temperature_min": t and t - 2, "temperature_max": t and t + 2})
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
    mean, std = rows["kd_T4"]["best_top1"]
    np.testing.assert_allclose([mean, std], [38.0, np.std([40.0, 36.0], ddof=1)])
    np.testing.assert_allclose(rows["kd_T1"]["last_top1"][0], 25.0)
    np.testing.assert_allclose(rows["adaptive_both"]["wall_time"], 22.0)  # 2 epochs x 11 s


def test_markdown_names_best_static_temperature_and_tuning_cost(sweep):
    text = report.markdown(report.summarize_variants(report.group(report.find_runs(sweep))))
    assert "| kd_T4 | 2 | 2 | 38.00 +- 2.83 | 38.00 +- 2.83 | 0.600 | - | - | 24 |" in text
    assert "| adaptive_both | 2 | 2 | 43.00 +- 1.41 | 43.00 +- 1.41 | 0.600 | 5.50 / 6.50 / 7.50 | 3.00 - 9.00 | 22 |" in text
    assert "Best static temperature of the grid: kd_T4" in text
    assert "2 temperatures x one run each = 44 s" in text
    assert "One adaptive_both run: 22 s, 50% of the grid's training time; +5.00 points" in text


def test_write_report_makes_the_three_plots(sweep):
    report.write_report(report.find_runs(sweep), sweep)
    for name in ("report.md", "accuracy.png", "temperature.png", "correlation.png"):
        assert (sweep / name).stat().st_size > 1000 or name == "report.md"


def test_sweep_dry_run_plans_every_variant_and_seed(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "apps" / "sweep.py"), "--dry_run", "--seeds=0,1", "--static_temperatures=2,4",
         "--variants=student_alone,static_grid,adaptive_teacher", f"--output_dir={tmp_path}", "--dataset=cifar10"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = proc.stdout.strip().splitlines()
    assert len(commands) == 8  # 4 variants x 2 seeds
    assert "--student_alone" in commands[0] and "--run_name=sweeps/resnet32x4_resnet8x4/student_alone_s0" in commands[0]
    assert "--static_temperature=4" in commands[2] and "--nostandardize" in commands[2]
    assert "--temperature_source=teacher" in commands[3] and commands[3].endswith("adaptive_teacher_s0")
    assert all("--dry_run" not in c and "--seeds" not in c for c in commands)
    assert all(f"--teacher_path={tmp_path}/cifar10/resnet32x4/teacher.keras" in c for c in commands)


def test_sweep_rejects_unknown_variants_and_bad_temperatures(tmp_path):
    for args, message in ((["--variants=magic"], "Unknown variant 'magic'"), (["--static_temperatures=-1"], "positive")):
        proc = subprocess.run([sys.executable, str(REPO / "apps" / "sweep.py"), "--dry_run", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr
