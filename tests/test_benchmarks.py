"""The benchmark scripts' smoke modes: a signature change in the library cannot break a benchmark silently."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script, args", [("feature_step.py", ["--smoke"])])
def test_a_benchmark_runs_in_its_smoke_mode(script, args):
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=600, cwd=BENCHMARKS, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "command: python benchmarks/" in proc.stdout and "(target <=" in proc.stdout
