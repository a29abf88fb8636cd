"""8-bit mask PNGs: where a mask goes, encoding soft masks, atomic writing, reading masks of any PNG
flavour, and the settings tag each mask carries.

The tag: a ``tEXt`` chunk (keyword ``unseg``) right after the header holding a short hash of the settings
that made the mask (weights, size, binary, threshold, ...). Decoders ignore it; a re-run into the same
folder reads it from the masks it would skip, so outputs of two settings are never silently mixed. It
lives inside each file, so it survives copying and merging folders and every shard of a run sees it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import struct
import zlib
from collections.abc import Iterable
from typing import Any

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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEADER_END = 33  # signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 CRC): always first
TAG_KEYWORD = b"unseg"


def settings_tag(settings: dict[str, Any]) -> str:
    """16 hex digits naming a set of (JSON) settings: equal settings, equal tag."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def with_text(png: bytes, keyword: bytes, text: str) -> bytes:
    """PNG bytes with a ``tEXt`` chunk ``keyword\0text`` (Latin-1) inserted right after the header."""
    if png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise ValueError("not a PNG stream")
    data = keyword + b"\0" + text.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:_HEADER_END] + chunk + png[_HEADER_END:]


def with_tag(png: bytes, tag: str | None) -> bytes:
    """PNG bytes with a ``tEXt`` chunk ``unseg\0<tag>`` inserted right after the header (None: unchanged);
    added last, it is the first chunk after the header, where ``read_tag`` looks."""
    return png if tag is None else with_text(png, TAG_KEYWORD, tag)


TAG_HEAD = _HEADER_END + 8 + len(TAG_KEYWORD) + 1 + 64  # bytes of a PNG's start that hold its tag


def read_tag(path: str) -> str | None:
    """The settings tag of a mask written by ``with_tag`` (None: untagged, not a PNG, or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(TAG_HEAD)
    except OSError:
        return None
    return tag_of_head(head)


def tag_of_head(head: bytes) -> str | None:
    """The settings tag in the first ``TAG_HEAD`` bytes of a PNG (``read_tag`` on bytes), or None."""
    if head[:8] != PNG_SIGNATURE or head[_HEADER_END + 4 : _HEADER_END + 8] != b"tEXt":
        return None
    (n,) = struct.unpack(">I", head[_HEADER_END : _HEADER_END + 4])
    key, _, value = head[_HEADER_END + 8 : _HEADER_END + 8 + n].partition(b"\0")
    return value.decode("ascii", "replace") if key == TAG_KEYWORD else None


def first_with_other_tag(paths: Iterable[str], tag: str) -> str | None:
    """The first existing file among ``paths`` whose tag is not ``tag`` (untagged files pass: made by
    another tool or an older unseg, their settings are unknown). Feature files (``io.features``) carry theirs too."""
    from .features import is_feature_file, read_features_tag

    for path in paths:
        found = read_features_tag(path) if is_feature_file(path) else read_tag(path)
        if found is not None and found != tag:
            return path
    return None


def mask_png(arr_u8: np.ndarray, tag: str | None = None, score: float | None = None) -> bytes:
    """A grayscale mask's PNG bytes with the settings tag and, if given, its method's score for its one object
    (``io.instances``: the ``unseg-scores`` chunk ``{"1": score}``)."""
    from .instances import SCORES_KEYWORD, scores_text

    png = encode_png(arr_u8)
    if score is not None:
        png = with_text(png, SCORES_KEYWORD.encode("ascii"), scores_text({1: score}))
    return with_tag(png, tag)


def write_mask(path: str, arr_u8: np.ndarray, tag: str | None = None, score: float | None = None) -> None:
    """``mask_png``, written atomically."""
    atomic_write_bytes(path, mask_png(arr_u8, tag, score))


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
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV's own pixel cap (CV_IO_MAX_IMAGE_PIXELS) and other refusals: Pillow names them
        return None
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
