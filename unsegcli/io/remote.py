"""fsspec URLs (``s3://``, ``gs://``, ``https://``, ``memory://`` ...) and brace-expanded input lists.

fsspec is imported inside the functions that need it, only when an input or output is a URL: local runs and
``unseg --help`` never import it. The remote filesystems themselves (s3fs, gcsfs ...) are fsspec's own
optional packages (the ``cloud`` extra installs fsspec; see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import IO, Any

from ..errors import InputError, UsageError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# a range {000..099} (zero-padded to the width of its first bound) or a list {a,b,c}
_BRACES = re.compile(r"\{(?:(\d+)\.\.(\d+)|([^{}]*,[^{}]*))\}")

# object stores make an object visible only once its upload is complete: an upload is already atomic
ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"})
# the most names one braced argument may expand to (a typo like {0..999999999} must not fill memory)
MAX_EXPANSION = 1_000_000


def is_url(spec: str) -> bool:
    """``scheme://...`` (an fsspec URL), not a local path."""
    return bool(_URL.match(spec))


def expand_braces(spec: str) -> list[str]:
    """Expand the braces of one argument as a shell would, for arguments quoted to keep them from the shell
    (WebDataset's convention): ``shards/train-{000..002}.tar`` -> three names, zero-padded like the first
    bound; ``{a,b}`` -> both. Without braces: ``[spec]``."""
    m = _BRACES.search(spec)  # the leftmost braces first, as a shell: {a,b}-{1..2} -> a-1 a-2 b-1 b-2
    if m is None:
        return [spec]
    if m.group(3) is not None:
        parts = m.group(3).split(",")
    else:
        first, last = m.group(1), m.group(2)
        lo, hi = int(first), int(last)
        if abs(hi - lo) + 1 > MAX_EXPANSION:
            raise UsageError(f"{spec}: the range {m.group(0)} names more than {MAX_EXPANSION} inputs")
        width = len(first) if first.startswith("0") else 0
        parts = [f"{n:0{width}d}" for n in (range(lo, hi + 1) if hi >= lo else range(lo, hi - 1, -1))]
    return [e for p in parts for e in expand_braces(spec[: m.start()] + p + spec[m.end() :])]


def expand_inputs(specs: list[str]) -> list[str]:
    """Every argument brace-expanded (see ``expand_braces``), in order; '-', names without braces and local
    files whose name holds braces (``a{1,2}.jpg`` exists) as they are."""
    return [e for s in specs for e in (expand_braces(s) if s != "-" and not os.path.lexists(s) else [s])]


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of ``url``; a UsageError naming the missing package when the
    protocol needs one (s3fs, gcsfs ...) or fsspec itself is absent."""
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{url}: URLs need fsspec", "pip install 'unseg[cloud]'") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as e:  # fsspec knows the protocol, its package is not installed
        raise UsageError(f"{url}: {e}", "install the fsspec package for this protocol (s3fs, gcsfs ...)") from None
    except ValueError as e:  # an unknown protocol
        raise UsageError(f"{url}: {e}") from None
    return fs, path


def list_url_folder(url: str, exts: tuple[str, ...]) -> tuple[list[tuple[str, str]], dict[str, int]] | None:
    """The files under the folder ``url`` (recursive, sorted, hidden ones left out) with one of ``exts``, as
    (URL, name relative to the folder), and the other files' extensions counted; None when ``url`` is not a
    folder. A file URL: ``[(url, '')]``."""
    fs, path = filesystem(url)
    try:
        if not fs.isdir(path):
            if fs.isfile(path):
                return [(url, "")], {}
            return None
        found = sorted(fs.find(path))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(f"{url}: cannot list ({e})") from None
    base = path.rstrip("/") + "/"
    prefix = url.rstrip("/") + "/"
    files: list[tuple[str, str]] = []
    ignored: dict[str, int] = {}
    for full in found:
        rel = full[len(base) :] if full.startswith(base) else full.rsplit("/", 1)[-1]
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if rel.lower().endswith(exts):
            files.append((prefix + rel, rel))
        else:
            ext = "." + rel.rsplit(".", 1)[1].lower() if "." in rel.rsplit("/", 1)[-1] else "(none)"
            ignored[ext] = ignored.get(ext, 0) + 1
    return files, ignored


def url_name(url: str, root: str | None = None) -> str | None:
    """The relative name of a file URL's outputs: relative to the URL ``root`` when given (None when outside
    it), else the URL without its scheme (``s3://bucket/a/b.jpg`` -> ``bucket/a/b.jpg``), as an absolute
    path keeps its path without the leading '/'."""
    if root is not None:
        base = root.rstrip("/") + "/"
        return url[len(base) :] if url.startswith(base) and len(url) > len(base) else None
    return _URL.sub("", url).lstrip("/")


def read_url(url: str) -> bytes:
    """The bytes of one file URL; InputError naming it when it cannot be read."""
    fs, path = filesystem(url)
    try:
        data: bytes = fs.cat_file(path)
    except FileNotFoundError:
        raise InputError(f"{url}: no such file") from None
    except Exception as e:  # noqa: BLE001 - every backend has its own errors (HTTP, auth, network)
        raise InputError(f"{url}: cannot read ({type(e).__name__}: {e})") from None
    return data


@contextlib.contextmanager
def open_source(spec: str) -> Iterator[IO[bytes]]:
    """A binary stream of a local file or a file URL (streamed, not read whole: a shard may be gigabytes)."""
    if not is_url(spec):
        with open(spec, "rb") as f:
            yield f
        return
    fs, path = filesystem(spec)
    try:
        f = fs.open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{spec}: no such file") from None
    except Exception as e:  # noqa: BLE001 - every backend has its own errors
        raise InputError(f"{spec}: cannot open ({type(e).__name__}: {e})") from None
    with f:
        yield f


def url_exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.exists(path))


def upload(local: str, url: str) -> None:
    """Put the finished local file ``local`` at ``url`` so that no reader ever sees part of it: object stores
    (``ATOMIC_PUT``) show an object only once its upload completes; elsewhere it goes to a temp name beside
    the target, then is renamed (``fs.mv``)."""
    fs, path = filesystem(url)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    try:
        if ATOMIC_PUT.intersection(protocols):
            fs.put_file(local, path)
            return
        parent, _, name = path.rpartition("/")
        tmp = f"{parent}/.unseg-tmp-{os.getpid()}-{name}" if parent else f".unseg-tmp-{os.getpid()}-{name}"
        fs.put_file(local, tmp)
        try:
            fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(tmp)
            raise
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - every backend has its own errors
        from ..errors import OutputError

        raise OutputError(f"{url}: cannot write ({type(e).__name__}: {e})") from None
