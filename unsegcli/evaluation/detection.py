"""Class-agnostic detection AP with pycocotools (MOVE Table 4 protocol): every GT category is
collapsed into one, crowd regions stay crowd, every prediction becomes that category."""

from __future__ import annotations

import contextlib
import copy
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError, UsageError
from ..io.labels import CocoFile, DetectorResults, LabelFile, read_coco_document, read_label_file

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")  # COCOeval.stats order


@dataclass
class DetectionResult:
    AP: float = 0.0
    AP50: float = 0.0
    AP75: float = 0.0
    APs: float = 0.0
    APm: float = 0.0
    APl: float = 0.0
    AR1: float = 0.0
    AR10: float = 0.0
    AR100: float = 0.0
    images: int = 0
    detections: int = 0
    unmatched_images: int = 0  # images of an `unseg boxes` COCO prediction file that the GT does not have

    @property
    def title(self) -> str:
        return "class-agnostic detection"

    def columns(self) -> dict[str, str]:
        d = self.to_dict()
        return {
            **{k: f"{100 * d[k]:.2f}" for k in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")},
            "detections": str(self.detections),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def class_agnostic_gt(data: dict) -> dict:
    data = copy.deepcopy(data)
    for a in data["annotations"]:
        a["category_id"] = 1
        if "area" not in a:  # box-only GT: COCOeval's area ranges need one; the box's is the only one there is
            a["area"] = a["bbox"][2] * a["bbox"][3]
    data["categories"] = [{"id": 1, "name": "object", "supercategory": "object"}]
    return data


def predictions_as_results(pred: LabelFile, gt: dict) -> tuple[list[dict], int]:
    """Detector results as they are; an `unseg boxes` COCO file matched to GT images by file name
    (its own ids are its own). Returns (results, images of a COCO prediction file not in the GT).
    Detections on image ids the GT does not have are an InputError: the files do not belong together."""
    unmatched = 0
    if isinstance(pred, DetectorResults):
        known = {i["id"] for i in gt["images"]}
        results = [dict(r) for r in pred.results]
        unscored = [n for n, r in enumerate(results) if "score" not in r]
        if unscored:  # AP ranks detections by score; inventing one would make the number arbitrary
            raise InputError(f"{pred.path}: {len(unscored)} detections have no score (e.g. item {unscored[0]})")
        stray = [r["image_id"] for r in results if r["image_id"] not in known]
        if stray:
            raise InputError(
                f"{pred.path}: {len(stray)} detections are on image ids that the ground truth does not have "
                f"(e.g. {stray[0]!r}); are these results for another annotation file?"
            )
    elif isinstance(pred, CocoFile):
        gt_ids = {os.path.basename(i["file_name"]): i["id"] for i in gt["images"]}
        own = {i["id"]: os.path.basename(i["file_name"]) for i in pred.data["images"]}
        unmatched = sum(name not in gt_ids for name in own.values())
        results = []
        for a in pred.data["annotations"]:
            name = own.get(a["image_id"])
            if name in gt_ids:
                results.append({"image_id": gt_ids[name], "bbox": a["bbox"], "score": a.get("score", 1.0)})
    else:
        raise UsageError(
            f"{pred.path}: predictions must be detector results (a JSON list) or an `unseg boxes` "
            "COCO file, not JSON lines"
        )
    for r in results:
        r["category_id"] = 1
    return results, unmatched


def evaluate_detection(gt_file: str | Path, pred_file: str | Path) -> DetectionResult:
    """Class-agnostic COCO AP of ``pred_file`` against ``gt_file`` (either may be '-' for stdin).
    A file that is not what it should be is an InputError naming it and what it lacks."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_data = read_coco_document(str(gt_file))
    if not gt_data["images"]:
        raise InputError(f"{gt_file}: the ground truth holds no images")
    results, unmatched = predictions_as_results(read_label_file(str(pred_file)), gt_data)
    n_images = len(gt_data["images"])
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints; stdout is for data
            gt = COCO()
            gt.dataset = class_agnostic_gt(gt_data)
            gt.createIndex()
            if not results:
                return DetectionResult(images=n_images, detections=0, unmatched_images=unmatched)
            dt = gt.loadRes(results)
            ev = COCOeval(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    except Exception as e:  # noqa: BLE001 - pycocotools asserts on inputs our checks did not foresee
        raise InputError(
            f"{gt_file} / {pred_file}: pycocotools cannot evaluate these files ({type(e).__name__}: {e})"
        ) from None
    stats = {k: float(ev.stats[i]) for i, k in enumerate(STAT_NAMES)}
    return DetectionResult(**stats, images=n_images, detections=len(results), unmatched_images=unmatched)
