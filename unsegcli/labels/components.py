"""Binarise, connected components, boxes and the area filter of MOVE sec. 4.2 (pure functions on arrays).

Boxes are 0-based continuous XYXY: a component spanning columns 3..5 has x0 = 3, x1 = 6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import UsageError

DEFAULT_MIN_AREA = 0.01  # MOVE sec. 4.2: drop boxes smaller than 1% of the image
Connectivity = Literal[4, 8]  # pixel connectivity of components (OpenCV's two choices)


@dataclass(frozen=True)
class Component:
    xyxy: tuple[float, float, float, float]  # x0, y0, x1, y1 (exclusive end)
    area: int  # pixel count of the component
    score: float  # mean soft mask value inside the component
    label: int  # component label in the label image


def uint8_cut(threshold: float) -> int:
    """Smallest uint8 level k with float32(k) / 255 > threshold: the official evaluation's strict
    float32 comparison, so ``mask >= cut`` is the same test without converting every pixel."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    above = np.nonzero(levels > np.float32(threshold))[0]
    return int(above[0]) if len(above) else 256


def binarize(mask_u8: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 mask -> bool, foreground where value / 255 > threshold (official eval's strict >)."""
    return mask_u8 >= uint8_cut(threshold)


def label_components(binary: np.ndarray, connectivity: int = 8) -> tuple[int, np.ndarray, np.ndarray]:
    """-> (count including background 0, HxW uint16/int32 labels, stats rows [x, y, w, h, area])."""
    import cv2

    if connectivity not in (4, 8):
        raise UsageError(f"connectivity must be 4 or 8, not {connectivity}")
    h, w = binary.shape
    # The most components an image can hold is a checkerboard: ceil(h/2)*ceil(w/2) with
    # 8-connectivity, ceil(hw/2) with 4. Where that fits in 16 bits, 16-bit labels halve the time.
    most = -(-h // 2) * -(-w // 2) if connectivity == 8 else -(-h * w // 2)
    ltype = cv2.CV_16U if most < 65535 else cv2.CV_32S
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary.view(np.uint8), connectivity=connectivity, ltype=ltype
    )
    return n, labels, stats


def extract_boxes(
    mask_u8: np.ndarray,
    threshold: float = 0.5,
    connectivity: int = 8,
    min_area: float = DEFAULT_MIN_AREA,
    multi: bool = False,
) -> tuple[list[Component], np.ndarray]:
    """Components of the binarised mask whose box covers at least ``min_area`` of the image.

    Sorted by box area, then pixel area (both descending), then top-left corner (y, x), so ties
    are broken deterministically. Single-object mode keeps the first. Returns (components, labels).
    """
    h, w = mask_u8.shape
    n, labels, stats = label_components(binarize(mask_u8, threshold), connectivity)
    if n <= 1:
        return [], labels
    keep = [i for i in range(1, n) if stats[i, 2] * stats[i, 3] >= min_area * h * w]
    keep.sort(key=lambda i: (-int(stats[i, 2]) * int(stats[i, 3]), -int(stats[i, 4]), stats[i, 1], stats[i, 0]))
    found = []
    for i in keep if multi else keep[:1]:
        x, y, bw, bh, area = (int(v) for v in stats[i])
        crop = component_crop(labels, stats, i)
        score = float(mask_u8[y : y + bh, x : x + bw][crop].sum(dtype=np.int64)) / 255.0 / area
        found.append(Component((float(x), float(y), float(x + bw), float(y + bh)), area, score, i))
    return found, labels


def component_crop(labels: np.ndarray, stats: np.ndarray, i: int) -> np.ndarray:
    """Boolean mask of component i inside its own box (cheap: no full-image comparison)."""
    x, y, bw, bh = (int(v) for v in stats[i, :4])
    return labels[y : y + bh, x : x + bw] == i


def component_masks(labels: np.ndarray, components: list[Component]) -> np.ndarray:
    """(H, W, N) Fortran-ordered uint8 masks of the given components, built crop by crop (no
    full-image comparisons) and laid out for one pycocotools encode call."""
    out = np.zeros((*labels.shape, len(components)), np.uint8, order="F")
    for k, c in enumerate(components):
        x0, y0, x1, y1 = (int(v) for v in c.xyxy)
        out[y0:y1, x0:x1, k] = labels[y0:y1, x0:x1] == c.label
    return out


def _jsonable(rle: dict) -> dict:
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_encode(mask: np.ndarray) -> dict:
    """bool HxW -> compressed RLE with counts as str (JSON-serialisable; pycocotools decodes it)."""
    from pycocotools import mask as mask_utils

    return _jsonable(mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8)))


def rle_encode_many(masks: np.ndarray) -> list[dict]:
    """(H, W, N) uint8 Fortran array -> N RLEs in one pycocotools call."""
    from pycocotools import mask as mask_utils

    if masks.shape[2] == 0:
        return []
    return [_jsonable(r) for r in mask_utils.encode(np.asfortranarray(masks, dtype=np.uint8))]
