"""Instance-mask files: one PNG per image holding several disjoint objects (``io/instances.py``).

An 8-bit palette PNG (PIL mode "P"): index k = object k, 0 = background, palette = Pascal VOC's colour
map, the convention of VOC's SegmentationObject PNGs, so the files open as coloured images in any
viewer. Soft and binary masks stay 8-bit grayscale (mode "L"), so the PNG mode alone tells a reader
which of the two a file is. The helpers below turn a label map into what the box, CorLoc and
saliency code consume: per-object masks and boxes, the union, or the largest object.

Scores: a method that rates its objects stores the ratings in the same file, as a PNG ``tEXt`` chunk with
the keyword ``unseg-scores`` whose text is a JSON object from object index to score in [0, 1], e.g.
``{"1": 1.0, "2": 0.4}`` (written before the image data, so reading it decodes no pixels). A soft (grayscale)
mask holds one object, so its chunk, when its method rates it (TokenCut, LOST), is ``{"1": score}``
(``io.masks.write_mask``). What a score means is the method's (docs/predict.md: scores); scores of different
methods are not comparable. A file without the chunk (another tool, an older unseg) has no scores; ``unseg
boxes`` then gives an instance mask's objects 1 and a soft mask's components their mean mask value.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import atomic_write_bytes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCORES_KEYWORD = "unseg-scores"


def voc_colormap(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 Pascal VOC palette: bit j of the index's r/g/b triplets goes to bit 7 - j of each
    channel (VOC devkit VOClabelcolormap.m), so 1 = dark red, 2 = dark green, 255 = light cream."""
    idx = np.arange(n, dtype=np.int64)
    cmap = np.zeros((n, 3), np.int64)
    for j in range(8):
        for c in range(3):
            cmap[:, c] |= ((idx >> (3 * j + c)) & 1) << (7 - j)
    return cmap.astype(np.uint8)


def scores_text(scores: Mapping[int, float]) -> str:
    """Object index -> score in [0, 1] -> the chunk's JSON text (module docstring); ValueError outside [0, 1]."""
    kept = {str(k): float(v) for k, v in sorted(scores.items())}
    bad = [f"{k}: {v}" for k, v in kept.items() if not 0.0 <= v <= 1.0]  # NaN fails too
    if bad:
        raise ValueError(f"object scores must lie in [0, 1], not {', '.join(bad)}")
    return json.dumps(kept, separators=(",", ":"))


def encode_instances(labels: np.ndarray, scores: Mapping[int, float] | None = None) -> bytes:
    """HxW uint8 label map (0 = background, k = object k) -> palette PNG bytes; ``scores`` (object index ->
    score in [0, 1]) are stored for the objects present in ``labels`` (module docstring)."""
    from PIL import Image, PngImagePlugin

    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be a 2-D uint8 array, not {labels.dtype} {labels.shape}")
    img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels).tobytes())
    img.putpalette(voc_colormap().ravel().tolist())
    info = None
    if scores is not None:
        present = {int(k) for k in object_ids(labels)}
        info = PngImagePlugin.PngInfo()
        info.add_text(SCORES_KEYWORD, scores_text({k: v for k, v in scores.items() if int(k) in present}))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, pnginfo=info)
    return buf.getvalue()


def write_instances(path: str | os.PathLike, labels: np.ndarray, scores: Mapping[int, float] | None = None) -> None:
    atomic_write_bytes(path, encode_instances(labels, scores))


def instance_scores(source: bytes | str | os.PathLike) -> dict[int, float]:
    """The stored object scores of an instance PNG (index -> score; empty when it stores none). A chunk
    that is not a JSON object of indices to numbers in [0, 1] is an InputError naming the file."""
    from .images import pil_errors

    name = "<bytes>" if isinstance(source, bytes) else str(source)
    with pil_errors(name, "instance mask"), _open(source) as img:
        text = img.info.get(SCORES_KEYWORD)
    if text is None:
        return {}
    try:
        raw = json.loads(text)
        out = {int(k): float(v) for k, v in raw.items()}
    except (ValueError, TypeError, AttributeError):
        raise InputError(f"{name}: its {SCORES_KEYWORD} chunk is not a JSON object of object scores") from None
    if not all(0.0 <= v <= 1.0 and not math.isnan(v) for v in out.values()):
        raise InputError(f"{name}: its {SCORES_KEYWORD} chunk holds scores outside [0, 1]")
    return out


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
