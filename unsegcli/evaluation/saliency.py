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

from dataclasses import dataclass, field

import numpy as np

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


def resize_prediction(pred_u8: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """PIL bilinear resize of the 8-bit prediction to the GT size, as the official script does."""
    from PIL import Image

    if pred_u8.shape == tuple(size_hw):
        return pred_u8
    img = Image.fromarray(pred_u8, "L").resize((size_hw[1], size_hw[0]), Image.BILINEAR)
    return np.asarray(img)


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
    skipped: int = 0
    per_image: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"images": self.images, "iou": self.iou, "accuracy": self.accuracy, "max_fbeta": self.max_fbeta,
                "max_fbeta_threshold": self.max_fbeta_threshold, "max_fbeta_per_image": self.max_fbeta_per_image,
                "threshold": self.threshold, "missing": self.missing, "skipped": self.skipped}


def aggregate(stats: list[ImageStats], threshold: float) -> SaliencyResult:
    if not stats:
        return SaliencyResult(0, 0.0, 0.0, 0.0, 0.0, 0.0, threshold)
    p = np.stack([s.precision for s in stats])
    r = np.stack([s.recall for s in stats])
    f = f_beta(p, r)
    mean_f = f.mean(axis=0)
    best = int(mean_f.argmax())
    return SaliencyResult(len(stats), float(np.mean([s.iou for s in stats])),
                          float(np.mean([s.accuracy for s in stats])), float(mean_f[best]),
                          float(_THRESHOLDS[best]), float(f.max(axis=1).mean()), threshold)


def _read_pair(args) -> tuple[str, ImageStats | None, str | None]:
    """Official reading: GT raw (first channel if several) / 255 > 0.5; prediction .convert("L")."""
    from PIL import Image

    rel, gt_path, pred_path, threshold = args
    try:
        with Image.open(gt_path) as g:
            gt = np.asarray(g).astype(np.float32)
        if gt.ndim > 2:
            gt = gt[:, :, 0]
        gt = gt / 255.0 > 0.5
        if pred_path is None:  # missing prediction counted as an empty mask
            pred = np.zeros(gt.shape, np.uint8)
        else:
            with Image.open(pred_path) as p:
                pred = resize_prediction(np.asarray(p.convert("L")), gt.shape)
    except Exception as e:  # noqa: BLE001 - report the file, keep evaluating the rest
        return rel, None, f"{pred_path or gt_path}: cannot read ({type(e).__name__}: {e})"
    return rel, image_stats(pred, gt, threshold), None


def pair_files(gt_dir: str, pred_dir: str) -> list[tuple[str, str, str | None]]:
    """GT PNGs (recursive, sorted) with their predictions: same relative path, else the same stem
    anywhere under pred_dir when that stem is unique. Non-PNG files are ignored."""
    import os

    def pngs(root):
        out = {}
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.lower().endswith(".png"):
                    full = os.path.join(dirpath, f)
                    out[os.path.relpath(full, root)] = full
        return out

    gts, preds = pngs(gt_dir), pngs(pred_dir)
    by_stem: dict[str, list[str]] = {}
    for rel, full in preds.items():
        by_stem.setdefault(os.path.splitext(os.path.basename(rel))[0], []).append(full)
    pairs = []
    for rel in sorted(gts):
        pred = preds.get(rel)
        if pred is None:
            cands = by_stem.get(os.path.splitext(os.path.basename(rel))[0], [])
            pred = cands[0] if len(cands) == 1 else None
        pairs.append((rel, gts[rel], pred))
    return pairs


def evaluate_saliency(gt_dir: str, pred_dir: str, threshold: float = 0.5, missing: str = "empty",
                      workers: int = 0, on_error=None) -> SaliencyResult:
    pairs = pair_files(gt_dir, pred_dir)
    n_missing = sum(p is None for _, _, p in pairs)
    jobs = [(rel, g, p, threshold) for rel, g, p in pairs if p is not None or missing == "empty"]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            results = list(pool.imap(_read_pair, jobs, chunksize=32))
    else:
        results = [_read_pair(j) for j in jobs]
    stats, per_image = [], []
    for rel, st, err in results:
        if err:
            if on_error:
                on_error(err)
            continue
        stats.append(st)
        per_image.append((rel, st.iou))
    res = aggregate(stats, threshold)
    res.missing, res.skipped = n_missing, n_missing if missing == "skip" else 0
    res.per_image = per_image
    return res
