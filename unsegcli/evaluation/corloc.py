"""CorLoc by the LOST / TokenCut protocol: a hit when the single predicted box has IoU >= 0.5
with ANY ground-truth box; CorLoc = hits / images evaluated; no prediction = a miss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..io.datasets import GTImage
from .inputs import Pick, read_box_predictions
from .results import csv_bytes

CORLOC_IOU = 0.5  # LOST / TokenCut CorLoc: a hit at IoU >= 0.5 with any GT box
LOST_EPS = 1e-7  # LOST bbox_iou adds eps to each box height and to the union (float64 here)


def iou_lost(box: np.ndarray, gts: np.ndarray, eps: float = LOST_EPS) -> np.ndarray:
    """IoU of one XYXY box with (N, 4) boxes, areas (x1 - x0) * (y1 - y0), no +1, LOST's eps:
    an IoU of exactly 0.5 therefore scores just under 0.5, a miss, as in LOST's numbers."""
    box = np.asarray(box, np.float64)
    gts = np.asarray(gts, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(box[2], gts[:, 2]) - np.maximum(box[0], gts[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], gts[:, 3]) - np.maximum(box[1], gts[:, 1]), 0, None)
    inter = iw * ih
    w1, h1 = box[2] - box[0], box[3] - box[1] + eps
    w2, h2 = gts[:, 2] - gts[:, 0], gts[:, 3] - gts[:, 1] + eps
    return inter / (w1 * h1 + w2 * h2 - inter + eps)


@dataclass
class CorLocResult:
    dataset: str
    hits: int = 0
    images: int = 0
    missing: int = 0
    skipped_hard: int = 0
    failed: int = 0  # inputs that could not be read (GT left out, predictions scored as misses)
    no_hard: bool = False  # how it was computed (shown in the title, not in to_dict)
    per_image: list[tuple[str, float, bool]] = field(default_factory=list)  # image id, best IoU, hit

    @property
    def corloc(self) -> float:
        return 100.0 * self.hits / self.images if self.images else 0.0

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "corloc": self.corloc,
            "hits": self.hits,
            "images": self.images,
            "missing": self.missing,
            "skipped_hard": self.skipped_hard,
            "failed": self.failed,
        }

    @property
    def title(self) -> str:
        return f"CorLoc · {self.dataset}" + (" · no hard" if self.no_hard else "")

    def columns(self) -> dict[str, str]:
        cols = {
            "CorLoc %": f"{self.corloc:.2f}",
            "hits": str(self.hits),
            "images": str(self.images),
            "missing predictions": str(self.missing),
        }
        if self.no_hard:
            cols["skipped (all hard)"] = str(self.skipped_hard)
        if self.failed:
            cols["failed"] = str(self.failed)
        return cols

    def per_image_csv(self) -> bytes:
        return csv_bytes(["image", "best_iou", "hit"], ((i, f"{iou:.6f}", int(hit)) for i, iou, hit in self.per_image))


def corloc(gt: list[GTImage], predictions: dict[str, np.ndarray], dataset: str, no_hard: bool = False) -> CorLocResult:
    """``predictions`` maps str(image_id) -> one XYXY box in the GT image's pixel coordinates.

    ``no_hard`` (LOST --no_hard): drop difficult/truncated objects, and skip images left with none.
    """
    res = CorLocResult(dataset, no_hard=no_hard)
    for img in gt:
        boxes = img.boxes
        if no_hard:
            # LOST discard_hard_voc: an image whose objects are all hard (or that has none) is skipped
            if img.hard.all():
                res.skipped_hard += 1
                continue
            boxes = boxes[~img.hard]
        res.images += 1
        pred = predictions.get(str(img.image_id))
        if pred is None:
            res.missing += 1
            res.per_image.append((str(img.image_id), 0.0, False))
            continue
        best = float(iou_lost(pred, boxes).max()) if len(boxes) else 0.0
        hit = best >= CORLOC_IOU
        res.hits += hit
        res.per_image.append((str(img.image_id), best, hit))
    return res


def evaluate_corloc(
    gt: list[GTImage],
    pred: str,
    dataset: str,
    no_hard: bool = False,
    pick: Pick = "auto",
    threshold: float = 0.5,
    connectivity: int = 8,
    workers: int = 0,
    on_error: Callable[[str], None] = lambda message: None,
) -> CorLocResult:
    """CorLoc of the predictions at ``pred`` (masks folder, box file or '-'); see ``read_box_predictions``.
    Unreadable inputs go to ``on_error`` and count as missing predictions."""
    boxes = read_box_predictions(pred, gt, pick, threshold, connectivity, workers, on_error)
    return corloc(gt, boxes, dataset, no_hard)
