"""One map over independent per-file jobs: a process pool, or the main process when that is not worth it.

Every per-file worker in the package (labelling masks, CorLoc's mask boxes, saliency pairs) goes
through ``parallel_map``, so a failed item always arrives the same way: as a ``Failed`` carrying a
message that names the input, in the item's place in the output order. One bad input never stops
the others.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .errors import InputError

J = TypeVar("J")
R = TypeVar("R")


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

    ``workers`` > 1 (and more than one job): a pool of that many processes; else serial in this
    process. ``fn`` and ``describe`` must be picklable (module-level functions or partials of them).
    ``describe(job)`` names the input in messages for unexpected exceptions; ``InputError`` messages
    are used as they are.
    """
    call = functools.partial(_guarded, fn, describe)
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        # forkserver, not fork: the workers fork from a fresh single-threaded server, never from this process,
        # whose other threads (the progress bar's refresh, the output writers, OpenCV's pool) may hold a lock
        # at fork time that a forked child then waits on for ever (seen under load on 2 busy cores).
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["unsegcli.parallel", "numpy", "cv2", "PIL.Image"])
        with ctx.Pool(workers) as pool:
            yield from pool.imap(call, jobs, chunksize=chunksize)
    else:
        for job in jobs:
            yield call(job)
