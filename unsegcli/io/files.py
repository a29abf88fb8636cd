"""The one atomic-write helper: temp name in the same folder, then os.replace.

A killed run therefore leaves either the old file, the complete new file, or a stray
``.<name>.tmp-*`` that a re-run ignores and overwrites — never a half-written output.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

_UMASK = os.umask(0)
os.umask(_UMASK)


def mkstemp_beside(path: Path) -> tuple[int, str]:
    """A temp file in the target's folder with the permissions open() would give (mkstemp's are 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)
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
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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


class open_output:
    """Context manager yielding a binary stream: stdout for '-', else a temp file in the target's
    folder that replaces the target only when the block finishes without an exception."""

    def __init__(self, path: str):
        self.path = path
        self._tmp: str | None = None
        self._f = None

    def __enter__(self):
        if self.path == "-":
            return sys.stdout.buffer
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = mkstemp_beside(target)
        self._f = os.fdopen(fd, "wb")
        return self._f

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._f is None:
            sys.stdout.buffer.flush()
            return
        self._f.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)
