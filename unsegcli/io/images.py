"""Listing inputs and decoding images to HxWx3 uint8 RGB in the displayed (EXIF) orientation."""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

import numpy as np

from ..config import IMAGE_EXTENSIONS
from ..errors import InputError, UsageError


@dataclass(frozen=True)
class InputItem:
    """One input file and the path its outputs take, relative to the input root it came from."""

    path: str
    rel: str  # POSIX-style relative path used for output names and ids


def _has_ext(name: str, exts: tuple[str, ...]) -> bool:
    return name.lower().endswith(exts)


def _walk(root: Path, exts: tuple[str, ...]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith(".") and _has_ext(f, exts))
    return found


def list_inputs(inputs: Iterable[str], exts: tuple[str, ...] = IMAGE_EXTENSIONS,
                stdin: TextIO | None = None) -> list[InputItem]:
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
            raise UsageError(f"two inputs map to the same output name '{key}': {seen[key]} and {it.path}",
                             hint="pass their folders instead of the files, or rename one")
        seen[key] = it.path
    return items


def to_rgb_array(img) -> np.ndarray:
    """Convert any PIL image mode to HxWx3 uint8 RGB (16-bit scaled, alpha dropped, CMYK converted)."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def decode_image(path: str) -> np.ndarray:
    """Read one image as HxWx3 uint8 RGB, EXIF orientation applied. Raises InputError with a reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                img.load()
                arr = to_rgb_array(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"{path}: image too large for Pillow's decompression-bomb limit ({e}); "
                         "raise the limit with --max-pixels if the file is trusted") from None
    except UnidentifiedImageError:
        size = os.path.getsize(path) if os.path.exists(path) else -1
        reason = "empty file" if size == 0 else "not a readable image"
        raise InputError(f"{path}: {reason}") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: corrupt or truncated image ({e})") from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{path}: image has no pixels")
    return arr
