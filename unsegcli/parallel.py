"""One map over independent per-file jobs: a process pool, or the main process when that is not worth it.

Every per-file worker in the package (labelling masks, CorLoc's mask boxes, saliency pairs, refining,
drawing overlays) goes through ``parallel_map``, so a failed item always arrives the same way: as a
``Failed`` carrying a message that names the input, in the item's place in the output order. One bad
input never stops the others.

Signals belong to the main process. Ctrl-C, Slurm and ``timeout`` signal the whole process group, so
workers never see SIGINT, SIGTERM or SIGHUP (they are blocked from the moment a worker exists); the main
process unwinds and stops its workers with ``stop_workers``: SIGUSR1, on which a worker deletes its
temp files and exits, then SIGKILL for one that does not exit in time. Each worker has its own pipe, so
no lock is shared with a worker that may die holding it (``multiprocessing.Pool`` shares its queues'
locks: terminating a pool whose worker was killed mid-``get`` waits for ever on that lock).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .errors import InputError
from .io.files import remove_own_temps

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext
    from multiprocessing.process import BaseProcess

J = TypeVar("J")
R = TypeVar("R")

WORKER_NAME = "unseg-worker"
# signals the main process handles for the whole run (cli/app.py); a worker leaves them to it
PARENT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_STOP_SIGNAL = signal.SIGUSR1
# seconds a stopped worker has to delete its temps and exit (it finishes the Python-level step it is in:
# one C call such as a PNG decode), then how long to wait for the kernel after SIGKILL
_STOP_GRACE_SECONDS = 3.0
_KILL_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class Failed:
    """An item whose job raised: ``message`` names the input and the reason."""

    message: str


def _guarded(fn: Callable[[J], R], describe: Callable[[J], str], job: J) -> R | Failed:
    try:
        return fn(job)
    except InputError as e:  # already names its file
        return Failed(e.message)
    except Exception as e:  # noqa: BLE001 - one bad input never stops the run
        return Failed(f"{describe(job)}: {type(e).__name__}: {e}")


def parallel_map(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    workers: int,
    describe: Callable[[J], str] = str,
    chunksize: int = 16,
) -> Iterator[R | Failed]:
    """``fn(job)`` for every job, yielded in job order, each a result or a ``Failed``.

    ``workers`` > 1 (and more than one job): that many worker processes; else serial in this process.
    ``fn`` and ``describe`` must be picklable (module-level functions or partials of them).
    ``describe(job)`` names the input in messages for unexpected exceptions and for a worker that died
    on it (killed by the OOM killer, a crash in native code); ``InputError`` messages are used as they are.
    """
    call = functools.partial(_guarded, fn, describe)
    if workers > 1 and len(jobs) > 1:
        yield from _pool_map(call, jobs, min(workers, len(jobs)), describe, chunksize)
    else:
        for job in jobs:
            yield call(job)


# how a connection reads when the process at its other end has gone
_PEER_GONE = (BrokenPipeError, ConnectionResetError, EOFError)


def _report_unless_main_is_gone(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """``sys.excepthook`` in a DataLoader worker. The worker hands each batch's tensors to the main process
    as file descriptors, served by multiprocessing's resource sharer (a thread in the worker) over a
    socket; a signal that stops the main process mid-handshake leaves that thread a broken connection,
    which it reports through ``sys.excepthook``: a traceback on stderr although nothing failed (seen under
    `train -j 2` and a group SIGTERM). The main process reports the stop; anything else is reported."""
    if not issubclass(kind, _PEER_GONE):
        sys.__excepthook__(kind, value, tb)


def _loader_worker_init(then: Callable[[int], None] | None, worker_id: int) -> None:
    sys.excepthook = _report_unless_main_is_gone
    if then is not None:
        then(worker_id)


@contextlib.contextmanager
def loader_workers(loader: Any) -> Iterator[Iterator[Any]]:
    """Iterate a torch DataLoader whose worker processes start under ``held_signals`` (they never see the
    process group's signals: Slurm, `timeout` and Ctrl-C signal the group, the workers would die first and
    torch would report each death as an error) and are shut down when the block ends: now, not when the
    iterator is collected, which after a signal may be at exit, where multiprocessing would wait for ever for
    workers that ignore its SIGTERM. A worker says nothing of a main process gone mid-transfer."""
    loader.worker_init_fn = functools.partial(_loader_worker_init, loader.worker_init_fn)
    with held_signals():
        it = iter(loader)
    try:
        yield it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Start worker processes inside this block. ``PARENT_SIGNALS`` are blocked in the calling thread, and
    a process forked (or spawned) meanwhile inherits the mask, so it never sees them, not even before its
    first instruction: multiprocessing starts its resource tracker the same way
    (Lib/multiprocessing/resource_tracker.py). A signal arriving meanwhile (another thread may take it) is
    held and raised when the block ends, so that it never interrupts the start half way: a torch
    DataLoader iterator interrupted while forking its workers fails again when it is collected."""
    held: list[int] = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():  # only the main thread sets handlers
        for sig in PARENT_SIGNALS:
            if callable(signal.getsignal(sig)):
                handlers[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


# --- the worker side -------------------------------------------------------------------------------------


def _stop_now(signum: int, frame: object) -> NoReturn:
    """SIGUSR1 in a worker: the main process is stopping. Delete the temps a write in progress left, exit.
    Nothing is imported here: the signal can land while the worker is still importing the job's modules,
    where an import would meet them half initialised (a traceback on stderr, seen under load)."""
    remove_own_temps()
    os._exit(0)


def _serve(conn: Connection) -> None:
    """A worker: receive the job function, then chunks of ``(index, job)``; send back ``(index, result)``
    per job. Ends when the main process closes its end (or is gone)."""
    signal.signal(_STOP_SIGNAL, _stop_now)
    try:
        call = conn.recv()
        while True:
            for index, job in conn.recv():
                conn.send((index, call(job)))
    except (EOFError, OSError):  # the main process closed the pipe or died
        return


# --- the main-process side ---------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    pending: deque[int] = field(default_factory=deque)  # indices sent, not yet answered, in order


def _context() -> ForkServerContext:
    import multiprocessing as mp
    from multiprocessing import forkserver, resource_tracker

    # forkserver, not fork: the workers fork from a fresh single-threaded server, never from this process,
    # whose other threads (the progress bar's refresh, the output writers, OpenCV's pool) may hold a lock
    # at fork time that a forked child then waits on for ever (seen under load on 2 busy cores).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["unsegcli.parallel", "numpy", "cv2", "PIL.Image"])
    # multiprocessing's resource tracker, once started, unblocks SIGINT and SIGTERM in the calling thread, so
    # it starts (with the server, when not yet running) before the mask the server and its workers inherit
    resource_tracker.ensure_running()
    with held_signals():
        forkserver.ensure_running()
    # at exit, before multiprocessing's own exit handler (registered earlier, so run later), which would
    # send workers a SIGTERM they never see and then wait for them for ever; registered once
    atexit.unregister(stop_workers)
    atexit.register(stop_workers)
    return ctx


def _start(ctx: ForkServerContext, call: Callable[[Any], Any]) -> _Worker:
    mine, theirs = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(theirs,), name=WORKER_NAME, daemon=True)
    process.start()
    theirs.close()  # only the worker holds its end, so its death reads as EOF here
    mine.send(call)  # sent, not passed to Process: unpickling it imports modules, which the worker
    return _Worker(process, mine)  # then does with its stop handler installed


