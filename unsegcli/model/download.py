"""Explicit downloads for `unseg weights fetch`: checksum, atomic rename, progress through a callback;
offline gives one clear message at once."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import UnsegError
from ..io.files import mkstemp_beside


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    timeout: float = 20.0,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Fetch ``url`` to ``dest``; ``on_progress(bytes_just_read, total_or_None)`` per chunk (and once
    with 0 at the start). Nothing is written at ``dest`` unless the checksum matches."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        resp = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - fixed https URLs from the registry
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UnsegError(
            f"cannot download {url}: {reason}",
            f"this machine seems offline; download the file elsewhere and copy it to {dest}",
        ) from None
    total = int(resp.headers.get("Content-Length") or 0) or None
    h = hashlib.sha256()
    fd, tmp = mkstemp_beside(dest)
    try:
        if on_progress:
            on_progress(0, total)
        with os.fdopen(fd, "wb") as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                h.update(chunk)
                if on_progress:
                    on_progress(len(chunk), total)
        if sha256 and h.hexdigest() != sha256:
            raise UnsegError(
                f"checksum mismatch for {url}: got {h.hexdigest()}, expected {sha256}",
                "the download is corrupt or the file changed upstream; nothing was saved",
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
