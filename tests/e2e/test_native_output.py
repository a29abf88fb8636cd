"""What only a real process shows: bytes written to file descriptor 2 by native code or an unpickled
object, and progress lines when stderr is a file (not a terminal)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ..helpers import run_unseg, stderr_of, write_images

pytestmark = pytest.mark.slow  # real processes


class _Loud:
    def __reduce__(self):
        return (os.write, (2, b"UNPICKLED\n"))


def test_import_move_warns_before_unpickling(tmp_path):
    torch.save({"model": _Loud()}, tmp_path / "official.pth")
    res = run_unseg("weights", "import-move", tmp_path / "official.pth", "--out", tmp_path / "x.pt")
    text = stderr_of(res)
    assert "UNPICKLED" in text and "trust" in text
    assert text.index("trust") < text.index("UNPICKLED")


# ---------------------------------------------------------------------------------------------- 14
def test_plain_progress_lines_when_stderr_is_not_a_terminal(tmp_path, tiny_ckpt):
    """Slurm logs and `2>log`: plain lines while the run goes (every UNSEG_PROGRESS_SECONDS), not a bar at the end."""
    write_images(tmp_path / "imgs", [(32, 32)] * 12)
    res = run_unseg(
        "predict",
        tmp_path / "imgs",
        "--out",
        tmp_path / "m",
        "-w",
        tiny_ckpt,
        "-j",
        "0",
        env={"UNSEG_PROGRESS_SECONDS": "0"},
    )
    assert res.returncode == 0
    partial = [line for line in stderr_of(res).splitlines() if re.search(r"\b([1-9]|1[01])/12\b", line)]
    assert partial, stderr_of(res)
    assert "\r" not in stderr_of(res) and "\x1b[" not in stderr_of(res)


def test_the_cli_prints_no_native_opencv_warnings(tmp_path):
    """A truncated PNG made OpenCV print '[ WARN:0@0.08] global grfmt_png.cpp ... buffer is incomplete' on
    stderr beside our own one-line error for that file."""
    noise = np.random.default_rng(0).integers(0, 2, (64, 64), dtype=np.uint8) * 255
    Image.fromarray(noise).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    res = subprocess.run(
        [sys.executable, "-m", "unsegcli", "boxes", str(tmp_path), "--out", "-", "--format", "jsonl"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 1 and "trunc.png" in res.stderr, res.stderr
    assert "WARN" not in res.stderr and "Traceback" not in res.stderr
    assert json.loads(res.stdout)["file_name"].endswith("good.png")
