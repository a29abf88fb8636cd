"""The neutral record `unseg show` works on: one image, its boxes and what is worth a look.

Every input (masks folder, pseudo-label file, detector results) is turned into ``ReviewItem``s by
``sources.py``; drawing and the report never look at the input format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..evaluation.inputs import MaskBox

# Flag names, in the order the report lists them.
FLAG_NO_BOX = "no-box"
FLAG_MANY = "many-boxes"
FLAG_BORDER = "border"
FLAG_LOW_SCORE = "low-score"
FLAG_MISS = "miss"  # CorLoc miss (only with GT)
FLAG_FAILED = "failed"  # the image or mask could not be drawn
FLAGS = (FLAG_NO_BOX, FLAG_MANY, FLAG_BORDER, FLAG_LOW_SCORE, FLAG_MISS, FLAG_FAILED)


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float64)


def _empty_values() -> np.ndarray:
    return np.zeros(0, np.float64)


@dataclass
class ReviewItem:
    """One image to review. Boxes are 0-based continuous XYXY in the ``size`` frame (the label
    file's width x height, or the mask's), which the drawing scales to the decoded image."""

    name: str  # display name: the image path relative to its root, or the label file's file_name
    image_path: str | None  # None: drawn on a grey canvas of ``size``
    image_id: str | None = None  # the label file's image id, where it has one (detector results match by it)
    size: tuple[int, int] | None = None  # (width, height) of the boxes' frame; None = unknown
    mask_path: str | None = None  # soft 'L' PNG or palette 'P' instance PNG
    rles: list[dict] = field(default_factory=list)  # per-object COCO RLEs (masks of a label file)
    boxes: np.ndarray = field(default_factory=_empty_boxes)  # (N, 4) float64
    scores: np.ndarray = field(default_factory=_empty_values)  # (N,), NaN where the format has none
    areas: np.ndarray = field(default_factory=_empty_values)  # (N,) pixel areas (box area when unknown)
    gt_boxes: np.ndarray | None = None  # (M, 4) in ``gt_size``; None = no GT for this image
    gt_size: tuple[int, int] | None = None
    ious: np.ndarray | None = None  # (N,) best IoU of each box with the GT (the drawing's colours)
    corloc: tuple[float, bool] | None = None  # its GT image's (best IoU, hit) as `unseg corloc` scores it
    corloc_box: MaskBox | None = None  # a mask's box that CorLoc scores (evaluation.inputs.corloc_box)
    flags: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def n_boxes(self) -> int:
        return int(len(self.boxes))

    @property
    def hit(self) -> bool | None:
        """CorLoc outcome of its GT image (no box = a miss, as in LOST's protocol); None without GT."""
        return None if self.corloc is None else self.corloc[1]

    @property
    def best_iou(self) -> float | None:
        """IoU of the box CorLoc scores with the GT (0 when there is none); None without GT."""
        return None if self.corloc is None else self.corloc[0]

    def area_fractions(self) -> np.ndarray:
        """Box areas as fractions of the image (NaN when the frame is unknown)."""
        wh = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        if self.size is None or self.size[0] * self.size[1] == 0:
            return np.full(len(self.boxes), np.nan)
        return wh / float(self.size[0] * self.size[1])


@dataclass(frozen=True)
class FlagRules:
    """What makes an image worth a look."""

    many_boxes: int = 5  # more boxes than this (VOC07 averages about 2.4 objects per image)
    low_score: float = 0.6  # any box scoring below this; MOVE mask scores are > the 0.5 cut by construction
    border_px: float = 1.0  # a box edge closer than this to the image edge touches the border


def compute_flags(item: ReviewItem, rules: FlagRules) -> list[str]:
    """The item's flags, in ``FLAGS`` order."""
    flags = []
    n = item.n_boxes
    if n == 0:
        flags.append(FLAG_NO_BOX)
    if n > rules.many_boxes:
        flags.append(FLAG_MANY)
    if n and item.size is not None:
        w, h = item.size
        b = item.boxes
        t = rules.border_px
        if bool(np.any((b[:, 0] < t) | (b[:, 1] < t) | (b[:, 2] > w - t) | (b[:, 3] > h - t))):
            flags.append(FLAG_BORDER)
    scores = item.scores[~np.isnan(item.scores)] if len(item.scores) else item.scores
    if len(scores) and bool(np.any(scores < rules.low_score)):
        flags.append(FLAG_LOW_SCORE)
    if item.hit is False:
        flags.append(FLAG_MISS)
    if item.error is not None:
        flags.append(FLAG_FAILED)
    return flags
