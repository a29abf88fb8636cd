"""PNG encoding and atomic writes in a thread pool, overlapped with compute (cv2 and file IO
release the GIL). At most ``max_pending`` writes wait, so memory stays bounded."""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor


class BackgroundWriter:
    def __init__(self, threads: int = 4, max_pending: int = 64):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="unseg-write")
        self._slots = threading.BoundedSemaphore(max_pending)
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def submit(self, fn, path: str, *args) -> None:
        self._slots.acquire()
        fut: Future = self._pool.submit(fn, path, *args)
        fut.add_done_callback(lambda f, p=path: self._done(f, p))

    def _done(self, fut: Future, path: str) -> None:
        self._slots.release()
        exc = fut.exception()
        if exc is not None:
            with self._lock:
                self.errors.append(f"{path}: cannot write ({type(exc).__name__}: {exc})")

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)
