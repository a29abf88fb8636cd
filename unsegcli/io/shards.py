"""WebDataset tar shards in and out: a shard's members staged into a local folder (so the folder path's
readers, naming and error rules apply unchanged), and a folder packed into a shard, byte for byte the
same on every run.

WebDataset's convention: a member ``dir/000123.jpg`` belongs to the sample whose ``__key__`` is the member's
name up to the first dot of its base name (``dir/000123``); the rest (``jpg``, ``seg.png``) is the field. A
sample's image is its member with an image extension; two of them in one sample collide like ``a.jpg`` and
``a.png`` in a folder (both named, neither used). Shards are read as a stream (stdlib ``tarfile``), local or
through fsspec (``io.remote``), so a shard on an object store is read once, front to back.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, OutputError, UsageError
from .files import open_output, staging_file, staging_folder
from .masks import TAG_HEAD, tag_of_head
from .remote import is_url, open_source, upload

SHARD_SUFFIX = ".tar"
_DIGITS = re.compile(r"(\d+)$")
# a PAX global header naming the settings a shard was made with, where its members hold none (label shards);
# tar and WebDataset's reader skip it
SETTINGS_HEADER = "unseg.settings"


def is_shard(spec: str) -> bool:
    """A WebDataset shard argument: a name ending in .tar (a local path or a URL)."""
    return spec.lower().endswith(SHARD_SUFFIX)


def shard_stem(spec: str) -> str:
    """The shard's name without folder and .tar: ``s3://b/train-000123.tar`` -> ``train-000123``."""
    return posixpath.basename(spec.rstrip("/"))[: -len(SHARD_SUFFIX)]


def shard_number(spec: str) -> str:
    """What ``{shard}`` in an output pattern becomes: the digits the shard's name ends with
    (``train-000123.tar`` -> ``000123``), or its whole name without .tar when it ends in none."""
    stem = shard_stem(spec)
    m = _DIGITS.search(stem)
    return m.group(1) if m else stem


def sample_key(name: str) -> str:
    """A member's WebDataset ``__key__``: its name up to the first dot of its base name."""
    folder, base = posixpath.split(name)
    return posixpath.join(folder, base.split(".", 1)[0])


@dataclass
class ShardContents:
    """What ``extract_shard`` found: members staged, problems (each naming the shard and member), and the
    other members' extensions counted (json, cls, txt ... fields of the samples)."""

    staged: int = 0
    problems: list[str] = field(default_factory=list)
    damaged: str | None = None  # why the shard could not be read to its end (the members before it are staged)
    ignored: dict[str, int] = field(default_factory=dict)


def _member_name(name: str) -> str | None:
    """A member's name as a relative POSIX path, or None when it would leave the folder (absolute, '..')."""
    norm = posixpath.normpath(name)
    if norm.startswith("/") or norm == ".." or norm.startswith("../") or norm in ("", "."):
        return None
    return norm


