"""Signals with worker processes, and stdout that fails (issue 24, classes 1, 2 and 11).

A worker pool stops within a bounded time and leaves no temp file, whatever its workers were doing; a
worker's death costs its input only; a group SIGTERM (Slurm, `timeout`) stops `show -j 2` and `predict
-j 2` with exit 143 and one line; stdout that closes early stops quietly (141), a full one is named.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unsegcli.io.files import TEMP_PREFIX, mkstemp_beside
from unsegcli.parallel import WORKER_NAME, Failed, parallel_map

from ..helpers import Cli, write_images

BOUND = 10.0  # seconds a run may take to exit after its signal


def _write_then_wait(job: str) -> str:
    """A job that returns at once, or one that leaves a temp half written and never ends."""
    if job == "fast":
        return "done"
    fd, _ = mkstemp_beside(Path(job) / "overlay.png")
    os.write(fd, b"half an overlay")
    time.sleep(120)
    return "never"


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(f"{TEMP_PREFIX}*")]


def test_stopping_a_pool_is_prompt_and_removes_a_busy_workers_temp(tmp_path):
    """multiprocessing.Pool's terminate killed the worker with SIGTERM and left its temp behind."""
    import multiprocessing as mp

    results = parallel_map(_write_then_wait, ["fast", str(tmp_path)], workers=2, chunksize=1)
    assert next(results) == "done"
    deadline = time.monotonic() + 60
    while not _temps(tmp_path):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    start = time.monotonic()
    results.close()  # what a signal or a closed stdout does to the command's loop
    assert time.monotonic() - start < 5
    assert _temps(tmp_path) == []
    assert [p for p in mp.active_children() if p.name == WORKER_NAME] == []


_DIES_ON_3 = """
import os, signal, sys
from unsegcli.parallel import parallel_map
def job(n):
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return n * 10
if __name__ == "__main__":
    print(list(parallel_map(job, [1, 2, 3, 4, 5], workers=2, chunksize=1)))
"""


@pytest.mark.slow
def test_a_worker_killed_by_the_system_fails_its_input_only(tmp_path):
    """multiprocessing.Pool's imap waited for ever for the result of a worker that had died."""
    script = tmp_path / "dies.py"
    script.write_text(_DIES_ON_3)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str([10, 20, Failed("3: the worker process died (killed by SIGKILL)"), 40, 50]), (
        res.stdout
    )


_STOP_MID_IMPORT = """
import os, signal, sys, types
from pathlib import Path
from unsegcli.io.files import mkstemp_beside
from unsegcli.parallel import _stop_now
fd, _ = mkstemp_beside(Path(sys.argv[1]) / "mask.png")
os.write(fd, b"half a mask")
# what a worker meets when the stop signal lands while it is still importing its job's modules
sys.modules["unsegcli.io.files"] = types.ModuleType("unsegcli.io.files")
_stop_now(signal.SIGUSR1, None)
"""


@pytest.mark.slow
def test_a_worker_stopped_while_importing_exits_quietly_and_removes_its_temp(tmp_path):
    """The stop handler imported io.files and met it half initialised: a traceback on stderr (seen in CI
    under `boxes -j 2 --out - | head -1`)."""
    script = tmp_path / "stop.py"
    script.write_text(_STOP_MID_IMPORT)
    res = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stderr) == (0, "")
    assert _temps(tmp_path) == []


_MAIN_GONE_MID_TRANSFER = """
import os, socket, sys, time
from multiprocessing import resource_sharer
import torch
from unsegcli.parallel import loader_workers

class Items(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        if i == 0:  # this worker's resource sharer (sending a tensor starts it) meets a main process gone mid-handshake
            resource_sharer.DupFd(os.pipe()[0])
            peer = socket.socket(socket.AF_UNIX)
            peer.connect(resource_sharer._resource_sharer._address)
            peer.close()
            time.sleep(0.5)
        else:
            sys.excepthook(ValueError, ValueError("a real error"), None)
        return torch.full((2,), float(i))

with loader_workers(torch.utils.data.DataLoader(Items(), batch_size=None, num_workers=1)) as batches:
    print([b.tolist() for b in batches])
"""


