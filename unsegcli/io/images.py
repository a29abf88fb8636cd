"""Listing inputs, decoding images to HxWx3 uint8 RGB in the displayed (EXIF) orientation, and the
ImageNet normalisation every model input gets."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..errors import InputError, UsageError

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# start of the message of an image refused by the pixel limit (callers count these to suggest raising it)
TOO_LARGE = "image too large for the decompression-bomb limit"


@dataclass(frozen=True)
class InputItem:
    """One input file and the path its outputs take, relative to the input root it came from."""

    path: str
    rel: str  # POSIX-style relative path used for output names and ids


def _has_ext(name: str, exts: tuple[str, ...]) -> bool:
    return name.lower().endswith(exts)


def _walk(root: Path, exts: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith(".") and _has_ext(f, exts))
    return found


def list_inputs(
    inputs: Iterable[str], exts: tuple[str, ...] = IMAGE_EXTENSIONS, stdin: TextIO | None = None
) -> list[InputItem]:
    """Expand files, folders (recursive) and '-' (one path per line on stdin) into sorted items.

    A folder's files are named relative to that folder; a single file or a stdin path by its
    base name. Duplicated output names are an error, since one would overwrite the other.
    """
    items: list[InputItem] = []
    for spec in inputs:
        if spec == "-":
            lines = (stdin or sys.stdin).read().splitlines()
            for line in lines:
                line = line.strip()
                if line:
                    items.append(InputItem(line, Path(line).name))
            continue
        p = Path(spec)
        if p.is_dir():
            items.extend(InputItem(str(f), f.relative_to(p).as_posix()) for f in _walk(p, exts))
        elif p.exists() or p.is_symlink():
            items.append(InputItem(str(p), p.name))
        else:
            raise UsageError(f"input not found: {spec}")
    items.sort(key=lambda it: (it.rel, it.path))
    seen: dict[str, str] = {}
    for it in items:
        key = os.path.splitext(it.rel)[0]
        if key in seen and seen[key] != it.path:
            raise UsageError(
                f"two inputs map to the same output name '{key}': {seen[key]} and {it.path}",
                hint="pass their folders instead of the files, or rename one",
            )
        seen[key] = it.path
    return items


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
def pil_errors(path: str, what: str = "image") -> Iterator[None]:
    """Map Pillow's and the OS's exceptions while reading ``path`` to one InputError with a reason."""
    from PIL import UnidentifiedImageError

    try:
        yield
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


def decode_image(path: str, max_pixels: int | None = None) -> np.ndarray:
    """Read one image as HxWx3 uint8 RGB, EXIF orientation applied. Raises InputError with a reason.

    ``max_pixels``: largest image accepted (default: Pillow's decompression-bomb limit)."""
    from PIL import Image, ImageOps

    try:
        with pil_errors(path), warnings.catch_warnings(), _pixel_limit(max_pixels):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                img.load()
                arr = to_rgb_array(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"{path}: {TOO_LARGE} ({e}); raise max_pixels if the file is trusted") from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{path}: image has no pixels")
    return arr