def extract_shard(spec: str, dest: str | os.PathLike, exts: tuple[str, ...]) -> ShardContents:
    """Stream the shard ``spec`` (a path or URL) and write each member whose name ends with one of ``exts``
    to ``dest/<member name>``. A member whose name leaves the folder is named and skipped; a shard that ends
    early (truncated, not a tar) keeps the members before the damage (not the one it cuts) and says why in
    ``damaged``. A shard that cannot be opened at all is an InputError."""
    contents = ShardContents()
    dest = Path(dest)
    partial: Path | None = None  # the member being written: removed when the shard ends inside it
    try:
        with open_source(spec) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = _member_name(member.name)
                if name is None:
                    contents.problems.append(f"{spec}: member {member.name!r} has a name outside the shard")
                    continue
                if not name.lower().endswith(exts):
                    ext = "." + name.rsplit(".", 1)[1].lower() if "." in posixpath.basename(name) else "(none)"
                    contents.ignored[ext] = contents.ignored.get(ext, 0) + 1
                    continue
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has its data
                partial = dest / name
                partial.parent.mkdir(parents=True, exist_ok=True)
                with open(partial, "wb") as f:
                    shutil.copyfileobj(source, f)
                partial = None
                contents.staged += 1
    except FileNotFoundError:
        raise InputError(f"{spec}: no such shard") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        if isinstance(e, OSError) and e.errno is not None and not isinstance(e, tarfile.TarError):
            if e.filename is not None and str(e.filename).startswith(str(dest)):  # staging: a full temp disk
                raise OutputError(f"{e.filename}: cannot stage a member of {spec} ({e.strerror or e})") from None
            raise InputError(f"{spec}: cannot read the shard ({e.strerror or e})") from None
        if partial is not None:
            partial.unlink(missing_ok=True)
        done = f" after {contents.staged} members" if contents.staged else ""
        contents.damaged = f"{spec}: truncated or not a tar shard{done} ({type(e).__name__}: {e})"
    return contents


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    """A member header that depends on the name and size only (no time, owner or umask), so the same masks
    always pack to the same bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_folder(folder: str | os.PathLike, stream: object, settings: str | None = None) -> int:
    """Write the files under ``folder`` (sorted by their relative POSIX name, hidden ones left out) as a tar
    to the binary ``stream``, with ``settings`` in its ``SETTINGS_HEADER`` when given; returns how many."""
    root = Path(folder)
    files = sorted(
        (p.relative_to(root).as_posix(), p)
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    headers = {SETTINGS_HEADER: settings} if settings else None
    with tarfile.open(  # type: ignore[call-overload]
        fileobj=stream, mode="w", format=tarfile.PAX_FORMAT, pax_headers=headers
    ) as tar:
        for rel, path in files:
            with open(path, "rb") as f:
                tar.addfile(_tarinfo(rel, path.stat().st_size), f)
    return len(files)


def write_shard(folder: str | os.PathLike, target: str, settings: str | None = None) -> int:
    """Pack ``folder`` into the shard ``target`` (``settings`` as ``pack_folder`` takes it) so that it appears
    whole or not at all: a local target through a temp file renamed over it; a URL through a local file, then
    ``io.remote.upload``. Returns the number of members."""
    if not is_url(target):
        with open_output(target) as f:
            return pack_folder(folder, f, settings)
    fd, local = staging_file(SHARD_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            n = pack_folder(folder, f, settings)
        upload(local, target)
    finally:
        os.unlink(local)
    return n


def shard_tag(spec: str) -> str | None:
    """The settings tag of an output shard: its ``SETTINGS_HEADER``, else its first PNG member's (``io.masks``);
    None when it has none or cannot be read."""
    with contextlib.suppress(InputError, tarfile.TarError, OSError, EOFError):
        with open_source(spec) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            if SETTINGS_HEADER in tar.pax_headers:  # read with the first member's header
                return tar.pax_headers[SETTINGS_HEADER]
            for member in tar:
                if member.isfile() and member.name.lower().endswith(".png"):
                    source = tar.extractfile(member)
                    return tag_of_head(source.read(TAG_HEAD)) if source is not None else None
    return None


@dataclass
class StagedInputs:
    """Input arguments with each shard replaced by the local folder its members were staged into."""

    specs: list[str]
    problems: list[str]
    ignored: dict[str, int]
    folders: dict[str, str]  # staged folder -> what its files' names start with in messages ('shard.tar:')

    def name(self, message: str) -> str:
        """A message about a staged file, saying ``shard.tar:member`` (or the file's URL) instead of its path."""
        for folder, prefix in self.folders.items():
            message = staged_named(message, folder, prefix)
        return message


def staged_named(message: str, folder: str, prefix: str) -> str:
    """``message`` with the files staged under ``folder`` named ``prefix`` + member (``shard.tar:a.png``) and the
    folder itself named as its source (``shard.tar``), so no temp path reaches a message or a label row."""
    message = message.replace(folder + os.sep, prefix)
    return re.sub(re.escape(folder) + r"(?![\w.-])", lambda _: prefix[:-1], message)


@contextlib.contextmanager
def staged_inputs(specs: list[str], exts: tuple[str, ...]) -> Iterator[StagedInputs]:
    """The arguments ``specs`` with each shard (see ``is_shard``) and each folder URL staged into a temp folder
    for the length of the block (removed after it, also on errors and signals); other arguments pass as they
    are. For readers that open local files (masks for `unseg boxes`)."""
    from .remote import expand_inputs, list_url_folder, read_url

    with staging_folder() as tmp:
        staged = StagedInputs([], [], {}, {})
        for i, spec in enumerate(expand_inputs(specs)):
            folder = os.path.join(tmp, str(i))
            listed = list_url_folder(spec, exts) if is_url(spec) and not is_shard(spec) else None
            if listed is not None and listed[0] != [(spec, "")]:  # a folder URL: its files, named relative to it
                for url, rel in listed[0]:
                    target = Path(folder, rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        target.write_bytes(read_url(url))
                    except InputError as e:  # one unreadable file is named; the others go on
                        staged.problems.append(e.message)
                os.makedirs(folder, exist_ok=True)
                staged.specs.append(folder)
                staged.folders[folder] = spec.rstrip("/") + "/"
                continue
            if not is_shard(spec) or (not is_url(spec) and os.path.isdir(spec)):
                staged.specs.append(spec)
                continue
            if not is_url(spec) and not os.path.exists(spec):
                raise UsageError(f"input not found: {spec}")
            os.mkdir(folder)
            contents = extract_shard(spec, folder, exts)
            staged.problems.extend(contents.problems + ([contents.damaged] if contents.damaged else []))
            for ext, n in contents.ignored.items():
                staged.ignored[ext] = staged.ignored.get(ext, 0) + n
            staged.specs.append(folder)
            staged.folders[folder] = f"{spec}:"
        yield staged


def renamed(staged: StagedInputs, report: Callable[[str], None]) -> Callable[[str], None]:
    """``report`` that names staged files by their shard and member."""
    return lambda message: report(staged.name(message))
