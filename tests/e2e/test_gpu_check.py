"""benchmarks/gpu_check.sh --dry-run: every part of the one-shot GPU check runs on the CPU with tiny models, so
the script's first GPU run is not its first run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # ~1-3 min on 2 cores: a few training steps of three methods, torchrun, five methods
@pytest.mark.timeout(900)
def test_gpu_check_dry_run_runs_every_part_and_writes_the_report(tmp_path):
    report = tmp_path / "report.md"
    res = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    text = report.read_text()
    assert "all parts ok" in text
    for part in ("gpu-marked tests", "MOVE predict throughput", "training-free methods", "training steps", "torchrun"):
        assert f"## {part}" in text and "FAILED" not in text
    for method in ("tokencut", "lost", "maskcut", "votecut", "found-bkg", "move (loss_s)", "sempart", "found (loss)"):
        assert f"| {method}" in text  # every method measured, every training run reported
    assert "backend gloo (dry run): 4/4 masks" in text
