"""Instance-mask files: one PNG per image holding several disjoint objects (``io/instances.py``).

An 8-bit palette PNG (PIL mode "P"): index k = object k, 0 = background, palette = Pascal VOC's colour
map, the convention of VOC's SegmentationObject PNGs, so the files open as coloured images in any
viewer. Soft and binary masks stay 8-bit grayscale (mode "L"), so the PNG mode alone tells a reader
which of the two a file is. The helpers below turn a label map into what the box, CorLoc and
saliency code consume: per-object masks and boxes, the union, or the largest object.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import atomic_write_bytes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def voc_colormap(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 Pascal VOC palette: bit j of the index's r/g/b triplets goes to bit 7 - j of each
    channel (VOC devkit VOClabelcolormap.m), so 1 = dark red, 2 = dark green, 255 = light cream."""
    idx = np.arange(n, dtype=np.int64)
    cmap = np.zeros((n, 3), np.int64)
    for j in range(8):
        for c in range(3):
            cmap[:, c] |= ((idx >> (3 * j + c)) & 1) << (7 - j)
    return cmap.astype(np.uint8)


def encode_instances(labels: np.ndarray) -> bytes:
    """HxW uint8 label map (0 = background, k = object k) -> palette PNG bytes."""
    from PIL import Image

    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be a 2-D uint8 array, not {labels.dtype} {labels.shape}")
    img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels).tobytes())
    img.putpalette(voc_colormap().ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_instances(path: str | os.PathLike, labels: np.ndarray) -> None:
    atomic_write_bytes(path, encode_instances(labels))


def _open(source: bytes | str | os.PathLike):
    from PIL import Image

    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def decode_instances(source: bytes | str | os.PathLike) -> np.ndarray:
    """Palette PNG (bytes or path) -> HxW uint8 label map (the raw palette indices)."""
    from .images import pil_errors

    name = "<bytes>" if isinstance(source, bytes) else str(source)
    with pil_errors(name, "instance mask"), _open(source) as img:
        img.load()
        if img.mode != "P":
            raise InputError(f"{name}: not an instance mask (PNG mode {img.mode}, expected a palette PNG)")
        return np.asarray(img, dtype=np.uint8).copy()


def is_instance_png(path: str | os.PathLike) -> bool:
    """True for a palette PNG; reads the header only (colour type 3 in IHDR), no decoding."""
    try:
        with open(Path(path), "rb") as f:
            head = f.read(26)
    except OSError:
        return False
    return len(head) == 26 and head[:8] == PNG_MAGIC and head[12:16] == b"IHDR" and head[25] == 3


def object_ids(labels: np.ndarray) -> np.ndarray:
    """Object indices present in the label map, ascending, background excluded."""
    counts = np.bincount(labels.ravel(), minlength=256)
    return np.nonzero(counts[1:])[0] + 1


def union_mask(labels: np.ndarray) -> np.ndarray:
    """All objects together (for CorLoc/saliency readers that want one foreground)."""
    return labels > 0


def largest_object(labels: np.ndarray) -> np.ndarray:
    """The object with the most pixels (ties: the lowest index); all False when there is none."""
    counts = np.bincount(labels.ravel(), minlength=256)
    counts[0] = 0
    if not counts.any():
        return np.zeros(labels.shape, bool)
    return labels == int(np.argmax(counts))


def instances_to_mask_u8(labels: np.ndarray, reduce: str = "union") -> np.ndarray:
    """Label map -> 0/255 uint8 single mask that the grayscale-mask code reads (union or largest)."""
    if reduce == "union":
        fg = union_mask(labels)
    elif reduce == "largest":
        fg = largest_object(labels)
    else:
        raise ValueError(f"reduce must be 'union' or 'largest', not {reduce!r}")
    return fg.astype(np.uint8) * 255


def read_mask_or_instances(path: str, reduce: str = "union") -> np.ndarray:
    """Any mask PNG -> HxW uint8 single mask: grayscale as ``read_mask`` gives it, an instance file
    reduced to its union or largest object (0/255), for CorLoc and saliency evaluation."""
    from .masks import read_mask

    if is_instance_png(path):
        return instances_to_mask_u8(decode_instances(path), reduce)
    return read_mask(path)
