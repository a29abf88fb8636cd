"""Signals (issue 13): SIGTERM, SIGHUP and SIGKILL of a real `unseg` process leave no temp file behind and a
re-run completes; a re-run removes the temps of dead processes only. The signalled runs are real processes; the
re-runs only read what they left, so they run in this process (one interpreter start-up less each)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ..helpers import write_images

pytestmark = pytest.mark.slow  # real processes


# ---------------------------------------------------------------------------------------------- 5
def _signal_when(proc: subprocess.Popen, ready, sig: int, limit: float = 120) -> None:
    start = time.monotonic()
    while not ready():
        assert proc.poll() is None, "finished before the signal could be sent"
        assert time.monotonic() - start < limit
        time.sleep(0.05)
    proc.send_signal(sig)


def _start_predict(imgs: Path, out: Path, ckpt: Path, **popen: Any) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unsegcli", "predict", str(imgs), "--out", str(out), "-w", str(ckpt), "-j", "0"]
    return subprocess.Popen(cmd, **popen)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_predict_signal_cleans_up_and_rerun_completes(tmp_path, tiny_ckpt, cli, sig, code):
    write_images(tmp_path / "imgs", [(48, 64)] * 60)
    out = tmp_path / "m"
    proc = _start_predict(tmp_path / "imgs", out, tiny_ckpt, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    _signal_when(proc, lambda: out.exists() and any(out.glob("img_*.png")), sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert all(not n.startswith(".") for n in os.listdir(out)), os.listdir(out)
    res = cli("predict", tmp_path / "imgs", "--out", out, "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0, res.stderr
    assert len([n for n in os.listdir(out) if n.endswith(".png")]) == 60


def test_boxes_sigterm_leaves_no_temp_output(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4000):
        m = np.zeros((24, 24), np.uint8)
        x, y = rng.integers(0, 12, 2)
        m[y : y + 10, x : x + 10] = 255
        Image.fromarray(m).save(masks / f"m{i:05d}.png", compress_level=0)
    out = tmp_path / "labels"
    out.mkdir()
    cmd = [sys.executable, "-m", "unsegcli", "boxes", str(masks), "--out", str(out / "p.json"), "-j", "0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    _signal_when(proc, lambda: any(out.iterdir()), signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert os.listdir(out) == []


def test_rerun_removes_stale_temp_files_after_kill(tmp_path, tiny_ckpt, cli):
    """Temps are named `.unseg-tmp-<pid>-...`: a re-run removes those whose process is gone (a kill -9),
    never those of a live concurrent run."""
    write_images(tmp_path / "imgs", [(48, 64)] * 40)
    out = tmp_path / "m"
    proc = _start_predict(tmp_path / "imgs", out, tiny_ckpt, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _signal_when(proc, lambda: out.exists() and any(out.glob("img_*.png")), signal.SIGKILL)
    proc.wait()
    dead = 2**22 + 12345  # above the default pid_max, so no live process has it
    (out / f".unseg-tmp-{dead}-stale").write_bytes(b"half a png")
    live = os.getppid()  # another live process: the re-run runs in this one
    (out / f".unseg-tmp-{live}-live").write_bytes(b"a concurrent run's temp")
    res = cli("predict", tmp_path / "imgs", "--out", out, "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0, res.stderr
    leftovers = sorted(n for n in os.listdir(out) if n.startswith("."))
    assert leftovers == [f".unseg-tmp-{live}-live"], leftovers
    assert len([n for n in os.listdir(out) if n.endswith(".png")]) == 40


def test_train_sigterm_with_data_workers_stops_quietly_and_resumes(tmp_path, cli):
    """`unseg train -j 2`: the data workers never see the group's SIGTERM (they would die first and torch would
    report each death), the run stops with 143, no traceback, its last.pt intact, and `--resume` goes on."""
    assert cli("synth", tmp_path / "d", "--n", "8", "--size", "64", "-q").exit_code == 0
    out = tmp_path / "run"
    args = ["train", tmp_path / "d" / "images", "--from-masks", tmp_path / "d" / "masks", "--arch", "tiny",
            "--random-init", "--crop", "64", "--batch-size", "2", "-j", "2", "--infer-size", "64", "-q",
            "--log-every", "1", "--save-every", "2", "--out", out]  # fmt: skip
    cmd = [sys.executable, "-m", "unsegcli", *map(str, args), "--steps", "100000"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "metrics.jsonl"
    _signal_when(proc, lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3, signal.SIGTERM)
    os.killpg(proc.pid, signal.SIGTERM)  # as Slurm and `timeout` do: the whole group, workers included
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr and "killed by signal" not in stderr
    from unsegcli.model.checkpoint import read_checkpoint

    step = read_checkpoint(out / "last.pt")["train_state"]["step"]
    assert step >= 2
    res = cli(*args, "--steps", str(step + 1), "--resume")
    assert res.exit_code == 0, res.stderr
    assert read_checkpoint(out / "last.pt")["train_state"]["step"] == step + 1
