"""Atomic writes: temp name in the same folder, then os.replace; output checks; a background writer.

NOTE for every command (P-B: boxes/merge/corloc/eval too): check each output location with
``check_output_dir(path, what)`` / ``check_output_file(path, what)`` BEFORE loading a model or reading inputs;
they raise ``UsageError`` (exit 2) naming ``what`` (pass the CLI flag, e.g. "--out"), and accept '-'.

A killed run leaves either the old file, the complete new file, or a short temp named
``.unseg-tmp-<pid>-<random>`` in the target's folder (short, so a 255-byte target name still fits);
``remove_stale_temps(folder)`` deletes those of processes that no longer exist, never a live run's. Local copies
of remote or packed data (staged shards, uploads) live under ``$TMPDIR`` as ``unseg-staging-<pid>-...``
(``staging_folder``, ``staging_file``), which the next run's first staging removes when a kill -9 left them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from ..errors import OutputError, UsageError

TEMP_PREFIX = ".unseg-tmp-"
STAGING_PREFIX = "unseg-staging-"


@functools.cache
def _umask() -> int:
    """The process umask, read once. Reading it means setting it, so it happens once, on first use,
    not at import (another thread could create a file in between)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@functools.cache
def _host_tag() -> str:
    """6 hex digits naming this host in temp names, so that runs on other hosts sharing a folder (Slurm
    array tasks writing one output folder) never take each other's live temps for dead ones."""
    return hashlib.blake2s(socket.gethostname().encode(), digest_size=3).hexdigest()


_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def mkstemp_beside(path: Path) -> tuple[int, str]:
    """A temp file in the target's folder with the permissions open() would give (mkstemp's are 0600).
    Named ``.unseg-tmp-<pid>-<host>-<random>``: the PID tells a dead run's temp from a live one's; the
    target's name is left out so that a 255-byte target name still has a temp name. The first write
    into a folder removes the temps that dead runs left there (``remove_stale_temps``)."""
    folder = os.path.abspath(path.parent)
    with _cleaned_lock:
        first = folder not in _cleaned
        _cleaned.add(folder)
    if first:
        remove_stale_temps(folder)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{_host_tag()}-", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, tmp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    return True


# another host's temp is only removed once untouched this long: its PID cannot be checked from here
_OTHER_HOST_STALE_SECONDS = 24 * 3600


def remove_stale_temps(folder: str | os.PathLike, prefix: str = TEMP_PREFIX) -> int:
    """Delete ``<prefix><pid>-*`` files and folders in ``folder`` (not below) that no live run owns: this host's
    whose process is gone (what SIGKILL or a power loss left), other hosts' after a day untouched.
    Returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text, _, tail = name[len(prefix) :].partition("-")
        if not pid_text.isdigit():
            continue
        path = os.path.join(folder, name)
        host = tail[:6] if len(tail) > 7 and tail[6] == "-" else _host_tag()
        if host == _host_tag():
            stale = not _pid_alive(int(pid_text))
        else:
            try:
                stale = time.time() - os.lstat(path).st_mtime > _OTHER_HOST_STALE_SECONDS
            except OSError:
                continue
        if stale:
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed += 1
    return removed


def _staging_prefix() -> str:
    """``unseg-staging-<pid>-<host>-``: the names ``remove_stale_temps`` parses. The first staging of a process
    removes what dead runs left under ``$TMPDIR`` (a whole staged shard after a kill -9)."""
    _remove_stale_staging()
    return f"{STAGING_PREFIX}{os.getpid()}-{_host_tag()}-"


@functools.cache
def _remove_stale_staging() -> None:
    remove_stale_temps(tempfile.gettempdir(), STAGING_PREFIX)


def staging_folder() -> tempfile.TemporaryDirectory[str]:
    """A temp folder under ``$TMPDIR`` for local copies (a staged shard and its outputs), removed when the block
    ends (also on Ctrl-C and SIGTERM) or, after a kill -9, by the next run."""
    return tempfile.TemporaryDirectory(prefix=_staging_prefix())


def staging_file(suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` under ``$TMPDIR`` named as ``staging_folder``'s folders; the caller deletes it."""
    return tempfile.mkstemp(prefix=_staging_prefix(), suffix=suffix)


