"""Listing inputs, decoding images to HxWx3 uint8 RGB in the displayed (EXIF) orientation, and the
ImageNet normalisation every model input gets."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..errors import InputError, UsageError
from .remote import expand_inputs, is_url, list_url_folder, read_url, url_name

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# start of the message of an image refused by the pixel limit (callers count these to suggest raising it)
TOO_LARGE = "image too large for the decompression-bomb limit"
RAISE_LIMIT = "; raise max_pixels if the file is trusted"


@dataclass(frozen=True)
class InputItem:
    """One input file and the path its outputs take, relative to the input root it came from."""

    path: str
    rel: str  # POSIX-style relative path used for output names and ids


def _has_ext(name: str, exts: tuple[str, ...]) -> bool:
    return name.lower().endswith(exts)


def _walk(root: Path, exts: tuple[str, ...], ignored: dict[str, int]) -> list[Path]:
    """Files under ``root`` with one of ``exts``, following folder symlinks but visiting each real folder
    once (by (st_dev, st_ino)), so a link loop ends. Hidden files and folders are skipped; other
    extensions are counted in ``ignored`` (extension -> count)."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    linked: list[Path] = []  # folders reached through a symlink: visited after the real tree, so a
    while stack or linked:  # folder that is both inside the tree and linked keeps its real name
        folder = stack.pop() if stack else linked.pop(0)
        try:
            st = folder.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                (linked if e.is_symlink() else stack).append(folder / e.name)
            elif _has_ext(e.name, exts):
                found.append(folder / e.name)
            else:
                ext = os.path.splitext(e.name)[1].lower() or "(none)"
                ignored[ext] = ignored.get(ext, 0) + 1
    return found


def _read_list(stream: Any, null: bool) -> list[str]:
    """Paths from a list stream: one per line (only the line break is removed, so names may start or end
    with spaces; empty lines are skipped), or NUL-separated (``find -print0``)."""
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
    if isinstance(data, bytes):
        text = os.fsdecode(data)
    else:
        text = data
    parts = text.split("\0") if null else text.split("\n")
    return [p[:-1] if (not null and p.endswith("\r")) else p for p in parts if p not in ("", "\r")]


def relative_name(path: str, root: str | None = None) -> str | None:
    """The relative name an input file's outputs take: relative to ``root`` when given (None when the
    path is outside it), else relative to the current folder; a path outside the current folder keeps
    its absolute path without the leading '/' (``/data/a/b.jpg`` -> ``data/a/b.jpg``)."""
    absolute = os.path.normpath(os.path.abspath(path))
    base = os.path.normpath(os.path.abspath(root if root is not None else os.curdir))
    if absolute == base or absolute.startswith(base.rstrip(os.sep) + os.sep):
        return Path(os.path.relpath(absolute, base)).as_posix()
    if root is not None:
        return None
    return Path(absolute).relative_to(Path(absolute).anchor).as_posix()


@dataclass
class InputListing:
    """What ``scan_inputs`` found: the usable items (sorted), per-input problems (each names its path(s)
    and reason; those inputs are left out) and the files of other extensions that folders held."""

    items: list[InputItem]
    problems: list[str]
    ignored: dict[str, int]  # extension -> count
    collisions: dict[str, str] = field(default_factory=dict)  # output name -> its problem (also in problems)

    def ignored_summary(self) -> str | None:
        """'ignored 3 files with other extensions (.avif .gif .heic)', or None."""
        n = sum(self.ignored.values())
        if not n:
            return None
        return f"ignored {n} file{'s' if n != 1 else ''} with other extensions ({' '.join(sorted(self.ignored))})"


