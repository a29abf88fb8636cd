"""Atomic writes: temp name in the same folder, then os.replace; and a background writer.

A killed run therefore leaves either the old file, the complete new file, or a stray
``.<name>.tmp-*`` that a re-run ignores and overwrites — never a half-written output.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any


@functools.cache
def _umask() -> int:
    """The process umask, read once. Reading it means setting it, so it happens once, on first use,
    not at import (another thread could create a file in between)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def mkstemp_beside(path: Path) -> tuple[int, str]:
    """A temp file in the target's folder with the permissions open() would give (mkstemp's are 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_output(path: str, data: bytes) -> None:
    """Write to a file atomically, or to stdout when ``path`` is '-'."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(path, data)


def dumps_json(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def dumps_jsonl(records: Iterable[dict]) -> bytes:
    return b"".join(dumps_json(r) for r in records)


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[bytes]]:
    """A binary stream: stdout for '-', else a temp file in the target's folder that replaces the
    target only when the block finishes without an exception (and is deleted when it does not)."""
    if path == "-":
        try:
            yield sys.stdout.buffer
        finally:
            sys.stdout.buffer.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp_beside(target)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class BackgroundWriter:
    """File writes (PNG encoding, atomic writes) in a thread pool, overlapped with compute: cv2 and
    file IO release the GIL. At most ``max_pending`` writes wait, so memory stays bounded.
    A failed write is recorded in ``errors`` (one message per path), never raised."""

    def __init__(self, threads: int = 4, max_pending: int = 64):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="unseg-write")
        self._slots = threading.BoundedSemaphore(max_pending)
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., object], path: str, *args: Any) -> None:
        self._slots.acquire()
        fut: Future = self._pool.submit(fn, path, *args)
        fut.add_done_callback(functools.partial(self._done, path=path))

    def _done(self, fut: Future, path: str) -> None:
        self._slots.release()
        exc = fut.exception()
        if exc is not None:
            with self._lock:
                self.errors.append(f"{path}: cannot write ({type(exc).__name__}: {exc})")

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
