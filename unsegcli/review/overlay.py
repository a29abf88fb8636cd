"""Overlays: an image with its mask tinted, component outlines, predicted boxes with scores and GT
boxes. Pure functions on uint8 RGB arrays; OpenCV does the resizing and the text."""

from __future__ import annotations

import math

import numpy as np

TINT = (255, 0, 200)  # soft-mask foreground tint (magenta: rare in photos)
OUTLINE = (255, 255, 255)  # component outlines
PRED = (255, 190, 0)  # predicted boxes without GT (amber)
GT = (0, 160, 255)  # ground-truth boxes (azure)
HIT = (40, 210, 60)  # predicted box with IoU >= 0.5 against a GT box
MISS = (235, 30, 30)  # predicted box below that
TEXT = (0, 0, 0)
CANVAS = (96, 96, 96)  # background when there is no image to draw on
TINT_ALPHA = 0.45


def line_width(shape: tuple[int, ...]) -> int:
    """Line thickness that stays visible on large images and thin on small ones."""
    return max(1, round(max(shape[:2]) / 400))


def _inner_edge(fg: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``fg`` within ``width`` of a background pixel (4-neighbourhood); the image border
    does not count as background, so a mask filling the image has no outline there."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    eroded = cv2.erode(fg.view(np.uint8), kernel, iterations=width, borderType=cv2.BORDER_REPLICATE)
    return fg & (eroded == 0)


def _label_edges(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels of an object whose 4-neighbour belongs to another label (background or object)."""
    import cv2

    edge = np.zeros(labels.shape, bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    if width > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
        edge = cv2.dilate(edge.view(np.uint8), kernel, iterations=width - 1) > 0
    return edge & (labels > 0)


def _blend(out: np.ndarray, where: np.ndarray, colour: np.ndarray | tuple[int, int, int], alpha: float) -> None:
    """out[where] = (1 - alpha) * out + alpha * colour, rounded; ``colour`` may be per pixel."""
    col = np.asarray(colour, np.float32)
    if col.ndim == 3:
        col = col[where]
    mixed = out[where].astype(np.float32) * (1.0 - alpha) + col * alpha
    out[where] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _rect(out: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], width: int) -> tuple[int, int, int, int]:
    """Draw the box's edges inside it (continuous XYXY, exclusive end) -> its pixel bounds."""
    h, w = out.shape[:2]
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
    if x1 <= x0 or y1 <= y0:
        return x0, y0, x0, y0
    out[y0 : min(y0 + width, y1), x0:x1] = colour
    out[max(y1 - width, y0) : y1, x0:x1] = colour
    out[y0:y1, x0 : min(x0 + width, x1)] = colour
    out[y0:y1, max(x1 - width, x0) : x1] = colour
    return x0, y0, x1, y1


def _label(out: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """Text on a filled tag above (x, y), or just inside the box when there is no room above."""
    import cv2

    h, w = out.shape[:2]
    scale = max(0.35, max(h, w) / 1400)
    thick = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(1, thick)
    top = y - th - base - 2 * pad
    if top < 0:
        top = y
    left = min(max(0, x), max(0, w - tw - 2 * pad))
    out[top : top + th + base + 2 * pad, left : left + tw + 2 * pad] = colour
    cv2.putText(out, text, (left + pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, thick, cv2.LINE_AA)


def draw_overlay(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    gt_boxes: np.ndarray | None = None,
    hits: np.ndarray | None = None,
    *,
    instances: bool = False,
    threshold: float = 0.5,
    alpha: float = TINT_ALPHA,
) -> np.ndarray:
    """Image (H, W, 3) uint8 RGB -> a new overlay of the same size.

    ``mask`` (H, W) uint8: a soft mask (tinted where mask/255 > threshold, as `unseg boxes` cuts it)
    or, with ``instances``, a label map (object k tinted in VOC palette colour k). Each component or
    object gets an outline. Boxes are in the image's pixel frame; ``hits`` (per box) colours them
    green / red instead of amber; GT boxes are azure and drawn under the predictions.
    """
    from ..io.instances import voc_colormap
    from ..labels.components import binarize

    out = np.array(image, dtype=np.uint8, copy=True)
    width = line_width(out.shape)
    if mask is not None:
        if mask.shape != out.shape[:2]:
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {out.shape[1]}x{out.shape[0]}")
        if instances:
            fg = mask > 0
            _blend(out, fg, voc_colormap()[mask], alpha)  # the colours instance PNGs carry
            out[_label_edges(mask, width)] = OUTLINE
        else:
            fg = binarize(mask, threshold)
            _blend(out, fg, TINT, alpha)
            out[_inner_edge(fg, width)] = OUTLINE
    if gt_boxes is not None:
        for b in np.asarray(gt_boxes, np.float64).reshape(-1, 4):
            _rect(out, b, GT, width)
    if boxes is not None:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        for k, b in enumerate(boxes):
            colour = PRED if hits is None else (HIT if hits[k] else MISS)
            x0, y0, _, _ = _rect(out, b, colour, width)
            if scores is not None and not math.isnan(float(scores[k])):
                _label(out, f"{float(scores[k]):.2f}", x0, y0, colour)
    return out


def fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (never enlarge) so the longer side is at most ``max_side``; area averaging."""
    import cv2

    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return image
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def resize_labels(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A mask made at another resolution, brought to the image's (nearest: labels stay labels)."""
    import cv2

    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def scale_boxes(boxes: np.ndarray, from_wh: tuple[int, int] | None, to_wh: tuple[int, int]) -> np.ndarray:
    """Boxes from the ``from_wh`` frame into ``to_wh`` (unchanged when the frame is unknown)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if from_wh is None or from_wh == to_wh or 0 in from_wh:
        return boxes
    sx, sy = to_wh[0] / from_wh[0], to_wh[1] / from_wh[1]
    return boxes * np.array([sx, sy, sx, sy])
