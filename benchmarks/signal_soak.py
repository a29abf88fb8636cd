"""Signal soak: the streaming commands killed at random moments, then resumed.

    python benchmarks/signal_soak.py --kills 200            # about 30-40 min on 2 shared cores
    python benchmarks/signal_soak.py --kills 8 --keep /tmp/soak   # a quick look, keeping the files

Each trial starts one of ``predict``, ``boxes``, ``refine``, ``show`` (``-j 0`` or ``-j 2``) on small
generated inputs, sends SIGTERM, SIGINT or SIGHUP at a random moment (to the whole process group, as
Slurm, ``timeout`` and a terminal's Ctrl-C do, or to the main process alone), then checks:

- the run exits within ``--bound`` seconds of the signal, with 128 + the signal number (or, when the
  command had already ended and the process was exiting, killed by the signal, which a shell reports alike);
- its stderr holds no traceback and no error text of a worker;
- no process of its group is left, and no ``.unseg-tmp-`` file anywhere under the outputs;
- the same command run again exits 0, and the outputs are byte-identical to an uninterrupted run's
  (``show``'s ``plots/*.svg`` excepted: matplotlib's SVG ids are random, issue 24 class 6).

The moment is drawn from the command's working time: from its first line on stderr (the CLI has started and
installed its signal handlers) to the end of an uninterrupted run. Interpreter start-up (imports, before
``main``) is left out: a signal there gets Python's and the OS's default handling (see RESULTS.md).
A run that finishes before its signal is not a kill; it is counted apart and the trial is drawn again.
The exit code is 0 when every kill passed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.helpers, unsegcli

from _common import machine

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WORKER_ERRORS = ("Traceback", "Exception ignored", "RuntimeError", "DataLoader worker", "KeyboardInterrupt")


ROOT = Path(__file__).resolve().parent.parent  # every run imports this checkout's unsegcli (`-m` puts the cwd first)


def unseg(*args: object) -> list[str]:
    return [sys.executable, "-m", "unsegcli", *map(str, args)]


def setup(work: Path) -> dict[str, list[str]]:
    """Inputs, a tiny checkpoint, and the command line of each (command, workers) case."""
    from tests.helpers import tiny_model
    from unsegcli.config import PreprocessConfig
    from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint

    ckpt = work / "tiny.pt"
    save_checkpoint(ckpt, checkpoint_dict(tiny_model(), PreprocessConfig(size=64), {"source": "soak"}))
    for name, n in (("small", 16), ("mid", 200), ("large", 1500)):
        subprocess.run(unseg("synth", work / name, "--n", n, "--size", 64, "-q"), check=True, cwd=ROOT)
    cases = {}
    for j in (0, 2):
        cases[f"predict -j {j}"] = unseg("predict", work / "small/images", "-w", ckpt, "-j", j, "--out")
        cases[f"boxes -j {j}"] = unseg(
            "boxes", work / "large/masks", "--images", work / "large/images", "-j", j, "--out"
        )
        cases[f"refine -j {j}"] = unseg("refine", work / "mid/masks", "--images", work / "mid/images", "-j", j, "--out")
        cases[f"show -j {j}"] = unseg("show", work / "mid/masks", "--images", work / "mid/images", "-j", j, "--out")
    return cases


def output_of(case: str, work: Path) -> Path:
    return work / "out" / (case.replace(" ", "_") + (".json" if case.startswith("boxes") else ""))


def digest(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file of an output (a file or a folder)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if not (p.suffix == ".svg" and p.parent.name == "plots")
    }


def temps_under(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".unseg-tmp-*")] if folder.exists() else []


def _default_signals() -> None:
    """In each run, before exec: the soak itself may run under nohup or in a background job, which ignore
    SIGHUP and SIGINT, and a run inheriting that choice (the CLI keeps it) would not be stopped by them."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def run(cmd: list[str], env: dict) -> float:
    """An uninterrupted run; seconds from its first line on stderr (the command has started) to its exit."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    assert proc.stderr is not None
    proc.stderr.readline()
    start = time.monotonic()
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    return time.monotonic() - start


def group_gone(pgid: int, limit: float = 3.0) -> bool:
    """The forkserver and resource tracker leave when the main process has gone; workers must not stay."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def trial(case: str, cmd: list[str], out: Path, seconds: float, rng: random.Random, bound: float, env: dict) -> dict:
    """One kill and its resume. ``seconds``: the uninterrupted run's time, to draw the moment from."""
    if out.is_dir():
        shutil.rmtree(out)
    out.unlink(missing_ok=True)
    sig = rng.choice(SIGNALS)
    to_group = rng.random() < 0.75
    delay = rng.uniform(0.0, 0.95 * seconds)
    proc = subprocess.Popen(
        [*cmd, out],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_signals,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the command has started: the moment is drawn from its working time
    time.sleep(delay)
    record = {"case": case, "signal": sig.name, "to": "group" if to_group else "main", "delay": round(delay, 2)}
    if proc.poll() is not None:
        proc.communicate()
        return {**record, "result": "finished before the signal"}
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    sent = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=bound)
        stderr = first + stderr
        record["exit_seconds"] = round(time.monotonic() - sent, 2)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        return {**record, "result": "HANG", "stderr": (first + stderr)[-1500:]}
    problems = []
    if proc.returncode == 0 and "interrupted" not in stderr:
        return {**record, "result": "finished before the signal"}
    if proc.returncode == -sig and "interrupted" not in stderr:
        record["after_the_work"] = True  # the command had ended: the CLI leaves the signal its default action
    elif proc.returncode != 128 + sig:
        problems.append(f"exit code {proc.returncode}, expected {128 + sig}")
    elif f"interrupted by {sig.name}" not in stderr:
        problems.append("no interruption message")
    if any(word in stderr for word in WORKER_ERRORS):
        problems.append("error text on stderr")
    if not group_gone(proc.pid):
        problems.append("processes of the run left running")
        os.killpg(proc.pid, signal.SIGKILL)
    temps = temps_under(out if out.is_dir() else out.parent)
    if temps:
        problems.append(f"temp files left: {temps[:3]}")
    resumed = subprocess.run(
        [*cmd, out],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    if resumed.returncode != 0:
        problems.append(f"resume exited {resumed.returncode}: {resumed.stderr[-500:]}")
    if temps_under(out if out.is_dir() else out.parent):
        problems.append("temp files left after the resume")
    record["outputs"] = digest(out) if out.exists() else {}
    if problems:
        record["stderr"] = stderr[-1500:]
    return {**record, "result": "ok" if not problems else "FAIL", "problems": problems}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=200, help="Signals to send (runs that finish first do not count).")
    ap.add_argument("--bound", type=float, default=10.0, help="Seconds a run may take to exit after its signal.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="Work in this folder and keep it (default: a temp folder).")
    ap.add_argument("--log", type=Path, help="Also write each trial as a JSON line here.")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="unseg-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "out").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UNSEG_PROGRESS_SECONDS": "0"}
    rng = random.Random(args.seed)
    cases = setup(work)
    reference, seconds = {}, {}
    for case, cmd in cases.items():  # uninterrupted runs: the expected bytes and the time to draw moments from
        out = output_of(case, work)
        seconds[case] = run([*cmd, out], env)
        reference[case] = digest(out)
        print(f"reference {case}: {seconds[case]:.1f} s, {len(reference[case])} files", flush=True)
    log = args.log.open("a") if args.log else None
    kills, finished, failures, hangs, slowest = 0, 0, 0, 0, 0.0
    start = time.monotonic()
    names = list(cases)
    while kills < args.kills:
        case = names[(kills + finished) % len(names)]
        rec = trial(case, cases[case], output_of(case, work), seconds[case], rng, args.bound, env)
        if rec["result"] == "finished before the signal":
            finished += 1
        else:
            kills += 1
            if rec["result"] == "ok" and rec.pop("outputs") != reference[case]:
                rec["result"], rec["problems"] = "FAIL", ["outputs differ from the uninterrupted run"]
            rec.pop("outputs", None)
            failures += rec["result"] != "ok"
            hangs += rec["result"] == "HANG"
            slowest = max(slowest, rec.get("exit_seconds", 0.0))
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if rec["result"] != "ok":
            print(json.dumps(rec), flush=True)
        elif kills % 10 == 0:
            print(f"{kills} kills, {failures} failed, {time.monotonic() - start:.0f} s", flush=True)
    summary = {
        "kills": kills,
        "failed": failures,
        "hangs": hangs,
        "finished before the signal": finished,
        "slowest exit after the signal (s)": slowest,
        "minutes": round((time.monotonic() - start) / 60, 1),
        "machine": machine(),
        "load average at the end": os.getloadavg(),
    }
    print(json.dumps(summary, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
