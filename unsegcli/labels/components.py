"""Binarise, connected components, boxes and the area filter of MOVE sec. 4.2 (pure functions on arrays),
and ``read_box_mask``, which tells a mask file from a photo before any box is made of it.

Boxes are 0-based continuous XYXY: a component spanning columns 3..5 has x0 = 3, x1 = 6.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ..errors import InputError, UsageError

DEFAULT_MIN_AREA = 0.01  # MOVE sec. 4.2: drop boxes smaller than 1% of the image
Connectivity = Literal[4, 8]  # pixel connectivity of components (OpenCV's two choices)


@dataclass(frozen=True)
class Component:
    xyxy: tuple[float, float, float, float]  # x0, y0, x1, y1 (exclusive end)
    area: int  # pixel count of the component
    score: float  # soft mask: mean mask value inside the component (x the method's stored score); instances: stored
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


def scored_by_method(comps: list[Component], stored: float | None) -> list[Component]:
    """A soft mask's components with its method's stored score (``io.instances``: TokenCut, LOST) folded in:
    score = stored score x mean mask value inside the component (so a 0/255 mask's components score the stored
    score); unchanged when the file stores none."""
    if stored is None:
        return comps
    return [replace(c, score=c.score * stored) for c in comps]


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


# start of the message of a colour image refused as a mask (the CLI counts these to suggest its flag)
COLOUR_IMAGE = "a colour image, not a mask"
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_header(path: str) -> tuple[int, int, int] | None:
    """(width, height, colour type) from a PNG's IHDR (26 bytes), or None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != _PNG_MAGIC or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[25]


def read_box_mask(path: str, allow_color: bool = False, max_pixels: int | None = None) -> tuple[str, np.ndarray]:
    """A mask file -> ("mask", HxW uint8) or ("instances", HxW uint8 label map for a palette PNG).

    Masks are grayscale (L, LA, 1, 16-bit) or RGB whose channels are all equal. An image whose
    channels differ is a photo, not a mask: InputError (``COLOUR_IMAGE``) unless ``allow_color``,
    which boxes its luminance. ``max_pixels`` refuses larger files before decoding them."""
    from PIL import Image

    from ..io.images import TOO_LARGE, pil_errors
    from ..io.instances import decode_instances
    from ..io.masks import read_mask

    header = _png_header(path)
    if header is not None:
        w, h, colour_type = header
        if max_pixels is not None and w * h > max_pixels:
            raise InputError(f"{path}: {TOO_LARGE} ({w}x{h} pixels > max_pixels {max_pixels})")
        if colour_type == 3:  # palette: an instance map (io/instances.py)
            return "instances", decode_instances(path)
        if colour_type in (0, 4):  # gray, gray + alpha
            return "mask", read_mask(path)
    with pil_errors(path, "mask"), Image.open(path) as img:
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise InputError(f"{path}: {TOO_LARGE} ({img.width}x{img.height} pixels > max_pixels {max_pixels})")
        if img.mode == "P":
            return "instances", decode_instances(path)
        if img.mode in _COLOUR_MODES:
            img.load()
            rgb = np.asarray(img.convert("RGB") if img.mode != "RGB" else img)
            if (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all():
                return "mask", np.ascontiguousarray(rgb[:, :, 0])
            if not allow_color:
                raise InputError(f"{path}: {COLOUR_IMAGE} (mode {img.mode}, its channels differ)")
    return "mask", read_mask(path)


def instance_components(
    labels: np.ndarray,
    min_area: float = DEFAULT_MIN_AREA,
    split_components: bool = False,
    connectivity: int = 8,
    scores: Mapping[int, float] | None = None,
) -> tuple[list[Component], np.ndarray, int]:
    """An instance label map -> (one Component per object whose box covers ``min_area`` of the image,
    or per connected piece of an object with ``split_components``, sorted as ``extract_boxes`` sorts
    components; the label image; the number of objects or pieces before ``min_area``). ``scores``: the
    objects' stored scores (``instance_boxes``)."""
    from ..io.instances import object_ids

    comps, out_labels = instance_boxes(labels, split_components, connectivity, min_area, scores)
    comps.sort(key=lambda c: (-(c.xyxy[2] - c.xyxy[0]) * (c.xyxy[3] - c.xyxy[1]), -c.area, c.xyxy[1], c.xyxy[0]))
    return comps, out_labels, int(out_labels.max(initial=0)) if split_components else len(object_ids(labels))


def instances_to_components(
    labels: np.ndarray, split_components: bool = False, connectivity: int = 8
) -> list[np.ndarray]:
    """Per-object boolean HxW masks in object order; with ``split_components`` each object is cut
    into its connected components (largest first within an object)."""
    from ..io.instances import object_ids

    out = []
    for k in object_ids(labels):
        obj = labels == k
        if not split_components:
            out.append(obj)
            continue
        n, comp, stats = label_components(obj, connectivity)
        for i in sorted(range(1, n), key=lambda i: (-int(stats[i, 4]), int(stats[i, 1]), int(stats[i, 0]))):
            out.append(comp == i)
    return out


def instance_boxes(
    labels: np.ndarray,
    split_components: bool = False,
    connectivity: int = 8,
    min_area: float = 0.0,
    scores: Mapping[int, float] | None = None,
) -> tuple[list[Component], np.ndarray]:
    """Label map -> (one Component per object, or per connected piece of each object, in object
    order; a label image in which ``Component.label`` marks it), the shape of ``extract_boxes``' result so
    ``component_masks`` and the COCO writers take it unchanged. Boxes whose area is under
    ``min_area`` of the image are dropped. The score is the object's stored score (``io.instances``; a
    piece gets its object's), 1 for an object the file stores none for."""
    from ..io.instances import object_ids

    h, w = labels.shape
    ids = object_ids(labels)
    stored = scores or {}
    if not split_components:
        out_labels = labels
        pieces = [(int(k), labels == k, stored.get(int(k), 1.0)) for k in ids]
    else:
        out_labels = np.zeros((h, w), np.int32)
        pieces = []
        for k in ids:
            for mask in instances_to_components(np.where(labels == k, labels, 0), True, connectivity):
                pieces.append((len(pieces) + 1, mask, stored.get(int(k), 1.0)))
                out_labels[mask] = len(pieces)
    boxes = []
    for lab, mask, score in pieces:
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        x0, x1, y0, y1 = int(xs[0]), int(xs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1
        if (x1 - x0) * (y1 - y0) < min_area * h * w:
            continue
        boxes.append(Component((float(x0), float(y0), float(x1), float(y1)), int(mask.sum()), score, lab))
    return boxes, out_labels