def _death(process: BaseProcess) -> str:
    process.join(_KILL_WAIT_SECONDS)
    code = process.exitcode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _pool_map(
    call: Callable[[J], R | Failed], jobs: Sequence[J], workers: int, describe: Callable[[J], str], chunksize: int
) -> Iterator[R | Failed]:
    from multiprocessing.connection import wait

    # at most a quarter of each worker's share per chunk, as multiprocessing.Pool.map sizes its chunks,
    # so that a short list still spreads over every worker
    chunk = max(1, min(chunksize, len(jobs) // (4 * workers)))
    todo = deque(range(len(jobs)))
    results: dict[int, R | Failed] = {}
    pool: list[_Worker] = []
    try:
        ctx = _context()
        with held_signals():  # a worker is either not started or in `pool`, which the finally stops
            pool.extend(_start(ctx, call) for _ in range(workers))
        for next_out in range(len(jobs)):
            while next_out not in results:
                for w in pool:
                    if not w.pending and todo:
                        w.pending.extend(todo.popleft() for _ in range(min(chunk, len(todo))))
                        try:
                            w.conn.send([(i, jobs[i]) for i in w.pending])
                        except OSError:  # it died idle: the chunk goes back; its end of the pipe reads as EOF
                            todo.extendleft(reversed(w.pending))
                            w.pending.clear()
                ready = wait([w.conn for w in pool])
                for w in [w for w in pool if w.conn in ready]:
                    try:
                        index, result = w.conn.recv()
                    except (EOFError, OSError):  # it died: its job fails, the rest of its chunk goes to another
                        if w.pending:
                            lost = w.pending.popleft()
                            reason = f"the worker process died ({_death(w.process)})"
                            results[lost] = Failed(f"{describe(jobs[lost])}: {reason}")
                            todo.extendleft(reversed(w.pending))
                        w.conn.close()
                        with held_signals():
                            pool[pool.index(w)] = _start(ctx, call)
                        continue
                    w.pending.popleft()  # answers come in the order the jobs were sent
                    results[index] = result
            yield results.pop(next_out)
    finally:
        _stop([w.process for w in pool])
        for w in pool:
            w.conn.close()


def _stop(processes: Sequence[BaseProcess]) -> None:
    """Stop workers within a bounded time: SIGUSR1 (a worker deletes its temps and exits), then SIGKILL."""
    for p in processes:
        if p.exitcode is None and p.pid is not None:
            try:
                os.kill(p.pid, _STOP_SIGNAL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.exitcode is None:
            p.kill()
            p.join(_KILL_WAIT_SECONDS)


def stop_workers() -> None:
    """Stop every worker this process still has: a command that ends early (a signal, a closed stdout, an
    error) while a ``parallel_map`` is suspended, whose generator may only be closed much later."""
    import multiprocessing as mp

    _stop([p for p in mp.active_children() if p.name == WORKER_NAME])