@pytest.mark.slow
def test_a_loader_worker_says_nothing_of_a_main_process_gone_mid_transfer(tmp_path):
    """`train -j 2` under a group SIGTERM: the worker's resource sharer printed a BrokenPipeError traceback
    (seen in CI); any other error a worker reports still reaches stderr."""
    script = tmp_path / "gone.py"
    script.write_text(_MAIN_GONE_MID_TRANSFER)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout) == (0, "[[0.0, 0.0], [1.0, 1.0]]\n"), res.stderr
    assert res.stderr == "ValueError: a real error\n"


def _unseg(*args: object) -> list[str]:
    return [sys.executable, "-m", "unsegcli", *map(str, args)]


def _group_sigterm_when(proc: subprocess.Popen, ready) -> str:
    """SIGTERM to the process group, as Slurm and `timeout` send it, once ``ready()``; the run's stderr."""
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None, "finished before the signal could be sent"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"still running {BOUND:.0f} s after SIGTERM")
    return stderr


def _group_gone(pgid: int) -> bool:
    """No process left in the run's group: workers are stopped; the forkserver and multiprocessing's
    resource tracker leave (and are reaped) shortly after the main process."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_show_with_workers_stops_on_a_group_sigterm_and_resumes(tmp_path, cli):
    """The stopped run is a real process group; the data, the resume and the whole run for comparison run here."""
    assert cli("synth", tmp_path / "d", "--n", 150, "--size", 64, "-q").exit_code == 0
    show = ["show", tmp_path / "d/masks", "--images", tmp_path / "d/images", "-j", 2, "--out"]
    out = tmp_path / "review"
    proc = subprocess.Popen(
        _unseg(*show, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    stderr = _group_sigterm_when(proc, lambda: len(list(out.rglob("*.png"))) >= 3)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("error interrupted by SIGTERM"), stderr
    assert "Traceback" not in stderr
    assert _temps(out) == []
    assert _group_gone(proc.pid), "a process of the run outlived it"
    assert cli(*show, out).exit_code == 0
    assert cli(*show, tmp_path / "whole").exit_code == 0
    resumed, whole = _files(out / "overlays"), _files(tmp_path / "whole/overlays")
    assert len(whole) == 150 and resumed == whole


@pytest.mark.slow
def test_predict_group_sigterm_is_one_line_without_decode_worker_errors(tmp_path, tiny_ckpt):
    """The decode workers died of the group's SIGTERM first, and torch reported each death as an error."""
    write_images(tmp_path / "imgs", [(48, 64)] * 40)
    out = tmp_path / "m"
    cmd = _unseg("predict", tmp_path / "imgs", "--out", out, "-w", tiny_ckpt, "-j", 2)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stderr = _group_sigterm_when(proc, lambda: out.exists() and any(out.glob("img_*.png")))
    assert proc.returncode == 143, stderr
    for text in ("RuntimeError", "DataLoader worker", "Traceback", "Exception ignored"):
        assert text not in stderr, stderr
    assert _temps(out) == []


@pytest.fixture(scope="module")
def masks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stdout")
    assert Cli()("synth", folder / "d", "--n", 300, "--size", 32, "-q").exit_code == 0
    return folder / "d/masks"


@pytest.mark.slow
def test_a_pipe_closed_early_stops_quietly(masks):
    """`unseg boxes ... --out - | head -1`: a BrokenPipeError traceback before."""
    cmd = _unseg("boxes", masks, "--format", "jsonl", "--out", "-", "-j", 2)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"{")
    proc.stdout.close()  # what `head -1` does after its line
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 141, stderr  # 128 + SIGPIPE, as a shell reports `yes | head -1`
    assert b"Traceback" not in stderr and b"error" not in stderr and b"Exception" not in stderr, stderr


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [("boxes", "{masks}", "--out", "-"), ("weights", "list", "--json")])
def test_a_full_stdout_is_one_line_naming_it(masks, args):
    with open("/dev/full", "wb") as full:
        res = subprocess.run(
            _unseg(*(a.format(masks=masks) for a in args)), stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "Exception" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error")]
    assert errors == ["error stdout: cannot write (No space left on device)"], res.stderr