def scan_inputs(
    inputs: Iterable[str],
    exts: tuple[str, ...] = IMAGE_EXTENSIONS,
    stdin: Any = None,
    *,
    root: str | None = None,
    null: bool = False,
    key: Any = None,
) -> InputListing:
    """Expand files, folders (recursive) and '-' (paths on stdin, one per line or NUL-separated when
    ``null``) into sorted items. Arguments are brace-expanded (``io.remote.expand_braces``); files, folders
    and listed paths may be fsspec URLs (a URL is named like a path: relative to its folder argument, to a
    URL ``root``, or without its scheme).

    Names: a folder's files are named relative to that folder, a file or stdin path by ``relative_name``
    (relative to ``root`` or the current folder); with ``root``, folders are named relative to it too.
    Inputs whose output names collide (``key(rel)``, by default the name without its extension:
    ``a.jpg`` and ``a.png``) are all left out and reported, both paths named, as is a path outside
    ``root``. A missing file argument is a UsageError.
    """
    key = key or (lambda rel: os.path.splitext(rel)[0])
    items: list[InputItem] = []
    problems: list[str] = []
    ignored: dict[str, int] = {}

    def add_file(path: str) -> None:
        rel = url_name(path, root) if is_url(path) else relative_name(path, root)
        if rel is None:
            problems.append(f"{path}: outside the root folder {root}")
        else:
            items.append(InputItem(path, rel))

    for spec in expand_inputs(list(inputs)):
        if spec == "-":
            for line in _read_list(stdin or sys.stdin, null):
                # a listed entry is one file: a NUL byte (a binary list) is no path at all, and a folder is
                # not walked (its files would have no name relative to anything the list says)
                if "\0" in line:
                    problems.append(f"{line!r}: not a path (it holds a NUL byte)")
                elif not is_url(line) and os.path.isdir(line):
                    problems.append(f"{line}: a folder in a list of files (pass folders as arguments)")
                else:
                    add_file(line)
            continue
        if is_url(spec):
            _add_url(spec, exts, root, items, problems, ignored)
            continue
        p = Path(spec)
        if p.is_dir():
            base_rel = relative_name(spec, root) if root is not None else ""
            if base_rel is None:
                problems.append(f"{spec}: outside the root folder {root}")
                continue
            prefix = "" if base_rel in ("", ".") else base_rel + "/"
            items.extend(InputItem(str(f), prefix + f.relative_to(p).as_posix()) for f in _walk(p, exts, ignored))
        elif p.exists() or p.is_symlink():
            add_file(spec)
        else:
            raise UsageError(f"input not found: {spec}")
    items.sort(key=lambda it: (it.rel, it.path))
    groups: dict[str, list[InputItem]] = {}
    for it in items:
        groups.setdefault(key(it.rel), []).append(it)
    kept: list[InputItem] = []
    collisions: dict[str, str] = {}
    for name, group in groups.items():
        paths = list(dict.fromkeys(it.path for it in group))
        if len(paths) == 1:
            kept.append(group[0])  # one file listed twice is one input
        else:
            collisions[name] = (
                f"{' and '.join(paths)}: both map to the output name '{name}'; none of them is "
                "processed (rename one, or give their folders separately)"
            )
            problems.append(collisions[name])
    return InputListing(kept, problems, ignored, collisions)


def _add_url(
    spec: str,
    exts: tuple[str, ...],
    root: str | None,
    items: list[InputItem],
    problems: list[str],
    ignored: dict[str, int],
) -> None:
    """A URL argument: one file, or a folder's files named relative to it (to ``root`` with ``root``)."""
    listed = list_url_folder(spec, exts)
    if listed is None:
        raise UsageError(f"input not found: {spec}")
    files, other = listed
    for ext, n in other.items():
        ignored[ext] = ignored.get(ext, 0) + n
    if len(files) == 1 and files[0][1] == "":  # a file
        rel = url_name(spec, root)
        if rel is None:
            problems.append(f"{spec}: outside the root folder {root}")
        else:
            items.append(InputItem(spec, rel))
        return
    base = "" if root is None else url_name(spec.rstrip("/"), root)
    if base is None:
        problems.append(f"{spec}: outside the root folder {root}")
        return
    prefix = base + "/" if base else ""
    items.extend(InputItem(url, prefix + rel) for url, rel in files)


def list_inputs(
    inputs: Iterable[str],
    exts: tuple[str, ...] = IMAGE_EXTENSIONS,
    stdin: Any = None,
    *,
    root: str | None = None,
    null: bool = False,
) -> list[InputItem]:
    """``scan_inputs``' items, for callers that treat any problem as fatal: raises UsageError naming
    every problem (colliding names, paths outside ``root``)."""
    listing = scan_inputs(inputs, exts, stdin, root=root, null=null)
    if listing.problems:
        raise UsageError("; ".join(listing.problems))
    return listing.items