def remove_own_temps() -> None:
    """Delete this process's temps in every folder it has written into: what a write in progress leaves
    when a worker is told to stop (``parallel``) and exits without unwinding, or when a signal lands
    between a temp's creation and the code that deletes it on failure. Each folder is recorded before its
    first temp is made, so no temp escapes. Only for when no write of this process is still running."""
    prefix = f"{TEMP_PREFIX}{os.getpid()}-"
    for folder in list(_cleaned):
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if name.startswith(prefix):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _check_creatable_dir(path: Path, what: str) -> None:
    """``path`` is (or can be created as) a folder we can write into."""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{what} {path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {path}: the folder is not writable")
        return
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UsageError(f"{what} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: cannot create it, {base} is not writable")


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Fail early (UsageError, exit 2) when ``path`` cannot be used as an output folder: an existing file,
    a path under a file, a read-only folder, or '-' (stdout; a folder cannot be streamed, and a folder named
    '-' is never what was meant). Creates nothing. ``what`` names it in the message."""
    if str(path) == "-":
        raise UsageError(f"{what} cannot be '-' (stdout): it is a folder")
    p = Path(path)
    _check_creatable_dir(p, what)
    return p


def check_output_file(path: str | os.PathLike, what: str = "output file") -> None:
    """Fail early (UsageError, exit 2) when ``path`` cannot be written as a file: an existing folder, a path
    under a file, a read-only folder. '-' (stdout) is always fine. Creates nothing."""
    if str(path) == "-":
        return
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {p} is a folder, not a file")
    _check_creatable_dir(p.parent if str(p.parent) else Path("."), what)


def is_special_file(path: str | os.PathLike) -> bool:
    """``path`` exists (links followed) and is neither a regular file nor a folder: /dev/null, /dev/stdout, a
    named pipe. Such a target is written in place: a temp file renamed over it would replace the device or
    the pipe itself with a regular file (as root, /dev/null)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


# errors that only writing can cause: from inside a streamed block they are the output's, not an input's
_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _cannot_write(path: str | os.PathLike, e: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write ({e.strerror or e})")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file renamed over it; OutputError (the temp removed) when
    the disk is full or the folder cannot be written."""
    path = Path(path)
    try:
        if is_special_file(path):
            with open(path, "wb") as special:
                special.write(data)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = mkstemp_beside(path)
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _cannot_write(path, e) from None
        raise


@contextlib.contextmanager
def _stdout_errors() -> Iterator[None]:
    """Writing stdout: a full disk or a device error becomes an OutputError naming stdout. A closed pipe
    (BrokenPipeError) passes as it is: the reader went away (``| head``), which the CLI treats as a quiet
    stop; errors that name a file come from elsewhere in the block and pass too."""
    try:
        yield
    except OSError as e:
        if isinstance(e, BrokenPipeError) or e.filename is not None:
            raise
        raise _cannot_write("stdout", e) from None


def write_output(path: str, data: bytes) -> None:
    """Write to a file atomically, or to stdout when ``path`` is '-'."""
    if path == "-":
        with _stdout_errors():
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
        with _stdout_errors():
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
        return
    target = Path(path)
    try:
        if is_special_file(target):
            with open(target, "wb") as special:
                yield special
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = mkstemp_beside(target)
    except OSError as e:
        if e.errno in _SPACE_ERRORS or e.filename is not None and Path(e.filename) in (target, target.parent):
            raise _cannot_write(target, e) from None
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and (e.errno in _SPACE_ERRORS or e.filename in (tmp, str(target))):
            raise _cannot_write(target, e) from None
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
        if fut.cancelled():  # never started: the run is stopping, and a re-run writes it
            return
        exc = fut.exception()
        if exc is not None:
            message = (
                exc.message if isinstance(exc, OutputError) else f"{path}: cannot write ({type(exc).__name__}: {exc})"
            )
            with self._lock:
                self.errors.append(message)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # a run stopping early (a signal) finishes the writes in progress, not the up to ``max_pending``
        # waiting ones (each may be a refinement of seconds): the stop stays prompt, and a re-run writes them
        self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)


MANIFEST = ".unseg-manifest"  # OUT/.unseg-manifest.json: the files an export wrote into its folder


class Manifest:
    """The files a folder-writing export owns, so a re-run into the same folder removes what it no longer
    writes (a smaller re-export would otherwise leave label files that the summary does not count and
    that ultralytics trains on). Files the export did not write are never touched.

    ``part`` names an independent shard's own manifest (``.unseg-manifest.3of16.json``): a shard cleans
    only what its own earlier run wrote, since the other shards write the same folder at the same time.
    A whole run (``part=''``) takes over every manifest in the folder. ``remove_stale`` and ``save`` come
    after the last file: a killed run leaves the previous manifest, so the next complete run still cleans.
    """

    def __init__(self, folder: str | os.PathLike, part: str = "") -> None:
        self.folder = Path(folder)
        self.path = self.folder / (f"{MANIFEST}.{part}.json" if part else f"{MANIFEST}.json")
        olds = [self.path] if part else sorted(self.folder.glob(f"{MANIFEST}*.json"))
        self.previous: dict[Path, list[str]] = {p: self._read(p) for p in olds if p.is_file()}
        self.written: set[str] = set()

    @staticmethod
    def _read(path: Path) -> list[str]:
        try:
            files = json.loads(path.read_text(encoding="utf-8")).get("files", [])
        except (OSError, ValueError, AttributeError):  # unreadable or hand-edited: own nothing, clean nothing
            return []
        return [f for f in files if isinstance(f, str)]

    def add(self, rel: str | os.PathLike) -> None:
        """Record ``rel`` (relative to the folder) as written by this run."""
        self.written.add(Path(rel).as_posix())

    def remove_stale(self) -> int:
        """Remove the files earlier runs wrote that this one did not (so far); returns how many. Names
        never leave the folder (a hand-edited ``../x`` is skipped)."""
        removed = 0
        for rel in {f for files in self.previous.values() for f in files} - self.written:
            target = self.folder / rel
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                continue
            try:
                target.unlink()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise OutputError(f"{target}: cannot remove this file of an earlier run ({e.strerror or e})") from None
            removed += 1
        return removed

    def save(self) -> None:
        """Write this run's manifest (after the last file), in place of every one it took over."""
        for old in self.previous:
            if old != self.path:
                old.unlink(missing_ok=True)
        # json's \\uDCxx escapes carry names that are not UTF-8 (surrogateescape) back to the same bytes
        atomic_write_bytes(self.path, dumps_json({"files": sorted(self.written)}))
