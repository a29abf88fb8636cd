"""8-bit mask PNGs: where a mask goes, encoding soft masks, atomic writing, and reading masks of any
PNG flavour."""

from __future__ import annotations

import posixpath

import numpy as np

from .files import atomic_write_bytes
from .images import pil_errors, to_uint8_gray


def mask_path_for(rel: str) -> str:
    """The mask of an input at relative path ``rel``: the same relative path with a .png extension
    (``a/b.jpg`` -> ``a/b.png``). The one naming rule shared by predict, boxes and training."""
    return posixpath.splitext(rel)[0] + ".png"


def soft_to_uint8(mask: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 by floor(m * 255), as the official infer.py writes masks."""
    return (np.clip(mask, 0.0, 1.0) * 255).astype(np.uint8)


def binary_to_uint8(mask: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(mask > threshold, 255, 0).astype(np.uint8)


def encode_png(arr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - OpenCV only fails on impossible shapes
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def write_mask(path: str, arr_u8: np.ndarray) -> None:
    atomic_write_bytes(path, encode_png(arr_u8))


def _read_gray8(path: str) -> np.ndarray | None:
    """OpenCV fast path for the common case (8-bit single-channel PNG); None for anything else,
    which goes through Pillow for its exact mode conversions."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size < 8 or data[:8].tobytes() != b"\x89PNG\r\n\x1a\n":
        return None
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 2 or arr.dtype != np.uint8:
        return None
    # palette PNGs decode to colour in OpenCV, so a 2-D uint8 result is a true grayscale image
    return arr


def read_mask(path: str) -> np.ndarray:
    """Read a mask as HxW uint8: grayscale kept, RGB/palette converted to L, 16-bit scaled to 8."""
    from PIL import Image

    fast = _read_gray8(path)
    if fast is not None:
        return fast
    with pil_errors(path, "mask"), Image.open(path) as img:
        img.load()
        wide = to_uint8_gray(img)
        if wide is not None:
            return wide
        if img.mode == "1":
            return np.asarray(img, dtype=np.uint8) * 255
        if img.mode != "L":
            img = img.convert("L")
        return np.asarray(img, dtype=np.uint8).copy()