Stats = tuple[float, float, float]


def normalize(x: torch.Tensor, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD) -> torch.Tensor:
    """[0, 1] RGB with channels at dim -3 ((3, H, W) or (B, 3, H, W)) -> (x - mean) / std per channel."""
    import torch

    m = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    s = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD) -> torch.Tensor:
    """The inverse of ``normalize``: normalised images -> [0, 1] RGB (not clamped)."""
    import torch

    m = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    s = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return x * s + m


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def to_uint8_gray(img: Any) -> np.ndarray | None:
    """16-bit / 32-bit / float PIL images -> HxW uint8 (None for other modes). I;16 is scaled from
    65535; I and F from 65535 when a value exceeds 255, else kept (8-bit data stored wide)."""
    if img.mode not in (*SIXTEEN_BIT_MODES, "I", "F"):
        return None
    arr = np.asarray(img, dtype=np.float64)
    hi = 65535.0 if img.mode in SIXTEEN_BIT_MODES or arr.max(initial=0) > 255 else 255.0
    return np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_rgb_array(img: Any) -> np.ndarray:
    """Convert any PIL image mode to HxWx3 uint8 RGB (16-bit scaled, alpha dropped, CMYK converted)."""
    gray = to_uint8_gray(img)
    if gray is not None:
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


@contextlib.contextmanager
def pil_errors(path: str, what: str = "image", too_large: str = "") -> Iterator[None]:
    """Map Pillow's and the OS's exceptions while reading ``path`` to one InputError with a reason;
    ``too_large`` is appended to the message of a file over the decompression-bomb limit (what to do)."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: {TOO_LARGE} ({e}){too_large}") from None
    except UnidentifiedImageError:
        size = os.path.getsize(path) if os.path.exists(path) else -1
        raise InputError(f"{path}: {'empty file' if size == 0 else 'not a readable image'}") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: corrupt or truncated {what} ({e})") from None


@contextlib.contextmanager
def _pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow reads its limit from a module global when a file is opened; set it for that moment only.
    Decoding runs in worker processes or the main thread, so no other thread opens images meanwhile."""
    from PIL import Image

    if max_pixels is None:
        yield
        return
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _source(path: str) -> Any:
    """What Pillow opens: a local path, or the bytes of a URL (read whole: an image is small)."""
    import io

    return io.BytesIO(read_url(path)) if is_url(path) else path


def check_image(path: str, max_pixels: int | None = None) -> None:
    """Raise InputError (with a reason) for a file that cannot be an image we decode: its header and, where the
    format has them, its checksums (PNG). Cheap: runs before a long job so that a bad file is named up front."""
    from PIL import Image

    with pil_errors(path, too_large="; raise max_pixels if the file is trusted"), _pixel_limit(max_pixels):
        with Image.open(_source(path)) as img:
            img.verify()


def decode_image(path: str, max_pixels: int | None = None) -> np.ndarray:
    """Read one image as HxWx3 uint8 RGB, EXIF orientation applied. Raises InputError with a reason.

    ``max_pixels``: largest image accepted (default: Pillow's decompression-bomb limit)."""
    return _decode(path, max_pixels)


def decode_image_bytes(data: bytes, path: str, max_pixels: int | None = None) -> np.ndarray:
    """``decode_image`` of a file's bytes read elsewhere (Ray Data's ``read_binary_files``); ``path`` names it."""
    if not data:
        raise InputError(f"{path}: empty file")
    return _decode(path, max_pixels, data)


def _decode(path: str, max_pixels: int | None, data: bytes | None = None) -> np.ndarray:
    import io

    from PIL import Image, ImageOps

    try:
        with pil_errors(path, too_large=RAISE_LIMIT), warnings.catch_warnings(), _pixel_limit(max_pixels):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(_source(path) if data is None else io.BytesIO(data)) as img:
                img = ImageOps.exif_transpose(img)
                img.load()
                arr = to_rgb_array(img)
    except Image.DecompressionBombWarning as e:  # between the limit and twice it (the error is pil_errors')
        raise InputError(f"{path}: {TOO_LARGE} ({e}){RAISE_LIMIT}") from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{path}: image has no pixels")
    return arr
