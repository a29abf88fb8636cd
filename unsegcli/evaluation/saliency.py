"""Saliency metrics as MOVE's official segmentation_eval.py --fbeta computes them.

Per image: the prediction (8-bit) is resized to the GT size with PIL bilinear; GT = value/255 > 0.5
(first channel of a multi-channel GT); IoU = |P & G| / (|P | G| + 1e-8) and accuracy at
``threshold``; precision (1 when the prediction is empty) and recall (1 when the GT is empty) at
the 256 thresholds 0, 1/256, ..., 255/256 with the strict float32 comparison value/255 > t.
Fβ (β² = 0.3) per image, NaN -> 0; maxFβ = max over thresholds of the mean over images, and the
per-image-max variant = mean over images of each image's max.

All 256 thresholds come from one 256-bin histogram per image, so an image costs O(pixels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..parallel import Failed, parallel_map
from .inputs import MaskPair, Missing, pair_masks_for_saliency, read_saliency_gt, read_saliency_prediction
from .results import csv_bytes

BETA_SQ = 0.3  # official F_score betta_sq
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255.0)  # official: uint8 / 255 in float32
_THRESHOLDS = np.arange(0.0, 1.0, 1.0 / 256).astype(np.float32)  # np.arange(0, 1, 1/256), compared in float32
_ABOVE = _LEVELS[:, None] > _THRESHOLDS[None, :]  # (level, threshold) -> pixel counted as foreground


@dataclass
class ImageStats:
    iou: float
    accuracy: float
    precision: np.ndarray  # (256,)
    recall: np.ndarray  # (256,)


def image_stats(pred_u8: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> ImageStats:
    """pred_u8: HxW uint8 at the GT size; gt: HxW bool."""
    gt = gt.astype(bool)
    hist_all = np.bincount(pred_u8.ravel(), minlength=256)
    hist_gt = np.bincount(pred_u8[gt].ravel(), minlength=256)
    pred_area = hist_all @ _ABOVE  # (256,) foreground pixels per threshold
    tp = hist_gt @ _ABOVE
    gt_area = int(gt.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_area == 0, 1.0, tp / np.maximum(pred_area, 1))
        recall = np.where(gt_area == 0, 1.0, tp / max(gt_area, 1))
    above = _LEVELS[pred_u8] > np.float32(threshold)
    inter = np.count_nonzero(above & gt)
    union = np.count_nonzero(above | gt)
    return ImageStats(inter / (union + 1e-8), float(np.mean(above == gt)), precision, recall)


def f_beta(precision: np.ndarray, recall: np.ndarray, beta_sq: float = BETA_SQ) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (1 + beta_sq) * precision * recall / (beta_sq * precision + recall)
    return np.nan_to_num(f, nan=0.0)


@dataclass
class SaliencyResult:
    images: int
    iou: float
    accuracy: float
    max_fbeta: float
    max_fbeta_threshold: float
    max_fbeta_per_image: float
    threshold: float
    missing: int = 0
    skipped: int = 0  # GT masks left out: no prediction (or an unreadable one) with missing "skip"
    failed: int = 0  # unreadable GT masks (left out), unreadable predictions, ambiguous matches
    per_image: list[tuple[str, float]] = field(default_factory=list)  # GT relative path, IoU

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "iou": self.iou,
            "accuracy": self.accuracy,
            "max_fbeta": self.max_fbeta,
            "max_fbeta_threshold": self.max_fbeta_threshold,
            "max_fbeta_per_image": self.max_fbeta_per_image,
            "threshold": self.threshold,
            "missing": self.missing,
            "skipped": self.skipped,
            "failed": self.failed,
        }

    @property
    def title(self) -> str:
        return "saliency"

    def columns(self) -> dict[str, str]:
        return {
            "images": str(self.images),
            "Acc": f"{self.accuracy:.4f}",
            "IoU": f"{self.iou:.4f}",
            "maxFβ": f"{self.max_fbeta:.4f}",
            "maxFβ per-image": f"{self.max_fbeta_per_image:.4f}",
            "missing": str(self.missing),
            **({"failed": str(self.failed)} if self.failed else {}),
        }

    def per_image_csv(self) -> bytes:
        return csv_bytes(["image", "iou"], ((rel, f"{iou:.6f}") for rel, iou in self.per_image))


def aggregate(stats: list[ImageStats], threshold: float) -> SaliencyResult:
    if not stats:
        return SaliencyResult(0, 0.0, 0.0, 0.0, 0.0, 0.0, threshold)
    p = np.stack([s.precision for s in stats])
    r = np.stack([s.recall for s in stats])
    f = f_beta(p, r)
    mean_f = f.mean(axis=0)
    best = int(mean_f.argmax())
    return SaliencyResult(
        len(stats),
        float(np.mean([s.iou for s in stats])),
        float(np.mean([s.accuracy for s in stats])),
        float(mean_f[best]),
        float(_THRESHOLDS[best]),
        float(f.max(axis=1).mean()),
        threshold,
    )


def _score_pair(pair: MaskPair, threshold: float, missing: Missing) -> tuple[str, ImageStats | None, str | None]:
    """-> (GT relative path, stats or None when skipped, the prediction's read error or None). An
    unreadable GT raises (the pair cannot be scored); an unreadable prediction is a missing one."""
    gt = read_saliency_gt(pair.gt_path)
    pred, error = None, None
    if pair.pred_path is not None:
        try:
            pred = read_saliency_prediction(pair.pred_path, gt.shape)
        except InputError as e:
            error = e.message
    if pred is None:
        if missing == "skip":
            return pair.rel, None, error
        pred = np.zeros(gt.shape, np.uint8)
    return pair.rel, image_stats(pred, gt, threshold), error


def _pair_name(pair: MaskPair) -> str:
    return pair.gt_path


def evaluate_saliency(
    gt_dir: str,
    pred_dir: str,
    threshold: float = 0.5,
    missing: Missing = "empty",
    workers: int = 0,
    on_error: Callable[[str], None] = lambda message: None,
) -> SaliencyResult:
    """GT and prediction folders (matched by ``evaluation.inputs.match_predictions``) -> the metrics.

    A GT without prediction is scored as an empty mask (``missing`` "empty") or left out ("skip"). Each
    failure goes to ``on_error`` and is counted in ``failed``: an unreadable GT or an ambiguous match
    is left out; an unreadable prediction is then treated as a missing one."""
    pairs, errors = pair_masks_for_saliency(gt_dir, pred_dir)
    for message in errors:
        on_error(message)
    n_failed = len(errors)
    n_missing = sum(p.pred_path is None for p in pairs)
    jobs = [p for p in pairs if p.pred_path is not None or missing == "empty"]
    stats, per_image = [], []
    skipped = n_missing if missing == "skip" else 0
    work = functools.partial(_score_pair, threshold=threshold, missing=missing)
    for r in parallel_map(work, jobs, workers, describe=_pair_name, chunksize=32):
        if isinstance(r, Failed):
            on_error(r.message)
            n_failed += 1
            continue
        rel, st, error = r
        if error is not None:
            on_error(error)
            n_failed += 1
        if st is None:
            skipped += 1
            continue
        stats.append(st)
        per_image.append((rel, st.iou))
    res = aggregate(stats, threshold)
    res.missing, res.skipped, res.failed = n_missing, skipped, n_failed
    res.per_image = per_image
    return res
